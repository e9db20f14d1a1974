import Raft
import RaftWAL

/// etcd's LocalAppendThread: writes every queued `MsgStorageAppend` into one WAL batch (group
/// commit), and once the batch is durable makes the entries visible to Raft (`WALStorage`) and
/// delivers each message's responses in order: to the run loop, or through the transport when
/// addressed to another node (a follower's MsgAppResp goes straight to the leader).
final class AppendWorker: @unchecked Sendable {
  enum Job {
    case append(Message)
    /// Save a snapshot of the state machine at `index` and compact the log `retain` entries
    /// behind it (the WAL's owner does both: the WAL is single-threaded).
    case compact(index: UInt64, confState: ConfState, data: [UInt8], retain: UInt64)
  }

  let queue: BatchQueue<Job>
  private let storage: WALStorage
  private let nodeID: UInt64
  private let transport: Transport
  private let applyWorker: ApplyWorker
  private let toRunLoop: @Sendable ([Node.Input]) -> Void
  private var thread: OSThread?

  init(
    storage: WALStorage, nodeID: UInt64, transport: Transport, applyWorker: ApplyWorker, spinNanoseconds: UInt64,
    yieldingPollNanoseconds: UInt64,
    toRunLoop: @escaping @Sendable ([Node.Input]) -> Void
  ) {
    self.storage = storage
    self.nodeID = nodeID
    self.transport = transport
    self.applyWorker = applyWorker
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

  private static func hardState(of m: Message) -> HardState? {
    let hs = HardState(term: m.term, vote: m.vote, commit: m.commit)
    return hs.isEmpty ? nil : hs
  }

  private func run() {
    let wal = storage.wal
    var incoming: [Job] = []
    /// A compaction waiting until its index is durable here (committed entries may be applied
    /// before this node's own copy is durable).
    var compaction: (index: UInt64, confState: ConfState, data: [UInt8], retain: UInt64)? = nil
    /// Written, not yet durable: (write sequence, message), oldest first.
    var pending: [(seq: UInt64, message: Message)] = []
    var head = 0
    do {
      while true {
        incoming.removeAll(keepingCapacity: true)
        let idle = head == pending.count
        queue.take(into: &incoming, timeoutNanoseconds: idle ? 100_000_000 : 0)
        if incoming.isEmpty && idle && queue.closed { return }
        for job in incoming {
          let m: Message
          switch job {
          case .append(let message): m = message
          case .compact(let index, let cs, let data, let retain):
            if let c = compaction, c.index >= index { continue }
            compaction = (index, cs, data, retain)
            continue
          }
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
          let hs = Self.hardState(of: m)
          let seq: UInt64
          if m.entries.isEmpty, let hs, !mustSync(hs, wal.hardState, entryCount: 0) {
            // Only the commit index moved: no sync of its own; its responses go out once every
            // earlier write is durable.
            seq = try wal.appendDeferred(hardState: hs)
          } else {
            seq = try wal.append(entries: m.entries, hardState: hs)
          }
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
        if let c = compaction, try storage.lastIndex() >= c.index {
          compaction = nil
          try compact(c.index, c.confState, c.data, retain: c.retain, pending: &pending, head: &head)
        }
      }
    } catch {
      toRunLoop([.storageFailed("\(error)")])
    }
  }

  /// Saves the snapshot and compacts the log behind it (everything written before is made
  /// durable and delivered first: the WAL requires it).
  private func compact(
    _ index: UInt64, _ confState: ConfState, _ data: [UInt8], retain: UInt64,
    pending: inout [(seq: UInt64, message: Message)], head: inout Int
  ) throws {
    let wal = storage.wal
    try wal.sync()
    try finish(upTo: wal.durableSequence, pending: &pending, head: &head)
    guard index > (try storage.snapshot()).metadata.index else { return }  // a newer one arrived
    try storage.createSnapshot(index, confState: confState, data: data)
    if index > retain, index - retain > (try storage.firstIndex()) {
      try storage.compact(index - retain)
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
