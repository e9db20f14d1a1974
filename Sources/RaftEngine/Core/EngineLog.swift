import DequeModule
import Raft

/// What the append side needs of a node's log: `WALStorage` (the WAL) in the engine, or the
/// simulator's model disk. Owned by one thread.
///
/// Writes get increasing sequence numbers; `durableSequence` is the highest one that is durable
/// together with every write before it.
public protocol EngineLog: AnyObject {
  /// Adds a write (the snapshot, then the entries, then the hard state) and returns its
  /// sequence number. It is durable once `durableSequence` reaches it.
  func append(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws -> UInt64
  /// Adds a hard state that waits for no sync of its own (it rides with the next write that
  /// is synced); returns the sequence of the write before it.
  func appendDeferred(hardState: HardState) throws -> UInt64
  /// The highest sequence durable together with every write before it.
  var durableSequence: UInt64 { get }
  /// Makes every write so far durable.
  func sync() throws
  /// Makes a write visible to Raft's `Storage` (once it is durable).
  func applyDurable(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws
  /// Saves the application's snapshot durably and compacts the log behind it.
  func save(_ snapshot: SnapshotSave) throws
}

/// The append side's bookkeeping, shared by the append worker (on the WAL) and the simulator
/// (on its model disk): hands each `StorageWrite` to the log, and once the log says a write is
/// durable (in order, as its `durability` asks), makes it visible to Raft and releases its
/// responses.
public struct AppendStage {
  /// Handed to the log, responses not released yet, oldest first. Invariant: sequences
  /// never decrease along the queue.
  private var waiting = Deque<(sequence: UInt64, write: StorageWrite)>()
  public let nodeID: UInt64

  public init(nodeID: UInt64) { self.nodeID = nodeID }

  /// Writes handed to the log whose responses are not released yet.
  public var pendingCount: Int { waiting.count }

  /// The sequence the oldest waiting write needs (nil: none waits).
  public var oldestPendingSequence: UInt64? { waiting.first?.sequence }

  /// Hands `write` to `log`. A write whose durability is `.unsynced` (a planted fault) is
  /// released at once, into `local` and `remote`.
  public mutating func write<Log: EngineLog>(
    _ write: StorageWrite, to log: Log, local: inout [Message], remote: inout [Message]
  ) throws {
    let sequence: UInt64
    if write.durability == .deferred {
      precondition(
        write.entries.isEmpty && write.snapshot == nil && write.hardState != nil,
        "AppendStage: only a lone hard state can be deferred")
      sequence = try log.appendDeferred(hardState: write.hardState!)
    } else {
      sequence = try log.append(entries: write.entries, hardState: write.hardState, snapshot: write.snapshot)
    }
    if write.durability == .unsynced {
      try release(write, log: log, local: &local, remote: &remote)
      return
    }
    if let last = waiting.last { precondition(last.sequence <= sequence, "AppendStage: sequences went back") }
    waiting.append((sequence, write))
  }

  /// Releases every waiting write that `log` says is durable, in order: its content becomes
  /// visible to Raft, its responses go into `local` (this node's) and `remote`.
  public mutating func release<Log: EngineLog>(
    durableThrough durable: UInt64, log: Log, local: inout [Message], remote: inout [Message]
  ) throws {
    // Nothing is acknowledged before the log says it is durable.
    precondition(durable <= log.durableSequence, "AppendStage: releasing writes the log has not made durable")
    while let first = waiting.first, first.sequence <= durable {
      waiting.removeFirst()
      try release(first.write, log: log, local: &local, remote: &remote)
    }
  }

  private func release<Log: EngineLog>(
    _ w: StorageWrite, log: Log, local: inout [Message], remote: inout [Message]
  ) throws {
    if !w.isEmpty { try log.applyDurable(entries: w.entries, hardState: w.hardState, snapshot: w.snapshot) }
    for r in w.responses {
      if r.to == nodeID { local.append(r) } else { remote.append(r) }
    }
  }

  /// Sync mode: performs `write` at once, durable as it asks (no responses: the Ready carries
  /// them), and makes it visible to Raft.
  public static func writeNow<Log: EngineLog>(_ write: StorageWrite, to log: Log) throws {
    precondition(write.responses.isEmpty, "AppendStage: a sync-mode write carries no responses")
    if write.durability == .deferred {
      _ = try log.appendDeferred(hardState: write.hardState!)
    } else {
      _ = try log.append(entries: write.entries, hardState: write.hardState, snapshot: write.snapshot)
      if write.durability == .sync { try log.sync() }
    }
    try log.applyDurable(entries: write.entries, hardState: write.hardState, snapshot: write.snapshot)
  }
}
