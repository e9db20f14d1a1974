/// Read access to the durable part of the log and the durable state, implemented by the
/// application (etcd-raft's `Storage`).
///
/// Raft treats `RaftError.compacted` and `RaftError.unavailable` from `entries` and `term` as
/// ordinary answers; any other error thrown by these methods is taken as a broken storage and
/// stops the process. `snapshot` may throw `RaftError.snapshotTemporarilyUnavailable` to ask
/// Raft to try again later.
///
/// Entries returned by the storage are values: neither side can change what the other holds.
public protocol Storage: AnyObject {
  /// The persisted hard state (all zero when none was saved yet) and the configuration of the
  /// latest snapshot.
  func initialState() throws -> (HardState, ConfState)

  /// The consecutive entries with indexes in `[lo, hi)`. At most `maxSize` bytes of
  /// `Entry.size` are returned, except that at least one entry is returned when the range is
  /// not empty. Throws `RaftError.compacted` when `lo` precedes the first available entry and
  /// `RaftError.unavailable` when an entry of the range is missing.
  func entries(lo: UInt64, hi: UInt64, maxSize: UInt64) throws -> [Entry]

  /// The term of entry `i`, for `i` in `[firstIndex() - 1, lastIndex()]`: the term of the entry
  /// just before the first one is kept for matching even though that entry is gone.
  /// Throws `RaftError.compacted` below that range and `RaftError.unavailable` above it.
  func term(_ i: UInt64) throws -> UInt64

  /// The index of the last entry in the log (the snapshot index when the log is empty).
  func lastIndex() throws -> UInt64

  /// The index of the first entry that may be available through `entries`; older entries have
  /// been folded into the latest snapshot.
  func firstIndex() throws -> UInt64

  /// The most recent snapshot. Throws `RaftError.snapshotTemporarilyUnavailable` while one is
  /// being prepared.
  func snapshot() throws -> Snapshot

  /// True when `entries(lo:hi:maxSize:)` always honours `maxSize` exactly as `RaftLog` would
  /// (the first entry always, then entries while the total `Entry.size` stays within it):
  /// the log then does not measure the entries again.
  var limitsEntriesBySize: Bool { get }
}

extension Storage {
  /// By default the log measures what a storage returns.
  public var limitsEntriesBySize: Bool { false }
}
