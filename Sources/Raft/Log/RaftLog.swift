/// The Raft log of one node: the durable part in `Storage` followed by the `Unstable` part, plus
/// the commit and apply positions (etcd-raft's `raftLog`).
///
/// The valid log is `[firstIndex(), lastIndex()]`; the term of `firstIndex() - 1` (the latest
/// snapshot) is also known, for matching.
///
/// The mutable fields are marked `@exclusivity(unchecked)`: the log is driven by one thread and
/// its accesses never overlap, while the dynamic exclusivity checks of class properties cost
/// more than the operations themselves on this hot path.
public final class RaftLog: CustomStringConvertible {
  /// The stable entries since the last snapshot.
  public let storage: any Storage
  /// The entries and snapshot not yet known to be in `storage`.
  @exclusivity(unchecked)
  public var unstable: Unstable
  /// The highest index known to be durable on a quorum of nodes.
  /// Invariant: `applying <= committed <= lastIndex()`; it never decreases.
  @exclusivity(unchecked)
  public var committed: UInt64
  /// The highest index the application has been told to apply (handed out in a `Ready`); some
  /// of those entries may still be applying. Raised when a `Ready` is accepted.
  /// Invariant: `applied <= applying <= committed`.
  @exclusivity(unchecked)
  public var applying: UInt64
  /// The highest index the application has applied to its state machine. Raised when the
  /// application acknowledges the application of entries (synchronously or asynchronously).
  /// Invariant: `applied <= committed`.
  @exclusivity(unchecked)
  public var applied: UInt64

  let logger: any RaftLogger

  /// Limit on the outstanding bytes (`Entry.size`) of committed entries handed out by
  /// `nextCommittedEntries` and not yet acknowledged by `appliedTo`.
  public let maxApplyingEntsSize: UInt64
  /// The outstanding bytes of committed entries handed out and not yet acknowledged.
  @exclusivity(unchecked)
  public var applyingEntsSize: UInt64
  /// True when handing out committed entries is paused until enough of the outstanding ones are
  /// acknowledged.
  @exclusivity(unchecked)
  public var applyingEntsPaused: Bool

  /// A log over `storage`, positioned at its latest snapshot: everything up to the snapshot
  /// counts as committed and applied, and unstable entries start after the stored ones.
  public init(storage: any Storage, logger: any RaftLogger, maxApplyingEntsSize: UInt64 = noLimit) {
    let firstIndex: UInt64
    let lastIndex: UInt64
    do {
      firstIndex = try storage.firstIndex()
      lastIndex = try storage.lastIndex()
    } catch {
      logger.panic("cannot read the log bounds from storage: \(error)")
    }
    self.storage = storage
    self.logger = logger
    self.maxApplyingEntsSize = maxApplyingEntsSize
    self.applyingEntsSize = 0
    self.applyingEntsPaused = false
    self.unstable = Unstable(offset: lastIndex + 1, offsetInProgress: lastIndex + 1, logger: logger)
    self.committed = firstIndex - 1
    self.applying = firstIndex - 1
    self.applied = firstIndex - 1
  }

  /// A one-line summary of the positions, as etcd prints it in log lines.
  public var description: String {
    "committed=\(committed), applied=\(applied), applying=\(applying), unstable.offset=\(unstable.offset), "
      + "unstable.offsetInProgress=\(unstable.offsetInProgress), len(unstable.Entries)=\(unstable.entryCount)"
  }

  // MARK: Appending

  /// Appends `entries`, which follow the entry `(index, logTerm)`, if the log has that entry,
  /// and advances the commit index to `min(committed, index + entries.count)`. Entries already
  /// present are skipped; a conflicting tail is truncated. Returns the index of the last new
  /// entry, or `nil` (changing nothing) when the log does not have `(index, logTerm)`.
  /// Truncating a committed entry is a programmer error.
  func maybeAppend(index: UInt64, logTerm: UInt64, committed: UInt64, entries: [Entry]) -> UInt64? {
    guard matchTerm(index, logTerm) else { return nil }
    let lastNew = index + UInt64(entries.count)
    let ci = findConflict(entries)
    if ci != 0 {
      if ci <= self.committed {
        logger.panic("entry \(ci) conflict with committed entry [committed(\(self.committed))]")
      }
      let skip = ci - (index + 1)
      if skip > UInt64(entries.count) {
        logger.panic("index, \(skip), is out of range [\(entries.count)]")
      }
      append(slice: entries[Int(skip)...])
    }
    commitTo(min(committed, lastNew))
    return lastNew
  }

  /// Appends `ents` to the unstable log, truncating whatever follows `ents[0].index - 1`.
  /// Returns the new last index. Truncating below the commit index is a programmer error.
  @discardableResult
  func append(_ ents: [Entry]) -> UInt64 {
    guard let first = ents.first else { return lastIndex() }
    if first.index - 1 < committed {
      logger.panic("after(\(first.index - 1)) is out of range [committed(\(committed))]")
    }
    // The whole array: the unstable log may adopt it instead of copying its elements.
    unstable.truncateAndAppend(ents)
    return lastIndex()
  }

  /// `append` for a view of the caller's array.
  @discardableResult
  func append(slice ents: ArraySlice<Entry>) -> UInt64 {
    guard let first = ents.first else { return lastIndex() }
    let after = first.index - 1
    if after < committed {
      logger.panic("after(\(after)) is out of range [committed(\(committed))]")
    }
    unstable.truncateAndAppend(slice: ents)
    return lastIndex()
  }

  /// The index of the first entry of `ents` that the log does not have: either a conflict (same
  /// index, another term) or the first entry past the log's end. 0 when the log has them all.
  /// `ents` must have consecutive indexes.
  func findConflict(_ ents: [Entry]) -> UInt64 {
    for e in ents where !matchTerm(e.index, e.term) {
      if e.index <= lastIndex() {
        let existing = zeroTermOnOutOfBounds { try term(e.index) }
        logger.info("found conflict at index \(e.index) [existing term: \(existing), conflicting term: \(e.term)]")
      }
      return e.index
    }
    return 0
  }

  /// The best guess of where this log stops matching another log of which only the entry
  /// `(index, term)` is known: the largest `i <= index` whose term is at most `term`, or whose
  /// term is unknown here (compacted or not yet present). Returns that index and its term (0
  /// when unknown). Used to skip a whole term per round trip when resolving a rejected append.
  func findConflictByTerm(index: UInt64, term: UInt64) -> (index: UInt64, term: UInt64) {
    var i = index
    while i > 0 {
      let ourTerm: UInt64
      do {
        ourTerm = try self.term(i)
      } catch {
        // Unknown term: assume it may match.
        return (i, 0)
      }
      if ourTerm <= term { return (i, ourTerm) }
      i -= 1
    }
    return (0, 0)
  }

  // MARK: Handing out work

  /// The unstable entries not yet handed out for persisting.
  func nextUnstableEntries() -> [Entry] {
    unstable.nextEntries()
  }

  /// Whether there are unstable entries not yet handed out for persisting.
  func hasNextUnstableEntries() -> Bool {
    unstable.offsetInProgress - unstable.offset < UInt64(unstable.entryCount)
  }

  /// Whether there are unstable entries, handed out or not.
  func hasNextOrInProgressUnstableEntries() -> Bool {
    unstable.entryCount > 0
  }

  /// The committed entries to hand to the application next: after `applying`, up to
  /// `maxAppliableIndex(allowUnstable:)`, within the remaining applying budget. Empty while
  /// paused or while a snapshot is pending (the snapshot must be applied first).
  func nextCommittedEntries(allowUnstable: Bool) -> [Entry] {
    if applyingEntsPaused { return [] }
    if hasNextOrInProgressSnapshot() { return [] }
    let lo = applying + 1
    let hi = maxAppliableIndex(allowUnstable: allowUnstable) + 1
    if lo >= hi { return [] }
    // Without a budget nothing is measured.
    let maxSize = maxApplyingEntsSize == noLimit ? noLimit : maxApplyingEntsSize &- applyingEntsSize
    if maxSize == 0 {
      logger.panic("applying entry size (\(maxApplyingEntsSize)-\(applyingEntsSize))=\(maxSize) not positive")
    }
    do {
      return try slice(lo: lo, hi: hi, maxSize: maxSize)
    } catch {
      logger.panic("unexpected error when getting unapplied entries (\(error))")
    }
  }

  /// Cheap check whether `nextCommittedEntries(allowUnstable:)` would return anything.
  func hasNextCommittedEntries(allowUnstable: Bool) -> Bool {
    if applyingEntsPaused { return false }
    // With a snapshot to apply, no entries are handed out: it is unclear what would come first.
    if hasNextOrInProgressSnapshot() { return false }
    return applying + 1 < maxAppliableIndex(allowUnstable: allowUnstable) + 1
  }

  /// The highest committed index that may be applied: `committed`, capped at the last stable
  /// index unless `allowUnstable`.
  func maxAppliableIndex(allowUnstable: Bool) -> UInt64 {
    allowUnstable ? committed : min(committed, unstable.offset - 1)
  }

  /// The unstable snapshot, when not yet handed out for persisting.
  func nextUnstableSnapshot() -> Snapshot? {
    unstable.nextSnapshot()
  }

  /// Whether there is an unstable snapshot not yet handed out for persisting.
  func hasNextUnstableSnapshot() -> Bool {
    unstable.hasSnapshot && !unstable.snapshotInProgress
  }

  /// Whether there is an unstable snapshot, handed out or not.
  func hasNextOrInProgressSnapshot() -> Bool {
    unstable.hasSnapshot
  }

  /// The latest snapshot: the unstable one, else the storage's (which may throw
  /// `RaftError.snapshotTemporarilyUnavailable`).
  func snapshot() throws -> Snapshot {
    if let s = unstable.snapshot { return s }
    return try storage.snapshot()
  }

  // MARK: Bounds

  /// The first index of the log.
  public func firstIndex() -> UInt64 {
    if let i = unstable.maybeFirstIndex() { return i }
    do {
      return try storage.firstIndex()
    } catch {
      logger.panic("cannot read the first index from storage: \(error)")
    }
  }

  /// The last index of the log.
  public func lastIndex() -> UInt64 {
    if let i = unstable.maybeLastIndex() { return i }
    do {
      return try storage.lastIndex()
    } catch {
      logger.panic("cannot read the last index from storage: \(error)")
    }
  }

  // MARK: Positions

  /// Raises the commit index to `toCommit` (never lowers it). Committing past the last index is
  /// a programmer error (a corrupted or lost log).
  func commitTo(_ toCommit: UInt64) {
    if committed < toCommit {
      let last = lastIndex()
      if last < toCommit {
        logger.panic(
          "tocommit(\(toCommit)) is out of range [lastIndex(\(last))]. Was the raft log corrupted, truncated, or lost?")
      }
      committed = toCommit
    }
  }

  /// Records that the application applied everything up to `i`, acknowledging `size` bytes of
  /// the outstanding applying budget (clamped at zero). `i` outside `[applied, committed]` is a
  /// programmer error.
  func appliedTo(_ i: UInt64, size: UInt64) {
    if committed < i || i < applied {
      logger.panic("applied(\(i)) is out of range [prevApplied(\(applied)), committed(\(committed))]")
    }
    applied = i
    applying = max(applying, i)
    applyingEntsSize = applyingEntsSize > size ? applyingEntsSize - size : 0
    applyingEntsPaused = applyingEntsSize >= maxApplyingEntsSize
  }

  /// Whether the bytes of the committed entries handed out are counted (only against a budget:
  /// without one, `applyingEntsSize` stays 0 and the sizes are never computed).
  @inlinable
  public var countsApplyingSize: Bool { maxApplyingEntsSize != noLimit }

  /// Records that committed entries up to `i` totalling `size` bytes were handed to the
  /// application, and pauses further hand-outs when the budget is used up or when the hand-out
  /// was cut short by the budget (`i` below what could have been applied).
  func acceptApplying(_ i: UInt64, size: UInt64, allowUnstable: Bool) {
    if committed < i {
      logger.panic("applying(\(i)) is out of range [prevApplying(\(applying)), committed(\(committed))]")
    }
    applying = i
    applyingEntsSize += size
    applyingEntsPaused =
      applyingEntsSize >= maxApplyingEntsSize || i < maxAppliableIndex(allowUnstable: allowUnstable)
  }

  /// Records that the entries up to `(index, term)` are persisted (see `Unstable.stableTo`).
  func stableTo(index: UInt64, term: UInt64) {
    unstable.stableTo(index: index, term: term)
  }

  /// Records that the snapshot at index `i` is persisted.
  func stableSnapTo(_ i: UInt64) {
    unstable.stableSnapTo(i)
  }

  /// Marks the current unstable entries and snapshot as handed out for persisting, so that
  /// later `Ready`s do not return them again.
  func acceptUnstable() {
    unstable.acceptInProgress()
  }

  // MARK: Terms and entries

  /// The term of the last entry.
  func lastTerm() -> UInt64 {
    tip().term
  }

  /// The index and term of the last entry.
  func tip() -> (index: UInt64, term: UInt64) {
    let index = lastIndex()
    do {
      return (index, try term(index))
    } catch {
      logger.panic("unexpected error when getting the last term (\(error))")
    }
  }

  /// The term of entry `i`, for `i` in `[firstIndex() - 1, lastIndex()]`. Throws
  /// `RaftError.compacted` below that range and `RaftError.unavailable` above it.
  public func term(_ i: UInt64) throws(RaftError) -> UInt64 {
    // The unstable log first: a hit there is valid without asking the storage for bounds.
    if let t = unstable.maybeTerm(i) { return t }
    // The valid range is [firstIndex-1, lastIndex]: the term of the entry before the first one
    // is kept for matching even though the entry itself is compacted.
    // (Wrapping: an index of UInt64.max from a peer is simply not in the log.)
    if i &+ 1 < firstIndex() { throw .compacted }
    if i > lastIndex() { throw .unavailable }
    do {
      return try storage.term(i)
    } catch let e as RaftError where e == .compacted || e == .unavailable {
      throw e
    } catch {
      logger.panic("unexpected error from storage term(\(i)): \(error)")
    }
  }

  /// The entries from `i` to the end of the log, within `maxSize` bytes (at least one).
  /// Empty when `i` is past the end; throws `RaftError.compacted` when `i` is compacted.
  func entries(from i: UInt64, maxSize: UInt64) throws(RaftError) -> [Entry] {
    let last = lastIndex()
    if i > last { return [] }
    return try slice(lo: i, hi: last + 1, maxSize: maxSize)
  }

  /// Every entry of the log (retrying if a compaction races the read).
  public func allEntries() -> [Entry] {
    while true {
      do {
        return try entries(from: firstIndex(), maxSize: noLimit)
      } catch .compacted {
        continue
      } catch {
        logger.panic("unexpected error when reading all entries (\(error))")
      }
    }
  }

  /// Whether a log ending at `(lastIndex, term)` is at least as up to date as this one: a later
  /// last term wins, and with equal last terms the longer (or equal) log wins.
  func isUpToDate(lastIndex: UInt64, term: UInt64) -> Bool {
    let (ourIndex, ourTerm) = tip()
    return term > ourTerm || (term == ourTerm && lastIndex >= ourIndex)
  }

  /// Whether the log has entry `i` with term `term` (false when `i` is outside the log).
  func matchTerm(_ i: UInt64, _ term: UInt64) -> Bool {
    guard let t = try? self.term(i) else { return false }
    return t == term
  }

  /// Commits up to `maxIndex` if the entry there has term `term` (the leader's current term)
  /// and the commit index is lower. Returns whether the commit index moved.
  func maybeCommit(maxIndex: UInt64, term: UInt64) -> Bool {
    // A term of 0 never matches: zeroTermOnOutOfBounds also answers 0 for unknown terms.
    if maxIndex > committed && term != 0 && zeroTermOnOutOfBounds({ try self.term(maxIndex) }) == term {
      commitTo(maxIndex)
      return true
    }
    return false
  }

  /// Resets the log to the snapshot `s`: everything up to it counts as committed, and the
  /// unstable log holds just the snapshot.
  func restore(_ s: Snapshot) {
    logger.info("log [\(self)] starts to restore snapshot [index: \(s.metadata.index), term: \(s.metadata.term)]")
    committed = s.metadata.index
    unstable.restore(s)
  }

  /// The entries with indexes `[lo, hi)` within `maxSize` bytes (at least one when the range is
  /// not empty), read from storage and/or the unstable log. Throws `RaftError.compacted` when
  /// `lo` is compacted; `lo > hi` or `hi` past the end is a programmer error.
  func slice(lo: UInt64, hi: UInt64, maxSize: UInt64) throws(RaftError) -> [Entry] {
    try checkOutOfBounds(lo, hi)
    if lo == hi { return [] }
    let split = unstable.offset
    var stored: [Entry] = []
    if lo < split {
      let storedHi = min(hi, split)
      do {
        stored = try storage.entries(lo: lo, hi: storedHi, maxSize: maxSize)
      } catch RaftError.compacted {
        throw .compacted
      } catch RaftError.unavailable {
        logger.panic("entries[\(lo):\(storedHi)) is unavailable from storage")
      } catch {
        logger.panic("unexpected error from storage entries[\(lo):\(storedHi)): \(error)")
      }
      // The storage stopped short: the size limit is reached.
      if UInt64(stored.count) < storedHi - lo { return stored }
      if hi <= split {
        // Respect the limit even if the storage did not.
        return storage.limitsEntriesBySize ? stored : limitSize(stored, maxSize: maxSize)
      }
    }
    // Some of the range is in the unstable log.
    let unstableLo = max(lo, split)
    unstable.mustCheckOutOfBounds(unstableLo, hi)
    // Work on the backing array itself (one retain) rather than on a copy of `unstable`.
    let buffer = unstable.buffer
    let start = unstable.head + Int(unstableLo - split)
    let tail = buffer[start..<(start + Int(hi - unstableLo))]
    if stored.isEmpty {
      let n = limitCount(tail, maxSize: maxSize)
      return n == buffer.count ? buffer : Array(tail.prefix(n))
    }
    // Stored entries followed by unstable ones, cut at the first entry that overflows the budget
    // (the first stored entry always counts).
    var keptStored = stored.count
    var keptTail = tail.count
    if maxSize != noLimit {
      var total: UInt64 = 0
      keptStored = 0
      for e in stored {
        total += e.size
        if keptStored > 0 && total > maxSize { break }
        keptStored += 1
      }
      keptTail = 0
      if keptStored == stored.count {
        for e in tail {
          total += e.size
          if total > maxSize { break }
          keptTail += 1
        }
      }
    }
    if keptTail == 0 { return keptStored == stored.count ? stored : Array(stored[..<keptStored]) }
    var out = stored
    out.append(contentsOf: tail.prefix(keptTail))
    return out
  }

  /// Checks `firstIndex() <= lo <= hi <= lastIndex() + 1`: throws `RaftError.compacted` when `lo`
  /// is compacted; the other violations are programmer errors.
  func checkOutOfBounds(_ lo: UInt64, _ hi: UInt64) throws(RaftError) {
    if lo > hi {
      logger.panic("invalid slice \(lo) > \(hi)")
    }
    let first = firstIndex()
    if lo < first { throw .compacted }
    let last = lastIndex()
    if hi > last + 1 {
      logger.panic("slice[\(lo),\(hi)) out of bound [\(first),\(last)]")
    }
  }

  /// The term returned by `t`, or 0 when `t` throws `RaftError.compacted` or
  /// `RaftError.unavailable`; any other error is a programmer error.
  func zeroTermOnOutOfBounds(_ t: () throws -> UInt64) -> UInt64 {
    do {
      return try t()
    } catch let e as RaftError where e == .compacted || e == .unavailable {
      return 0
    } catch {
      logger.panic("unexpected error (\(error))")
    }
  }
}
