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
  /// Signalled by the queue's producers when the worker waits: the worker's one wait point is
  /// the WAL's ring, for disk completions and new work together.
  private let wake: WakeEvent
  private var thread: OSThread?

  init(
    storage: WALStorage, nodeID: UInt64, transport: Transport,
    toRunLoop: @escaping @Sendable (Node.Input) -> Void
  ) throws {
    self.storage = storage
    self.nodeID = nodeID
    self.transport = transport
    self.toRunLoop = toRunLoop
    let wake = try WakeEvent()
    self.wake = wake
    queue = BatchQueue(spinNanoseconds: 0, engineThread: true, wake: { wake.signal() })
  }

  func start() {
    thread = OSThread(name: "raft-append", engineThread: true) { [self] in run() }
  }

  func stop() {
    queue.close()
    thread?.join()
  }

  /// True when called on the worker's thread.
  var isCurrentThread: Bool { thread?.isCurrent ?? false }

  /// Times the worker waited (for the disk, new work, or both).
  var wakeups: UInt64 { queue.wakeupCount }

  /// Takes every queued job, writes them into the open WAL batch, submits what is due, and
  /// releases what is durable; with nothing new, waits in one place for the disk or new work.
  /// New writes are taken while syncs are in flight: they go into the next batch.
  private func run() {
    let wal = storage.wal
    var stage = AppendStage(nodeID: nodeID)
    var jobs: [Job] = []
    var local: [Message] = []
    var remote: [Message] = []
    do {
      while true {
        jobs.removeAll(keepingCapacity: true)
        queue.takeNow(into: &jobs)
        var durable: UInt64
        if jobs.isEmpty {
          if stage.pendingCount == 0 && queue.closed { return }
          // What waits for durability must be on its way to the disk before the wait.
          if stage.pendingCount > 0 && wal.batchesInFlight == 0 { try wal.submit() }
          // Waiting for new work alone frees the core; waiting for the disk keeps it counted
          // (the completion wakes this thread, and nothing else would count it back).
          if queue.beginExternalWait(parks: wal.batchesInFlight == 0) {
            durable = try wal.waitForCompletion(orWake: wake)
            queue.endExternalWait()
          } else if queue.closed {
            durable = try wal.waitForCompletion()  // the last writes, before the worker ends
          } else {
            continue  // work arrived meanwhile
          }
        } else {
          for job in jobs {
            switch job {
            case .write(let w): try stage.write(w, to: storage, local: &local, remote: &remote)
            case .save(let s): try storage.save(s)
            }
          }
          try wal.submitIfDue(nowNanoseconds: EngineClock.nanoseconds())
          durable = try wal.poll()
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
