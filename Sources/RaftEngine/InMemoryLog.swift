import Raft

/// An `EngineLog` without a disk: every write is durable as soon as it is made, and what Raft
/// reads is a `MemoryStorage`. For tests and benchmarks of the core (nothing survives the
/// process).
public final class InMemoryLog: EngineLog {
  /// What Raft reads.
  public let storage: MemoryStorage
  public private(set) var durableSequence: UInt64 = 0
  /// Snapshots saved so far (newest last), and the compactions done.
  public private(set) var savedSnapshots: [SnapshotSave] = []

  public init(storage: MemoryStorage) { self.storage = storage }

  public func append(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws -> UInt64 {
    durableSequence += 1
    return durableSequence
  }

  public func appendDeferred(hardState: HardState) throws -> UInt64 { durableSequence }

  public func sync() throws {}

  public func applyDurable(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws {
    if let snapshot { try storage.applySnapshot(snapshot) }
    if !entries.isEmpty { try storage.append(entries) }
    if let hardState { try storage.setHardState(hardState) }
  }

  public func save(_ s: SnapshotSave) throws {
    _ = try storage.createSnapshot(s.index, confState: s.confState, data: s.data)
    if let through = s.compactThrough { try storage.compact(through) }
    savedSnapshots.append(s)
  }
}
