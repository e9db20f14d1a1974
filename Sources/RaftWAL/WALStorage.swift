import Raft

/// A `Storage` backed by a `WAL`: Raft reads from memory, every change is written to the WAL
/// first.
///
/// **What it keeps in memory:** the latest snapshot (data included), the hard state, and every
/// entry above the last compaction, like etcd's `MemoryStorage` over its WAL. The bound is the
/// application's: memory holds the entries between the compaction point and the last index, so
/// the application compacts (`createSnapshot` + `compact`) every so many applied entries, as
/// etcd does every `SnapshotCount` entries. The WAL itself keeps only what it needs on disk.
///
/// **Threading.** The reads of the `Storage` protocol may come from any thread (Raft's); the
/// writing methods must come from the thread that owns the WAL (the append worker, or the
/// application's Ready loop in synchronous mode).
public final class WALStorage: Storage, @unchecked Sendable {
  /// The WAL behind the storage, for the owner's batching (`append`, `submit`, `poll`).
  public let wal: WAL
  private let memory = MemoryStorage()

  /// Takes over what `wal` recovered.
  public init(wal: WAL) throws {
    self.wal = wal
    let r = wal.recovered
    if r.snapshot.metadata.index > 0 { try memory.applySnapshot(r.snapshot) }
    try memory.setHardState(r.hardState)
    if !r.entries.isEmpty { try memory.append(r.entries) }
    wal.releaseRecovered()
  }

  // MARK: Storage (any thread)

  public func initialState() throws -> (HardState, ConfState) { try memory.initialState() }
  public func entries(lo: UInt64, hi: UInt64, maxSize: UInt64) throws -> [Entry] {
    try memory.entries(lo: lo, hi: hi, maxSize: maxSize)
  }
  public func term(_ i: UInt64) throws -> UInt64 { try memory.term(i) }
  public func lastIndex() throws -> UInt64 { try memory.lastIndex() }
  public func firstIndex() throws -> UInt64 { try memory.firstIndex() }
  public func snapshot() throws -> Snapshot { try memory.snapshot() }
  public var limitsEntriesBySize: Bool { memory.limitsEntriesBySize }

  // MARK: Writing (the WAL's owner thread)

  /// Writes and syncs one `Ready`'s (or `MsgStorageAppend`'s) snapshot, entries and hard state,
  /// then makes them visible to Raft: the synchronous path.
  public func save(entries: [Entry], hardState: HardState? = nil, snapshot: Snapshot? = nil) throws {
    if entries.isEmpty && hardState == nil && snapshot == nil { return }
    try wal.append(entries: entries, hardState: hardState, snapshot: snapshot)
    try wal.sync()
    try applyDurable(entries: entries, hardState: hardState, snapshot: snapshot)
  }

  /// Makes a write that the WAL has acknowledged as durable visible to Raft: the asynchronous
  /// path, where the owner appended it with `wal.append` and waited for `wal.durableSequence`.
  public func applyDurable(entries: [Entry], hardState: HardState? = nil, snapshot: Snapshot? = nil) throws {
    if let snapshot { try memory.applySnapshot(snapshot) }
    if !entries.isEmpty { try memory.append(entries) }
    if let hardState { try memory.setHardState(hardState) }
  }

  /// Takes a snapshot of the application's state at applied index `index`, saves it durably,
  /// and returns it.
  @discardableResult
  public func createSnapshot(_ index: UInt64, confState: ConfState?, data: [UInt8]) throws -> Snapshot {
    let snap = try memory.createSnapshot(index, confState: confState, data: data)
    try wal.saveSnapshot(snap)
    try wal.sync()
    return snap
  }

  /// Drops the entries up to `index` from memory and the WAL segments wholly below it.
  /// `index` must not be above the latest snapshot.
  public func compact(_ index: UInt64) throws {
    try memory.compact(index)
    try wal.compact(through: index)
  }
}
