import Raft
import RaftWAL

/// The engine's log is the WAL (through the `Storage` Raft reads).
extension WALStorage: EngineLog {
  public func append(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws -> UInt64 {
    try wal.append(entries: entries, hardState: hardState, snapshot: snapshot)
  }

  public func appendDeferred(hardState: HardState) throws -> UInt64 {
    try wal.appendDeferred(hardState: hardState)
  }

  public var durableSequence: UInt64 { wal.durableSequence }

  public func sync() throws { try wal.sync() }

  public func save(_ s: SnapshotSave) throws {
    try createSnapshot(s.index, confState: s.confState, data: s.data)
    if let through = s.compactThrough { try compact(through) }
  }
}
