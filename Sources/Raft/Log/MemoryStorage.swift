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

  /// A run of consecutive entries appended together (a Ready's entries, a message's): kept as
  /// the array it came in, so that appending it and reading it back whole share that array
  /// instead of copying each entry. Invariant: not empty, `entries[k].index == first + k`.
  private struct Run {
    var first: UInt64
    var entries: [Entry]
    var end: UInt64 { first + UInt64(entries.count) }
  }

  /// Runs of at most this many entries merge into the run before them when that one is small
  /// too (a follower appending one entry at a time would otherwise leave one run per entry).
  private static let smallRunEntries = 64

  // All state below is guarded by `lock`.
  private var hardState = HardState()
  private var snap = Snapshot()
  /// The index and term of the entry just before the log (the latest snapshot's, or the last
  /// compacted entry's; 0/0 for a fresh storage).
  private var dummyIndex: UInt64 = 0
  private var dummyTerm: UInt64 = 0
  /// The log after the dummy. Invariant: consecutive runs, the first starting at
  /// `dummyIndex + 1`.
  private var runs: [Run] = []
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
  /// the log holds no entries. `hi` past the last index + 1 is a programmer error. A range that
  /// is one whole appended run comes back without a copy.
  public func entries(lo: UInt64, hi: UInt64, maxSize: UInt64) throws -> [Entry] {
    try lock.withLock { () throws(RaftError) -> [Entry] in
      stats.entries += 1
      if lo <= dummyIndex { throw .compacted }
      let last = lastIndexLocked()
      precondition(hi <= last + 1, "entries' hi(\(hi)) is out of bound lastindex(\(last))")
      precondition(lo <= hi, "entries' lo(\(lo)) is greater than hi(\(hi))")
      if runs.isEmpty { throw .unavailable }
      if lo == hi { return [] }
      var k = runIndex(containing: lo)
      let run = runs[k]
      if hi <= run.end {
        // Within one run.
        let range = run.entries[Int(lo - run.first)..<Int(hi - run.first)]
        let n = limitCount(range, maxSize: maxSize)
        if n == run.entries.count { return run.entries }
        return Array(range.prefix(n))
      }
      // Across runs: gather, cut at the first entry that overflows the budget (the first entry
      // always counts).
      var out: [Entry] = []
      out.reserveCapacity(Int(hi - lo))
      var total: UInt64 = 0
      var at = lo
      while at < hi {
        let r = runs[k]
        let part = r.entries[Int(at - r.first)..<Int(min(hi, r.end) - r.first)]
        if maxSize == noLimit {
          out.append(contentsOf: part)
        } else {
          for e in part {
            total += e.size
            if !out.isEmpty && total > maxSize { return out }
            out.append(e)
          }
        }
        at = min(hi, r.end)
        k += 1
      }
      return out
    }
  }

  /// The term of entry `i`; `RaftError.compacted` below the snapshot index,
  /// `RaftError.unavailable` past the last index.
  public func term(_ i: UInt64) throws -> UInt64 {
    try lock.withLock { () throws(RaftError) -> UInt64 in
      stats.term += 1
      if i < dummyIndex { throw .compacted }
      if i > lastIndexLocked() { throw .unavailable }
      return termLocked(i)
    }
  }

  /// The index of the last entry (the snapshot index when there are none).
  public func lastIndex() throws -> UInt64 {
    lock.withLock {
      stats.lastIndex += 1
      return lastIndexLocked()
    }
  }

  /// `entries` cuts at `maxSize` as the log does.
  public var limitsEntriesBySize: Bool { true }

  /// The index just after the snapshot.
  public func firstIndex() throws -> UInt64 {
    lock.withLock {
      stats.firstIndex += 1
      return dummyIndex + 1
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
      dummyIndex = snap.metadata.index
      dummyTerm = snap.metadata.term
      runs = []
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
      snap.metadata.term = termLocked(i)
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
      if compactIndex <= dummyIndex { throw .compacted }
      let last = lastIndexLocked()
      precondition(compactIndex <= last, "compact \(compactIndex) is out of bound lastindex(\(last))")
      dummyTerm = termLocked(compactIndex)
      dummyIndex = compactIndex
      var drop = 0
      while drop < runs.count && runs[drop].end <= compactIndex + 1 { drop += 1 }
      runs.removeFirst(drop)
      if var first = runs.first, first.first <= compactIndex {
        first.entries.removeFirst(Int(compactIndex + 1 - first.first))
        first.first = compactIndex + 1
        runs[0] = first
      }
      checkRunsLocked()
    }
  }

  /// Appends `entries` (consecutive indexes) as persisted. Entries already folded into the
  /// snapshot are skipped; existing entries from the first new index on are replaced (the
  /// conflicting tail is truncated). A gap after the last entry is a programmer error. The
  /// array is kept as it is (not copied) when it is appended whole.
  public func append(_ entries: [Entry]) throws {
    guard let head = entries.first else { return }
    lock.withLock {
      let first = dummyIndex + 1
      let last = head.index + UInt64(entries.count) - 1
      // Everything is older than the snapshot: nothing to do.
      if last < first { return }
      var incoming = entries[...]
      if first > head.index {
        incoming = incoming.dropFirst(Int(first - head.index))
      }
      let at = incoming.first!.index
      let end = lastIndexLocked() + 1
      if at < end {
        truncateLocked(from: at)
      } else if at > end {
        preconditionFailure("missing log entry [last: \(lastIndexLocked()), append at: \(at)]")
      }
      if incoming.count <= Self.smallRunEntries, let previous = runs.last,
        previous.entries.count <= Self.smallRunEntries
      {
        runs[runs.count - 1].entries.append(contentsOf: incoming)
      } else {
        runs.append(Run(first: at, entries: incoming.count == entries.count ? entries : Array(incoming)))
      }
      checkRunsLocked()
    }
  }

  /// Drops the entries from index `at` on (`at` is within the log).
  private func truncateLocked(from at: UInt64) {
    while let r = runs.last, r.first >= at { runs.removeLast() }
    if let r = runs.last, r.end > at {
      runs[runs.count - 1].entries.removeSubrange(Int(at - r.first)...)
    }
  }

  /// The run holding index `i` (which is in the log).
  private func runIndex(containing i: UInt64) -> Int {
    // Reads and appends happen mostly at the end.
    if let r = runs.last, r.first <= i { return runs.count - 1 }
    var lo = 0
    var hi = runs.count - 1
    while lo < hi {
      let mid = (lo + hi + 1) / 2
      if runs[mid].first <= i { lo = mid } else { hi = mid - 1 }
    }
    return lo
  }

  /// The term of `i`, which is the dummy or in the log.
  private func termLocked(_ i: UInt64) -> UInt64 {
    if i == dummyIndex { return dummyTerm }
    let r = runs[runIndex(containing: i)]
    return r.entries[Int(i - r.first)].term
  }

  private func checkRunsLocked() {
    assert(
      {
        var next = dummyIndex + 1
        for r in runs {
          guard !r.entries.isEmpty, r.first == next, r.entries.first!.index == r.first else { return false }
          next = r.end
        }
        return true
      }(), "MemoryStorage: the runs are not consecutive from the dummy")
  }

  private func lastIndexLocked() -> UInt64 {
    runs.last.map { $0.end - 1 } ?? dummyIndex
  }
}
