/// The part of the log not yet known to be in `Storage`: new entries and possibly a snapshot
/// received from the leader (etcd-raft's `unstable`).
///
/// It has two jobs. It keeps new entries and the snapshot until they are handed to the
/// application for persisting, and it keeps them after that, while the write is in progress, so
/// that the log still sees them until the write is confirmed (`stableTo` / `stableSnapTo`).
///
/// The entry with log index `offset + k` is `entries[k]`. `offset` may be lower than the last
/// index in `Storage`: the next write then truncates the stored log first.
///
/// Storage: the live entries are `buffer[head...]`. Dropping a persisted prefix only moves
/// `head`; the dead prefix is reclaimed once it outgrows the live part, so both appending and
/// dropping are amortised O(1) per entry.
public struct Unstable {
  /// The incoming snapshot, if any.
  public var snapshot: Snapshot? {
    get { snapshotBox?.value }
    set { snapshotBox = newValue.map(SnapshotBox.init) }
  }
  /// Out of line, so that checking for a snapshot (done several times per Ready) copies nothing.
  private var snapshotBox: SnapshotBox?
  /// Whether there is an unstable snapshot (handed out or not).
  public var hasSnapshot: Bool { snapshotBox != nil }
  /// The unstable snapshot's index, if there is one.
  var snapshotIndex: UInt64? { snapshotBox?.value.metadata.index }
  /// Backing array; `buffer[..<head]` are dead entries already persisted.
  @usableFromInline var buffer: [Entry]
  /// Number of dead entries at the front of `buffer`. Invariant: `0 <= head <= buffer.count`.
  @usableFromInline var head: Int
  /// Log index of the first unstable entry.
  public var offset: UInt64
  /// True while the snapshot is being written to storage.
  public var snapshotInProgress: Bool
  /// Exclusive end of the entries being written to storage: the entries with indexes in
  /// `[offset, offsetInProgress)` are in progress.
  /// Invariant: `offset <= offsetInProgress <= offset + entryCount`.
  public var offsetInProgress: UInt64

  var logger: any RaftLogger

  /// An unstable log starting at `offset`; `offsetInProgress` defaults to `offset` (nothing in
  /// progress).
  public init(
    entries: [Entry] = [], offset: UInt64 = 0, offsetInProgress: UInt64? = nil,
    snapshot: Snapshot? = nil, snapshotInProgress: Bool = false,
    logger: any RaftLogger = DiscardLogger()
  ) {
    self.buffer = entries
    self.head = 0
    self.offset = offset
    self.offsetInProgress = offsetInProgress ?? offset
    self.snapshotBox = snapshot.map(SnapshotBox.init)
    self.snapshotInProgress = snapshotInProgress
    self.logger = logger
  }

  /// The unstable entries; `entries[k]` has log index `offset + k`. Reading copies unless the
  /// backing array holds no dead prefix; prefer `entryCount` and the index-based accessors.
  public var entries: [Entry] {
    get { head == 0 ? buffer : Array(buffer[head...]) }
    set {
      buffer = newValue
      head = 0
    }
  }

  /// The number of unstable entries (O(1)).
  @inlinable
  public var entryCount: Int { buffer.count - head }

  /// The entries with log indexes `[lo, hi)` as a view of the backing array (no copy). The whole
  /// range must be in the unstable log.
  @inline(__always)
  func view(_ lo: UInt64, _ hi: UInt64) -> ArraySlice<Entry> {
    buffer[(head + Int(lo - offset))..<(head + Int(hi - offset))]
  }

  /// The first index covered by the unstable snapshot's log, if there is a snapshot.
  @inline(__always)
  func maybeFirstIndex() -> UInt64? {
    snapshotIndex.map { $0 + 1 }
  }

  /// The last index of the unstable log: its last entry, else the snapshot index; `nil` when
  /// there is neither.
  @inline(__always)
  func maybeLastIndex() -> UInt64? {
    let n = entryCount
    if n != 0 { return offset + UInt64(n) - 1 }
    return snapshotIndex
  }

  /// The term of the entry at `i` when the unstable log knows it (an unstable entry, or the
  /// snapshot's own index).
  @inline(__always)
  func maybeTerm(_ i: UInt64) -> UInt64? {
    if i < offset {
      if let box = snapshotBox, box.value.metadata.index == i { return box.value.metadata.term }
      return nil
    }
    let k = i - offset
    guard k < UInt64(entryCount) else { return nil }
    return buffer[head + Int(k)].term
  }

  /// The unstable entries not yet handed out for persisting.
  @inline(__always)
  func nextEntries() -> [Entry] {
    let inProgress = Int(offsetInProgress - offset)
    let n = entryCount
    if inProgress >= n { return [] }
    let start = head + inProgress
    return start == 0 ? buffer : Array(buffer[start...])
  }

  /// The unstable snapshot when it is not yet handed out for persisting.
  func nextSnapshot() -> Snapshot? {
    if snapshotInProgress { return nil }
    return snapshot
  }

  /// Marks everything currently unstable (entries and snapshot) as handed out for persisting:
  /// `nextEntries` / `nextSnapshot` no longer return it. Later additions are returned again
  /// until the next call.
  mutating func acceptInProgress() {
    // Equal to last.index + 1 while the entries are contiguous from offset (the invariant),
    // and free of overflow.
    if entryCount > 0 { offsetInProgress = offset + UInt64(entryCount) }
    if hasSnapshot { snapshotInProgress = true }
  }

  /// Records that the entries up to `(index, term)` are persisted and drops them.
  ///
  /// Ignores the call (logging why) when the unstable log has no entry at `index`, when `index`
  /// is the unstable snapshot's, or when the entry at `index` has another term: the last case
  /// means the tail was replaced while the write was in flight, so the write persisted entries
  /// that are no longer ours (the ABA case) and nothing may be dropped.
  mutating func stableTo(index: UInt64, term: UInt64) {
    guard let ourTerm = maybeTerm(index) else {
      logger.debug("entry at index \(index) missing from unstable log; ignoring")
      return
    }
    if index < offset {
      logger.info("entry at index \(index) matched unstable snapshot; ignoring")
      return
    }
    if ourTerm != term {
      logger.info(
        "entry at (index,term)=(\(index),\(term)) mismatched with "
          + "entry at (\(index),\(ourTerm)) in unstable log; ignoring")
      return
    }
    dropPrefix(Int(index + 1 - offset))
    offset = index + 1
    offsetInProgress = max(offsetInProgress, offset)
    checkInvariants()
  }

  /// Drops the first `k` live entries, reclaiming the dead prefix when it outgrows the live
  /// part (so each entry is moved at most a constant number of times on average).
  mutating func dropPrefix(_ k: Int) {
    let live = entryCount - k
    if live == 0 {
      // Release the entries (the next proposal's array is adopted whole; keeping this buffer
      // would copy it while a Ready still shares it).
      buffer = []
      head = 0
      return
    }
    head += k
    if head > live {
      buffer.removeSubrange(0..<head)
      head = 0
    }
  }

  /// Records that the snapshot at index `i` is persisted and drops it.
  mutating func stableSnapTo(_ i: UInt64) {
    if snapshotIndex == i {
      self.snapshot = nil
      snapshotInProgress = false
    }
  }

  /// Replaces the whole unstable log with the snapshot `s`: no entries, the log resumes after it.
  mutating func restore(_ s: Snapshot) {
    offset = s.metadata.index + 1
    offsetInProgress = offset
    buffer.removeAll()
    head = 0
    snapshot = s
    snapshotInProgress = false
  }

  /// Appends `ents` (consecutive indexes), first dropping any unstable entries at or after
  /// `ents[0].index`. Entries replaced that were in progress stop being in progress.
  mutating func truncateAndAppend(_ ents: [Entry]) {
    if entryCount == 0, let first = ents.first, first.index == offset {
      // Nothing unstable: adopt the caller's array (a proposal's entries) instead of copying
      // its elements; a Ready then hands the same array out.
      buffer = ents
      head = 0
      checkInvariants()
      return
    }
    truncateAndAppend(slice: ents[...])
  }

  /// `truncateAndAppend` for a view of the caller's array (avoids an intermediate copy).
  mutating func truncateAndAppend(slice ents: ArraySlice<Entry>) {
    guard let first = ents.first else { return }
    let fromIndex = first.index
    let end = offset + UInt64(entryCount)
    if fromIndex == end {
      // The common case: the new entries continue the log.
      buffer.append(contentsOf: ents)
    } else if fromIndex <= offset {
      // Everything unstable is replaced (and the stored log is truncated when persisted).
      logger.info("replace the unstable entries from index \(fromIndex)")
      buffer = Array(ents)
      head = 0
      offset = fromIndex
      offsetInProgress = offset
    } else {
      // Keep [offset, fromIndex) and replace the rest.
      logger.info("truncate the unstable entries before index \(fromIndex)")
      mustCheckOutOfBounds(offset, fromIndex)
      buffer.removeSubrange((head + Int(fromIndex - offset))...)
      buffer.append(contentsOf: ents)
      // Only the in-progress entries before fromIndex are still in progress.
      offsetInProgress = min(offsetInProgress, fromIndex)
    }
    checkInvariants()
  }

  /// The entries with indexes `[lo, hi)`, which must all be in the unstable log (else a
  /// programmer error). Copies the range, except when it is the whole backing array.
  @inline(__always)
  func slice(_ lo: UInt64, _ hi: UInt64) -> [Entry] {
    mustCheckOutOfBounds(lo, hi)
    let v = view(lo, hi)
    return v.count == buffer.count ? buffer : Array(v)
  }

  /// Stops the process unless `offset <= lo <= hi <= offset + entryCount`.
  @inline(__always)
  func mustCheckOutOfBounds(_ lo: UInt64, _ hi: UInt64) {
    if lo > hi || lo < offset || hi > offset + UInt64(entryCount) {
      outOfBounds(lo, hi)
    }
  }

  @inline(never)
  private func outOfBounds(_ lo: UInt64, _ hi: UInt64) -> Never {
    if lo > hi {
      logger.panic("invalid unstable.slice \(lo) > \(hi)")
    }
    logger.panic("unstable.slice[\(lo),\(hi)) out of bound [\(offset),\(offset + UInt64(entryCount))]")
  }

  @inline(__always)
  func checkInvariants() {
    assert(head >= 0 && head <= buffer.count, "unstable: head \(head) outside buffer of \(buffer.count)")
    assert(
      offset <= offsetInProgress && offsetInProgress <= offset + UInt64(entryCount),
      "unstable: offsetInProgress \(offsetInProgress) outside [\(offset), \(offset + UInt64(entryCount))]")
    assert(
      entryCount == 0 || buffer[head].index == offset,
      "unstable: first entry index \(entryCount == 0 ? 0 : buffer[head].index) != offset \(offset)")
  }
}
