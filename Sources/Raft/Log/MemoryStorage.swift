#if canImport(Darwin)
  import Darwin
#elseif canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A mutual exclusion lock over a heap-allocated pthread mutex (the address must not move, so
/// it lives outside any Swift value).
final class PThreadMutex: @unchecked Sendable {
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>

  init() {
    mutex = .allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    let rc = pthread_mutex_init(mutex, nil)
    precondition(rc == 0, "pthread_mutex_init failed (\(rc))")
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deinitialize(count: 1)
    mutex.deallocate()
  }

  /// Runs `body` with the mutex held.
  @inline(__always)
  func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }
}

/// A `Storage` kept in memory (etcd-raft's `MemoryStorage`): the application appends entries
/// once they are "persisted", and applies or creates snapshots and compacts the log.
///
/// Every method takes an internal lock, so the storage may be written from one thread (for
/// example the thread persisting a `Ready`) while Raft reads it from another.
public final class MemoryStorage: Storage, @unchecked Sendable {
  /// How often each `Storage` method was called; lets tests assert on storage traffic.
  struct CallStats: Equatable {
    var initialState = 0
    var firstIndex = 0
    var lastIndex = 0
    var entries = 0
    var term = 0
    var snapshot = 0
  }

  private let lock = PThreadMutex()

  // All state below is guarded by `lock`.
  private var hardState = HardState()
  private var snap = Snapshot()
  /// The log. `ents[0]` is a dummy entry carrying the index and term of the latest snapshot
  /// (0/0 for a fresh storage); `ents[k]` has index `ents[0].index + k`. Never empty.
  private var ents: [Entry] = [Entry()]
  private var stats = CallStats()

  /// An empty storage: no hard state, the empty snapshot, no entries.
  public init() {}

  /// Call counters of the `Storage` methods so far.
  var callStats: CallStats { lock.withLock { stats } }

  // MARK: Storage

  /// The hard state last saved with `setHardState`, and the configuration of the snapshot.
  public func initialState() throws -> (HardState, ConfState) {
    lock.withLock {
      stats.initialState += 1
      return (hardState, snap.metadata.confState)
    }
  }

  /// Entries in `[lo, hi)`, limited to `maxSize` bytes but at least one. Throws
  /// `RaftError.compacted` for `lo` at or below the snapshot index, `RaftError.unavailable` when
  /// the log holds no entries. `hi` past the last index + 1 is a programmer error.
  public func entries(lo: UInt64, hi: UInt64, maxSize: UInt64) throws -> [Entry] {
    try lock.withLock { () throws(RaftError) -> [Entry] in
      stats.entries += 1
      let offset = ents[0].index
      if lo <= offset { throw .compacted }
      let last = lastIndexLocked()
      precondition(hi <= last + 1, "entries' hi(\(hi)) is out of bound lastindex(\(last))")
      precondition(lo <= hi, "entries' lo(\(lo)) is greater than hi(\(hi))")
      if ents.count == 1 { throw .unavailable }
      let range = ents[Int(lo - offset)..<Int(hi - offset)]
      return Array(range.prefix(limitCount(range, maxSize: maxSize)))
    }
  }

  /// The term of entry `i`; `RaftError.compacted` below the snapshot index,
  /// `RaftError.unavailable` past the last index.
  public func term(_ i: UInt64) throws -> UInt64 {
    try lock.withLock { () throws(RaftError) -> UInt64 in
      stats.term += 1
      let offset = ents[0].index
      if i < offset { throw .compacted }
      if i - offset >= UInt64(ents.count) { throw .unavailable }
      return ents[Int(i - offset)].term
    }
  }

  /// The index of the last entry (the snapshot index when there are none).
  public func lastIndex() throws -> UInt64 {
    lock.withLock {
      stats.lastIndex += 1
      return lastIndexLocked()
    }
  }

  /// The index just after the snapshot.
  public func firstIndex() throws -> UInt64 {
    lock.withLock {
      stats.firstIndex += 1
      return ents[0].index + 1
    }
  }

  /// The latest snapshot (the empty one for a fresh storage).
  public func snapshot() throws -> Snapshot {
    lock.withLock {
      stats.snapshot += 1
      return snap
    }
  }

  // MARK: Mutation by the application

  /// Saves the hard state returned by `initialState`.
  public func setHardState(_ st: HardState) throws {
    lock.withLock { hardState = st }
  }

  /// Replaces the whole content with `snap`: the log becomes empty, positioned after the
  /// snapshot. Throws `RaftError.snapshotOutOfDate` unless `snap` is newer than the current
  /// snapshot. A fresh storage (snapshot index 0) also accepts an index-0 snapshot, which lets an
  /// application bootstrap the configuration only.
  public func applySnapshot(_ snap: Snapshot) throws {
    try lock.withLock { () throws(RaftError) in
      let current = self.snap.metadata.index
      if current != 0 && current >= snap.metadata.index { throw .snapshotOutOfDate }
      self.snap = snap
      ents = [Entry(term: snap.metadata.term, index: snap.metadata.index)]
    }
  }

  /// Makes the snapshot at log index `i` (its term is taken from the log) with the application
  /// `data`, stores it and returns it. Pass the configuration in effect at `i` when it changed
  /// since the previous snapshot; `nil` keeps the previous one. Throws
  /// `RaftError.snapshotOutOfDate` when `i` is not past the current snapshot; `i` past the last
  /// index is a programmer error. The log is not compacted (see `compact`).
  public func createSnapshot(_ i: UInt64, confState: ConfState?, data: [UInt8]) throws -> Snapshot {
    try lock.withLock { () throws(RaftError) -> Snapshot in
      if i <= snap.metadata.index { throw .snapshotOutOfDate }
      let last = lastIndexLocked()
      precondition(i <= last, "snapshot \(i) is out of bound lastindex(\(last))")
      snap.metadata.index = i
      snap.metadata.term = ents[Int(i - ents[0].index)].term
      if let confState { snap.metadata.confState = confState }
      snap.data = data
      return snap
    }
  }

  /// Discards the entries before `compactIndex`; the entry at `compactIndex` keeps only its
  /// index and term, as the new dummy. Throws `RaftError.compacted` when `compactIndex` is not
  /// past the current first dummy; an index past the last entry is a programmer error. The
  /// application must not compact beyond what it has applied.
  public func compact(_ compactIndex: UInt64) throws {
    try lock.withLock { () throws(RaftError) in
      let offset = ents[0].index
      if compactIndex <= offset { throw .compacted }
      let last = lastIndexLocked()
      precondition(compactIndex <= last, "compact \(compactIndex) is out of bound lastindex(\(last))")
      let i = Int(compactIndex - offset)
      let dummy = Entry(term: ents[i].term, index: ents[i].index)
      ents.removeSubrange(0..<i)
      ents[0] = dummy
    }
  }

  /// Appends `entries` (consecutive indexes) as persisted. Entries already folded into the
  /// snapshot are skipped; existing entries from the first new index on are replaced (the
  /// conflicting tail is truncated). A gap after the last entry is a programmer error.
  public func append(_ entries: [Entry]) throws {
    guard let head = entries.first else { return }
    lock.withLock {
      let first = ents[0].index + 1
      let last = head.index + UInt64(entries.count) - 1
      // Everything is older than the snapshot: nothing to do.
      if last < first { return }
      var incoming = entries[...]
      if first > head.index {
        incoming = incoming.dropFirst(Int(first - head.index))
      }
      let at = incoming.first!.index - ents[0].index
      let count = UInt64(ents.count)
      if at < count {
        ents.removeSubrange(Int(at)...)
      } else if at > count {
        preconditionFailure("missing log entry [last: \(lastIndexLocked()), append at: \(incoming.first!.index)]")
      }
      ents.append(contentsOf: incoming)
    }
  }

  private func lastIndexLocked() -> UInt64 {
    ents[0].index + UInt64(ents.count) - 1
  }
}
