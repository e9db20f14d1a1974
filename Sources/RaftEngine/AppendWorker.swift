import Raft
import RaftWAL

/// etcd's LocalAppendThread: writes every queued `StorageWrite` into one WAL batch (group
/// commit), and as batches become durable releases the writes in order (`AppendStage`): their
/// content becomes visible to Raft and their responses go out, to the run loop in one push and
/// to peers in one send (a follower's MsgAppResp goes straight to the leader). It also saves
/// the state machine's snapshots and compacts the log (the WAL's owner does both).
final class AppendWorker: @unchecked Sendable {
  enum Job {
    case write(StorageWrite)
    case save(SnapshotSave)
  }

  let queue: BatchQueue<Job>
  private let storage: WALStorage
  private let nodeID: UInt64
  private let transport: Transport
  private let toRunLoop: @Sendable (Node.Input) -> Void
  private var thread: OSThread?

  init(
    storage: WALStorage, nodeID: UInt64, transport: Transport, spinNanoseconds: UInt64,
    yieldingPollNanoseconds: UInt64, toRunLoop: @escaping @Sendable (Node.Input) -> Void
  ) {
    self.storage = storage
    self.nodeID = nodeID
    self.transport = transport
    self.toRunLoop = toRunLoop
    queue = BatchQueue(spinNanoseconds: spinNanoseconds, yieldingPollNanoseconds: yieldingPollNanoseconds)
  }

  func start() {
    thread = OSThread(name: "raft-append") { [self] in run() }
  }

  func stop() {
    queue.close()
    thread?.join()
  }

  /// True when called on the worker's thread.
  var isCurrentThread: Bool { thread?.isCurrent ?? false }

  private func run() {
    let wal = storage.wal
    var stage = AppendStage(nodeID: nodeID)
    var jobs: [Job] = []
    var local: [Message] = []
    var remote: [Message] = []
    do {
      while true {
        jobs.removeAll(keepingCapacity: true)
        let idle = stage.pendingCount == 0
        queue.take(into: &jobs, timeoutNanoseconds: idle ? 100_000_000 : 0)
        if jobs.isEmpty && idle && queue.closed { return }
        for job in jobs {
          switch job {
          case .write(let w): try stage.write(w, to: storage, local: &local, remote: &remote)
          case .save(let s): try storage.save(s)
          }
        }
        try wal.submitIfDue(nowNanoseconds: EngineClock.nanoseconds())
        var durable = try wal.poll()
        if let oldest = stage.oldestPendingSequence, durable < oldest, queue.count == 0 {
          // Nothing new to batch: wait for the disk.
          if wal.batchesInFlight == 0 { try wal.submit() }
          durable = try wal.waitForCompletion()
        }
        try stage.release(durableThrough: durable, log: storage, local: &local, remote: &remote)
        if !remote.isEmpty {
          transport.send(remote)
          remote.removeAll(keepingCapacity: true)
        }
        if !local.isEmpty {
          toRunLoop(.local(local))
          local = []
        }
      }
    } catch {
      toRunLoop(.storageFailed("\(error)"))
    }
  }
}
