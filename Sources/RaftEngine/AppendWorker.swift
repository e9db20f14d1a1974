import Raft
import RaftWAL

/// etcd's LocalAppendThread: writes every queued `MsgStorageAppend` into one WAL batch (group
/// commit), and once the batch is durable makes the entries visible to Raft (`WALStorage`) and
/// delivers each message's responses in order: to the run loop, or through the transport when
/// addressed to another node (a follower's MsgAppResp goes straight to the leader).
final class AppendWorker: @unchecked Sendable {
  let queue: BatchQueue<Message>
  private let storage: WALStorage
  private let nodeID: UInt64
  private let transport: Transport
  private let applyWorker: ApplyWorker
  private let toRunLoop: @Sendable ([Node.Input]) -> Void
  private var thread: OSThread?

  init(
    storage: WALStorage, nodeID: UInt64, transport: Transport, applyWorker: ApplyWorker, spinNanoseconds: UInt64,
    toRunLoop: @escaping @Sendable ([Node.Input]) -> Void
  ) {
    self.storage = storage
    self.nodeID = nodeID
    self.transport = transport
    self.applyWorker = applyWorker
    self.toRunLoop = toRunLoop
    queue = BatchQueue(spinNanoseconds: spinNanoseconds)
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

  private static func hardState(of m: Message) -> HardState? {
    let hs = HardState(term: m.term, vote: m.vote, commit: m.commit)
    return hs.isEmpty ? nil : hs
  }

  private func run() {
    let wal = storage.wal
    var incoming: [Message] = []
    /// Written, not yet durable: (write sequence, message), oldest first.
    var pending: [(seq: UInt64, message: Message)] = []
    var head = 0
    do {
      while true {
        incoming.removeAll(keepingCapacity: true)
        let idle = head == pending.count
        queue.take(into: &incoming, timeoutNanoseconds: idle ? 100_000_000 : 0)
        if incoming.isEmpty && idle && queue.closed { return }
        for m in incoming {
          if m.hasSnapshot {
            // etcd's contract: everything before the snapshot is made durable and the apply side
            // flushed first; then the snapshot is persisted and the state machine restored.
            try wal.sync()
            try finish(upTo: wal.durableSequence, pending: &pending, head: &head)
            applyWorker.flush()
            let snap = m.snapshot!
            try wal.append(entries: m.entries, hardState: Self.hardState(of: m), snapshot: snap)
            try wal.sync()
            applyWorker.restoreAndWait(snap)
            try deliver(m)
            continue
          }
          let seq = try wal.append(entries: m.entries, hardState: Self.hardState(of: m))
          pending.append((seq, m))
        }
        try wal.submitIfDue(nowNanoseconds: monotonicNanoseconds())
        var durable = try wal.poll()
        if head < pending.count && durable < pending[head].seq && queue.count == 0 {
          // Nothing new to batch: wait for the disk.
          if wal.batchesInFlight == 0 { try wal.submit() }
          durable = try wal.waitForCompletion()
        }
        try finish(upTo: durable, pending: &pending, head: &head)
      }
    } catch {
      toRunLoop([.storageFailed("\(error)")])
    }
  }

  /// Delivers the messages whose write is durable: one push to the run loop and one send for
  /// all of them.
  private func finish(upTo durable: UInt64, pending: inout [(seq: UInt64, message: Message)], head: inout Int) throws {
    var local: [Node.Input] = []
    var remote: [Message] = []
    while head < pending.count && pending[head].seq <= durable {
      try persisted(pending[head].message, local: &local, remote: &remote)
      head += 1
    }
    if head == pending.count {
      pending.removeAll(keepingCapacity: true)
      head = 0
    }
    if !remote.isEmpty { transport.send(remote) }
    if !local.isEmpty { toRunLoop(local) }
  }

  private func deliver(_ m: Message) throws {
    var local: [Node.Input] = []
    var remote: [Message] = []
    try persisted(m, local: &local, remote: &remote)
    if !remote.isEmpty { transport.send(remote) }
    if !local.isEmpty { toRunLoop(local) }
  }

  /// Makes one durable message's content visible to Raft and collects its responses.
  private func persisted(_ m: Message, local: inout [Node.Input], remote: inout [Message]) throws {
    try storage.applyDurable(
      entries: m.entries, hardState: Self.hardState(of: m), snapshot: m.snapshot)
    for r in m.responses {
      if r.to == nodeID { local.append(.step(r)) } else { remote.append(r) }
    }
  }
}
