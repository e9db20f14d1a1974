import XCTest

@testable import Raft

/// Entries with consecutive indexes from `first`, one per term given.
private func seq(_ first: UInt64, _ terms: UInt64...) -> [Entry] {
  terms.enumerated().map { Entry(term: $0.element, index: first + UInt64($0.offset)) }
}

/// Entries `[from, to)` where each entry's term equals its index.
private func termRange(_ from: UInt64, _ to: UInt64) -> [Entry] {
  (from..<to).map { Entry(term: $0, index: $0) }
}

private func snap(_ index: UInt64, _ term: UInt64) -> Snapshot {
  Snapshot(metadata: SnapshotMetadata(index: index, term: term))
}

/// Keeps the lines logged at info level and above.
private final class LinesLogger: RaftLogger {
  var lines: [String] = []
  func isEnabled(_ level: RaftLogLevel) -> Bool { level >= .info }
  func log(_ level: RaftLogLevel, _ message: String) { lines.append("\(level) \(message)") }
}

private func newLog(_ storage: MemoryStorage = MemoryStorage(), maxApplying: UInt64 = noLimit) -> RaftLog {
  RaftLog(storage: storage, logger: DiscardLogger(), maxApplyingEntsSize: maxApplying)
}

/// The log used by the apply tests: snapshot at 3 (term 1), entry 4 stable, 5 and 6 unstable,
/// committed up to 5, applied up to `applied`.
private func applyFixture(maxApplying: UInt64 = noLimit) throws -> RaftLog {
  let storage = MemoryStorage()
  try storage.applySnapshot(snap(3, 1))
  let ents = seq(4, 1, 1, 1)
  try storage.append(Array(ents[..<1]))
  let log = newLog(storage, maxApplying: maxApplying)
  log.append(ents)
  log.stableTo(index: 4, term: 1)
  XCTAssertTrue(log.maybeCommit(maxIndex: 5, term: 1))
  return log
}

private func termResult(_ log: RaftLog, _ i: UInt64) -> Result<UInt64, RaftError> {
  Result { () throws(RaftError) -> UInt64 in try log.term(i) }
}

private func sliceResult(_ log: RaftLog, _ lo: UInt64, _ hi: UInt64, _ max: UInt64) -> Result<[Entry], RaftError> {
  Result { () throws(RaftError) -> [Entry] in try log.slice(lo: lo, hi: hi, maxSize: max) }
}

final class LogRaftLogTests: XCTestCase {
  func testFindConflict() {
    let cases: [([Entry], UInt64)] = [
      // No conflict.
      ([], 0),
      (seq(1, 1, 2, 3), 0),
      (seq(2, 2, 3), 0),
      (seq(3, 3), 0),
      // No conflict, but new entries.
      (seq(1, 1, 2, 3, 4, 4), 4),
      (seq(2, 2, 3, 4, 5), 4),
      (seq(3, 3, 4, 4), 4),
      (seq(4, 4, 4), 4),
      // Conflicts with existing entries.
      (seq(1, 4, 4), 1),
      (seq(2, 1, 4, 4), 2),
      (seq(3, 1, 2, 4, 4), 3),
    ]
    for (i, (ents, want)) in cases.enumerated() {
      let log = newLog()
      log.append(seq(1, 1, 2, 3))
      XCTAssertEqual(log.findConflict(ents), want, "case \(i)")
    }
  }

  func testFindConflictLogsTheConflict() {
    let logger = LinesLogger()
    let log = RaftLog(storage: MemoryStorage(), logger: logger)
    log.append(seq(1, 1, 2, 3))
    XCTAssertEqual(log.findConflict(seq(2, 2, 5, 5)), 3)
    XCTAssertEqual(log.findConflict(seq(3, 3, 3)), 4)  // a new entry is not a conflict: silent
    XCTAssertEqual(logger.lines, ["INFO found conflict at index 3 [existing term: 3, conflicting term: 5]"])
  }

  func testFindConflictByTerm() throws {
    // `log[0]` is the snapshot (index, term); the rest are entries after it.
    let cases: [(log: [Entry], index: UInt64, term: UInt64, want: UInt64)] = [
      // The log starts at index 1.
      (seq(0, 0, 2, 2, 5, 5, 5), 100, 2, 100),  // unavailable
      (seq(0, 0, 2, 2, 5, 5, 5), 5, 6, 5),
      (seq(0, 0, 2, 2, 5, 5, 5), 5, 5, 5),
      (seq(0, 0, 2, 2, 5, 5, 5), 5, 4, 2),
      (seq(0, 0, 2, 2, 5, 5, 5), 5, 2, 2),
      (seq(0, 0, 2, 2, 5, 5, 5), 5, 1, 0),
      (seq(0, 0, 2, 2, 5, 5, 5), 1, 2, 1),
      (seq(0, 0, 2, 2, 5, 5, 5), 1, 1, 0),
      (seq(0, 0, 2, 2, 5, 5, 5), 0, 0, 0),
      // A log with compacted entries.
      (seq(10, 3, 3, 3, 4, 4, 4), 30, 3, 30),  // unavailable
      (seq(10, 3, 3, 3, 4, 4, 4), 14, 9, 14),
      (seq(10, 3, 3, 3, 4, 4, 4), 14, 4, 14),
      (seq(10, 3, 3, 3, 4, 4, 4), 14, 3, 12),
      (seq(10, 3, 3, 3, 4, 4, 4), 14, 2, 9),
      (seq(10, 3, 3, 3, 4, 4, 4), 11, 5, 11),
      (seq(10, 3, 3, 3, 4, 4, 4), 10, 5, 10),
      (seq(10, 3, 3, 3, 4, 4, 4), 10, 3, 10),
      (seq(10, 3, 3, 3, 4, 4, 4), 10, 2, 9),
      (seq(10, 3, 3, 3, 4, 4, 4), 9, 2, 9),  // compacted
      (seq(10, 3, 3, 3, 4, 4, 4), 4, 2, 4),  // compacted
      (seq(10, 3, 3, 3, 4, 4, 4), 0, 0, 0),  // compacted
    ]
    for (i, c) in cases.enumerated() {
      let storage = MemoryStorage()
      try storage.applySnapshot(snap(c.log[0].index, c.log[0].term))
      let log = newLog(storage)
      log.append(Array(c.log.dropFirst()))
      let got = log.findConflictByTerm(index: c.index, term: c.term)
      XCTAssertEqual(got.index, c.want, "case \(i)")
      XCTAssertEqual(got.term, log.zeroTermOnOutOfBounds { try log.term(c.want) }, "case \(i)")
    }
  }

  func testIsUpToDate() {
    let log = newLog()
    log.append(seq(1, 1, 2, 3))
    let last = log.lastIndex()
    let cases: [(UInt64, UInt64, Bool)] = [
      // A greater last term wins whatever the index.
      (last - 1, 4, true), (last, 4, true), (last + 1, 4, true),
      // A smaller last term loses whatever the index.
      (last - 1, 2, false), (last, 2, false), (last + 1, 2, false),
      // Equal last terms: the equal or longer log wins.
      (last - 1, 3, false), (last, 3, true), (last + 1, 3, true),
    ]
    for (i, (index, term, want)) in cases.enumerated() {
      XCTAssertEqual(log.isUpToDate(lastIndex: index, term: term), want, "case \(i)")
    }
  }

  func testAppend() throws {
    let cases: [(ents: [Entry], wantIndex: UInt64, want: [Entry], wantOffset: UInt64)] = [
      ([], 2, seq(1, 1, 2), 3),
      (seq(3, 2), 3, seq(1, 1, 2, 2), 3),
      // Conflicts with index 1.
      (seq(1, 2), 1, seq(1, 2), 1),
      // Conflicts with index 2.
      (seq(2, 3, 3), 3, seq(1, 1, 3, 3), 2),
    ]
    for (i, c) in cases.enumerated() {
      let storage = MemoryStorage()
      try storage.append(seq(1, 1, 2))
      let log = newLog(storage)
      XCTAssertEqual(log.append(c.ents), c.wantIndex, "case \(i)")
      XCTAssertEqual(try log.entries(from: 1, maxSize: noLimit), c.want, "case \(i)")
      XCTAssertEqual(log.unstable.offset, c.wantOffset, "case \(i)")
    }
  }

  /// If the log has the entry (index, logTerm): conflicting entries and all that follow are
  /// replaced, missing ones appended, and the commit index advances to min(committed, last new).
  /// Otherwise nothing changes.
  func testMaybeAppend() {
    let lastIndex: UInt64 = 3
    let lastTerm: UInt64 = 3
    let commit: UInt64 = 1
    typealias Case = (
      index: UInt64, logTerm: UInt64, committed: UInt64, ents: [Entry], want: UInt64?, wantCommit: UInt64
    )
    let cases: [Case] = [
      // No match: other term.
      (lastIndex, lastTerm - 1, lastIndex, seq(lastIndex + 1, 4), nil, commit),
      // No match: index past the end.
      (lastIndex + 1, lastTerm, lastIndex, seq(lastIndex + 2, 4), nil, commit),
      // Match with the last entry.
      (lastIndex, lastTerm, lastIndex, [], lastIndex, lastIndex),
      (lastIndex, lastTerm, lastIndex + 1, [], lastIndex, lastIndex),  // commit capped at last new
      (lastIndex, lastTerm, lastIndex - 1, [], lastIndex, lastIndex - 1),  // commit from the message
      (lastIndex, lastTerm, 0, [], lastIndex, commit),  // commit never decreases
      (0, 0, lastIndex, [], 0, commit),  // commit never decreases
      (lastIndex, lastTerm, lastIndex, seq(lastIndex + 1, 4), lastIndex + 1, lastIndex),
      (lastIndex, lastTerm, lastIndex + 1, seq(lastIndex + 1, 4), lastIndex + 1, lastIndex + 1),
      (lastIndex, lastTerm, lastIndex + 2, seq(lastIndex + 1, 4), lastIndex + 1, lastIndex + 1),
      (lastIndex, lastTerm, lastIndex + 2, seq(lastIndex + 1, 4, 4), lastIndex + 2, lastIndex + 2),
      // Match with an entry in the middle.
      (lastIndex - 1, lastTerm - 1, lastIndex, seq(lastIndex, 4), lastIndex, lastIndex),
      (lastIndex - 2, lastTerm - 2, lastIndex, seq(lastIndex - 1, 4), lastIndex - 1, lastIndex - 1),
      (lastIndex - 2, lastTerm - 2, lastIndex, seq(lastIndex - 1, 4, 4), lastIndex, lastIndex),
      // (Replacing the committed entry 1 is a programmer error: not tested, it stops the process.)
    ]
    for (i, c) in cases.enumerated() {
      let log = newLog()
      log.append(seq(1, 1, 2, 3))
      log.committed = commit
      let got = log.maybeAppend(index: c.index, logTerm: c.logTerm, committed: c.committed, entries: c.ents)
      XCTAssertEqual(got, c.want, "case \(i)")
      XCTAssertEqual(log.committed, c.wantCommit, "case \(i)")
      if got != nil && !c.ents.isEmpty {
        let last = log.lastIndex()
        XCTAssertEqual(
          try log.slice(lo: last - UInt64(c.ents.count) + 1, hi: last + 1, maxSize: noLimit), c.ents, "case \(i)")
      }
    }
  }

  /// Every query keeps working after the storage compacts under the log.
  func testCompactionSideEffects() throws {
    let lastIndex: UInt64 = 1000
    let unstableIndex: UInt64 = 750
    let storage = MemoryStorage()
    try storage.append(termRange(1, unstableIndex + 1))
    let log = newLog(storage)
    log.append(termRange(unstableIndex + 1, lastIndex + 1))
    XCTAssertTrue(log.maybeCommit(maxIndex: lastIndex, term: lastIndex))
    log.appliedTo(log.committed, size: 0)

    let offset: UInt64 = 500
    try storage.compact(offset)
    XCTAssertEqual(log.lastIndex(), lastIndex)
    for j in offset...lastIndex {
      XCTAssertEqual(try log.term(j), j)
      XCTAssertTrue(log.matchTerm(j, j))
    }
    let unstableEnts = log.nextUnstableEntries()
    XCTAssertEqual(unstableEnts.count, 250)
    XCTAssertEqual(unstableEnts.first?.index, 751)

    let prev = log.lastIndex()
    log.append([Entry(term: prev + 1, index: prev + 1)])
    XCTAssertEqual(log.lastIndex(), prev + 1)
    XCTAssertEqual(try log.entries(from: log.lastIndex(), maxSize: noLimit).count, 1)
  }

  func testHasNextCommittedEntriesAndNextCommittedEntries() throws {
    let ents = seq(4, 1, 1, 1)
    let cases: [(applied: UInt64, applying: UInt64, allowUnstable: Bool, paused: Bool, snap: Bool, want: [Entry])] = [
      (3, 3, true, false, false, Array(ents[0..<2])),
      (3, 4, true, false, false, Array(ents[1..<2])),
      (3, 5, true, false, false, []),
      (4, 4, true, false, false, Array(ents[1..<2])),
      (4, 5, true, false, false, []),
      (5, 5, true, false, false, []),
      // Only stable entries.
      (3, 3, false, false, false, Array(ents[0..<1])),
      (3, 4, false, false, false, []),
      (3, 5, false, false, false, []),
      (4, 4, false, false, false, []),
      (4, 5, false, false, false, []),
      (5, 5, false, false, false, []),
      // Paused.
      (3, 3, true, true, false, []),
      // A pending snapshot comes first.
      (3, 3, true, false, true, []),
    ]
    for (i, c) in cases.enumerated() {
      let log = try applyFixture()
      log.appliedTo(c.applied, size: 0)
      log.acceptApplying(c.applying, size: 0, allowUnstable: c.allowUnstable)
      log.applyingEntsPaused = c.paused
      if c.snap { log.restore(snap(4, 1)) }
      XCTAssertEqual(log.hasNextCommittedEntries(allowUnstable: c.allowUnstable), !c.want.isEmpty, "case \(i)")
      XCTAssertEqual(log.nextCommittedEntries(allowUnstable: c.allowUnstable), c.want, "case \(i)")
    }
  }

  func testAcceptApplying() throws {
    let maxSize: UInt64 = 100
    let cases: [(index: UInt64, allowUnstable: Bool, size: UInt64, wantPaused: Bool)] = [
      (3, true, maxSize - 1, true),
      (3, true, maxSize, true),
      (3, true, maxSize + 1, true),
      (4, true, maxSize - 1, true),
      (4, true, maxSize, true),
      (4, true, maxSize + 1, true),
      (5, true, maxSize - 1, false),
      (5, true, maxSize, true),
      (5, true, maxSize + 1, true),
      // Only stable entries.
      (3, false, maxSize - 1, true),
      (3, false, maxSize, true),
      (3, false, maxSize + 1, true),
      (4, false, maxSize - 1, false),
      (4, false, maxSize, true),
      (4, false, maxSize + 1, true),
      (5, false, maxSize - 1, false),
      (5, false, maxSize, true),
      (5, false, maxSize + 1, true),
    ]
    for (i, c) in cases.enumerated() {
      let log = try applyFixture(maxApplying: maxSize)
      log.appliedTo(3, size: 0)
      log.acceptApplying(c.index, size: c.size, allowUnstable: c.allowUnstable)
      XCTAssertEqual(log.applyingEntsPaused, c.wantPaused, "case \(i)")
      XCTAssertEqual(log.applying, c.index, "case \(i)")
      XCTAssertEqual(log.applyingEntsSize, c.size, "case \(i)")
    }
  }

  func testAppliedTo() throws {
    let maxSize: UInt64 = 100
    let overshoot: UInt64 = 5
    let cases: [(index: UInt64, size: UInt64, wantSize: UInt64, wantPaused: Bool)] = [
      // Some of the applying entries applied (applying is 5).
      (4, overshoot - 1, maxSize + 1, true),
      (4, overshoot, maxSize, true),
      (4, overshoot + 1, maxSize - 1, false),
      // All of them.
      (5, overshoot - 1, maxSize + 1, true),
      (5, overshoot, maxSize, true),
      (5, overshoot + 1, maxSize - 1, false),
      // All outstanding bytes acknowledged.
      (4, maxSize + overshoot, 0, false),
      // More than outstanding: clamped at zero.
      (4, maxSize + overshoot + 1, 0, false),
    ]
    for (i, c) in cases.enumerated() {
      let log = try applyFixture(maxApplying: maxSize)
      log.appliedTo(3, size: 0)
      log.acceptApplying(5, size: maxSize + overshoot, allowUnstable: false)
      log.appliedTo(c.index, size: c.size)
      XCTAssertEqual(log.applied, c.index, "case \(i)")
      XCTAssertEqual(log.applying, 5, "case \(i)")
      XCTAssertEqual(log.applyingEntsSize, c.wantSize, "case \(i)")
      XCTAssertEqual(log.applyingEntsPaused, c.wantPaused, "case \(i)")
    }
  }

  /// Committed entries are paginated by the applying budget, across the stable/unstable boundary,
  /// and the hand-out pauses until enough is acknowledged.
  func testNextCommittedEntriesPaginatesByApplyingBudget() throws {
    let payload = [UInt8](repeating: 7, count: 10)
    let ents = (1...6).map { Entry(term: 1, index: UInt64($0), data: payload) }
    let size = ents[0].size  // all the same size
    let storage = MemoryStorage()
    try storage.append(Array(ents[..<3]))
    let log = newLog(storage, maxApplying: 3 * size)
    log.append(Array(ents[3...]))
    log.commitTo(6)

    var got = log.nextCommittedEntries(allowUnstable: true)
    XCTAssertEqual(got, Array(ents[0..<3]))
    log.acceptApplying(try XCTUnwrap(got.last).index, size: entriesSize(got), allowUnstable: true)
    XCTAssertTrue(log.applyingEntsPaused)
    XCTAssertFalse(log.hasNextCommittedEntries(allowUnstable: true))
    XCTAssertEqual(log.nextCommittedEntries(allowUnstable: true), [])

    log.appliedTo(2, size: 2 * size)
    XCTAssertFalse(log.applyingEntsPaused)
    got = log.nextCommittedEntries(allowUnstable: true)
    XCTAssertEqual(got, Array(ents[3..<5]))  // only 2 fit beside the one still applying
    log.acceptApplying(try XCTUnwrap(got.last).index, size: entriesSize(got), allowUnstable: true)
    XCTAssertTrue(log.applyingEntsPaused)

    log.appliedTo(5, size: 3 * size)
    got = log.nextCommittedEntries(allowUnstable: true)
    XCTAssertEqual(got, Array(ents[5...]))
    log.acceptApplying(6, size: entriesSize(got), allowUnstable: true)
    XCTAssertFalse(log.applyingEntsPaused)  // one entry outstanding, nothing left to apply
    XCTAssertFalse(log.hasNextCommittedEntries(allowUnstable: true))
  }

  func testNextUnstableEntries() throws {
    let previous = seq(1, 1, 2)
    for unstableFrom in [3, 1] {
      let storage = MemoryStorage()
      try storage.append(Array(previous[..<(unstableFrom - 1)]))
      let log = newLog(storage)
      log.append(Array(previous[(unstableFrom - 1)...]))
      let ents = log.nextUnstableEntries()
      XCTAssertEqual(log.hasNextUnstableEntries(), !ents.isEmpty)
      if let last = ents.last { log.stableTo(index: last.index, term: last.term) }
      XCTAssertEqual(ents, Array(previous[(unstableFrom - 1)...]), "from \(unstableFrom)")
      XCTAssertEqual(log.unstable.offset, 3, "from \(unstableFrom)")
      XCTAssertFalse(log.hasNextOrInProgressUnstableEntries())
    }
  }

  func testAcceptUnstableAndInProgressQueries() {
    let log = newLog()
    log.append(seq(1, 1, 1))
    XCTAssertTrue(log.hasNextUnstableEntries())
    log.acceptUnstable()
    XCTAssertFalse(log.hasNextUnstableEntries())
    XCTAssertTrue(log.hasNextOrInProgressUnstableEntries())
    XCTAssertEqual(log.nextUnstableEntries(), [])
    log.append(seq(3, 1))
    XCTAssertEqual(log.nextUnstableEntries(), seq(3, 1))
    log.stableTo(index: 2, term: 1)
    XCTAssertEqual(log.unstable.offset, 3)
    XCTAssertEqual(log.nextUnstableEntries(), seq(3, 1))

    log.restore(snap(10, 2))
    XCTAssertTrue(log.hasNextUnstableSnapshot())
    XCTAssertTrue(log.hasNextOrInProgressSnapshot())
    XCTAssertEqual(log.nextUnstableSnapshot(), snap(10, 2))
    log.acceptUnstable()
    XCTAssertFalse(log.hasNextUnstableSnapshot())
    XCTAssertNil(log.nextUnstableSnapshot())
    XCTAssertTrue(log.hasNextOrInProgressSnapshot())
    XCTAssertEqual(try log.snapshot(), snap(10, 2))
    log.stableSnapTo(9)  // not this snapshot
    XCTAssertTrue(log.hasNextOrInProgressSnapshot())
    log.stableSnapTo(10)
    XCTAssertFalse(log.hasNextOrInProgressSnapshot())
  }

  func testCommitTo() {
    // (Committing past the last index is a programmer error: not tested, it stops the process.)
    for (to, want) in [(UInt64(3), UInt64(3)), (1, 2)] {
      let log = newLog()
      log.append(seq(1, 1, 2, 3))
      log.committed = 2
      log.commitTo(to)
      XCTAssertEqual(log.committed, want, "commitTo(\(to))")
    }
  }

  func testMaybeCommit() {
    let log = newLog()
    log.append(seq(1, 1, 2, 2))
    XCTAssertFalse(log.maybeCommit(maxIndex: 3, term: 1))  // wrong term
    XCTAssertFalse(log.maybeCommit(maxIndex: 9, term: 2))  // unknown entry
    XCTAssertFalse(log.maybeCommit(maxIndex: 0, term: 0))
    XCTAssertTrue(log.maybeCommit(maxIndex: 2, term: 2))
    XCTAssertEqual(log.committed, 2)
    XCTAssertFalse(log.maybeCommit(maxIndex: 2, term: 2))  // no progress
    XCTAssertTrue(log.maybeCommit(maxIndex: 3, term: 2))
    XCTAssertEqual(log.committed, 3)
  }

  func testStableTo() {
    let cases: [(index: UInt64, term: UInt64, wantOffset: UInt64)] = [
      (1, 1, 2),
      (2, 2, 3),
      (2, 1, 1),  // wrong term
      (3, 1, 1),  // wrong index
    ]
    for c in cases {
      let log = newLog()
      log.append(seq(1, 1, 2))
      log.stableTo(index: c.index, term: c.term)
      XCTAssertEqual(log.unstable.offset, c.wantOffset, "stableTo(\(c.index), \(c.term))")
    }
  }

  func testStableToWithSnapshot() throws {
    let si: UInt64 = 5
    let st: UInt64 = 2
    let cases: [(index: UInt64, term: UInt64, ents: [Entry], wantOffset: UInt64)] = [
      (si + 1, st, [], si + 1),
      (si, st, [], si + 1),
      (si - 1, st, [], si + 1),
      (si + 1, st + 1, [], si + 1),
      (si, st + 1, [], si + 1),
      (si - 1, st + 1, [], si + 1),
      (si + 1, st, seq(si + 1, st), si + 2),
      (si, st, seq(si + 1, st), si + 1),
      (si - 1, st, seq(si + 1, st), si + 1),
      (si + 1, st + 1, seq(si + 1, st), si + 1),
      (si, st + 1, seq(si + 1, st), si + 1),
      (si - 1, st + 1, seq(si + 1, st), si + 1),
    ]
    for (i, c) in cases.enumerated() {
      let storage = MemoryStorage()
      try storage.applySnapshot(snap(si, st))
      let log = newLog(storage)
      log.append(c.ents)
      log.stableTo(index: c.index, term: c.term)
      XCTAssertEqual(log.unstable.offset, c.wantOffset, "case \(i)")
    }
  }

  /// The number of entries left after successive compactions of the storage.
  func testCompaction() throws {
    let storage = MemoryStorage()
    try storage.append(termRange(1, 1001))
    let log = newLog(storage)
    XCTAssertFalse(log.maybeCommit(maxIndex: 1000, term: 0))  // term 0 never commits
    log.appliedTo(log.committed, size: 0)
    for (at, left) in [(UInt64(300), 700), (500, 500), (800, 200), (900, 100)] {
      try storage.compact(at)
      XCTAssertEqual(log.allEntries().count, left, "compact(\(at))")
    }
    // Compacting below what is already compacted fails and changes nothing.
    XCTAssertThrowsError(try storage.compact(899))
    XCTAssertEqual(log.allEntries().count, 100)
  }

  func testRestoreFromStorageSnapshot() throws {
    let index: UInt64 = 1000
    let term: UInt64 = 1000
    let storage = MemoryStorage()
    try storage.applySnapshot(snap(index, term))
    let log = newLog(storage)
    XCTAssertEqual(log.allEntries(), [])
    XCTAssertEqual(log.firstIndex(), index + 1)
    XCTAssertEqual(log.committed, index)
    XCTAssertEqual(log.applied, index)
    XCTAssertEqual(log.applying, index)
    XCTAssertEqual(log.unstable.offset, index + 1)
    XCTAssertEqual(log.unstable.offsetInProgress, index + 1)
    XCTAssertEqual(try log.term(index), term)
  }

  func testRestoreLogsAndResets() {
    let logger = LinesLogger()
    let log = RaftLog(storage: MemoryStorage(), logger: logger)
    log.append(seq(1, 1, 1))
    log.restore(snap(4, 1))
    XCTAssertEqual(
      logger.lines,
      [
        "INFO log [committed=0, applied=0, applying=0, unstable.offset=1, unstable.offsetInProgress=1, "
          + "len(unstable.Entries)=2] starts to restore snapshot [index: 4, term: 1]"
      ])
    XCTAssertEqual(log.committed, 4)
    XCTAssertEqual(log.firstIndex(), 5)
    XCTAssertEqual(log.lastIndex(), 4)
    XCTAssertEqual(log.lastTerm(), 1)
    XCTAssertEqual(log.unstable.entryCount, 0)
    XCTAssertEqual(
      log.description,
      "committed=4, applied=0, applying=0, unstable.offset=5, unstable.offsetInProgress=5, len(unstable.Entries)=0")
  }

  func testCheckOutOfBounds() throws {
    let offset: UInt64 = 100
    let num: UInt64 = 100
    let storage = MemoryStorage()
    try storage.applySnapshot(snap(offset, 0))
    let log = newLog(storage)
    log.append(termRange(offset + 1, offset + num + 1))
    let first = offset + 1
    // (lo > hi and hi past the end are programmer errors: not tested, they stop the process.)
    let cases: [(lo: UInt64, hi: UInt64, compacted: Bool)] = [
      (first - 2, first + 1, true),
      (first - 1, first + 1, true),
      (first, first, false),
      (first + num / 2, first + num / 2, false),
      (first + num - 1, first + num - 1, false),
      (first + num, first + num, false),
    ]
    for c in cases {
      let r = Result { () throws(RaftError) in try log.checkOutOfBounds(c.lo, c.hi) }
      switch r {
      case .success: XCTAssertFalse(c.compacted, "[\(c.lo), \(c.hi))")
      case .failure(let e): XCTAssertTrue(c.compacted && e == .compacted, "[\(c.lo), \(c.hi))")
      }
    }
  }

  func testTerm() throws {
    let offset: UInt64 = 100
    let num: UInt64 = 100
    let storage = MemoryStorage()
    try storage.applySnapshot(snap(offset, 1))
    let log = newLog(storage)
    log.append((1..<num).map { Entry(term: $0, index: offset + $0) })
    let cases: [(UInt64, Result<UInt64, RaftError>)] = [
      (offset - 1, .failure(.compacted)),
      (offset, .success(1)),
      (offset + num / 2, .success(num / 2)),
      (offset + num - 1, .success(num - 1)),
      (offset + num, .failure(.unavailable)),
    ]
    for (i, want) in cases {
      XCTAssertEqual(termResult(log, i), want, "term(\(i))")
    }
    XCTAssertEqual(log.zeroTermOnOutOfBounds { try log.term(offset - 1) }, 0)
    XCTAssertEqual(log.zeroTermOnOutOfBounds { try log.term(offset + num) }, 0)
    XCTAssertEqual(log.zeroTermOnOutOfBounds { try log.term(offset + 3) }, 3)
  }

  func testTermWithUnstableSnapshot() throws {
    let storedSnap: UInt64 = 100
    let unstableSnap = storedSnap + 5
    let storage = MemoryStorage()
    try storage.applySnapshot(snap(storedSnap, 1))
    let log = newLog(storage)
    log.restore(snap(unstableSnap, 1))
    let cases: [(UInt64, Result<UInt64, RaftError>)] = [
      // Not from the storage any more.
      (storedSnap, .failure(.compacted)),
      // Not from the gap between the stored log and the unstable snapshot.
      (storedSnap + 1, .failure(.compacted)),
      (unstableSnap - 1, .failure(.compacted)),
      // The unstable snapshot's own index.
      (unstableSnap, .success(1)),
      // Nothing after it yet.
      (unstableSnap + 1, .failure(.unavailable)),
    ]
    for (i, want) in cases {
      XCTAssertEqual(termResult(log, i), want, "term(\(i))")
    }
  }

  func testSlice() throws {
    let offset: UInt64 = 100
    let num: UInt64 = 100
    let last = offset + num
    let half = offset + num / 2
    let entrySize = Entry(term: half, index: half).size

    let storage = MemoryStorage()
    try storage.applySnapshot(snap(offset, 0))
    try storage.append(termRange(offset + 1, half))
    let log = newLog(storage)
    log.append(termRange(half, last))

    // (lo > hi and hi past the end are programmer errors: not tested, they stop the process.)
    let cases: [(lo: UInt64, hi: UInt64, max: UInt64, want: [Entry]?)] = [
      // Compacted.
      (offset - 1, offset + 1, noLimit, nil),
      (offset, offset + 1, noLimit, nil),
      // No limit.
      (offset + 1, offset + 1, noLimit, []),
      (offset + 1, half - 1, noLimit, termRange(offset + 1, half - 1)),
      (offset + 1, half, noLimit, termRange(offset + 1, half)),
      (offset + 1, half + 1, noLimit, termRange(offset + 1, half + 1)),
      (offset + 1, last, noLimit, termRange(offset + 1, last)),
      (half - 1, half, noLimit, termRange(half - 1, half)),
      (half - 1, half + 1, noLimit, termRange(half - 1, half + 1)),
      (half - 1, last, noLimit, termRange(half - 1, last)),
      (half, half + 1, noLimit, termRange(half, half + 1)),
      (half, last, noLimit, termRange(half, last)),
      (last - 1, last, noLimit, termRange(last - 1, last)),
      // At least one entry.
      (offset + 1, last, 0, termRange(offset + 1, offset + 2)),
      (half - 1, half + 1, 0, termRange(half - 1, half)),
      (half, last, 0, termRange(half, half + 1)),
      (half + 1, last, 0, termRange(half + 1, half + 2)),
      // Below one entry.
      (offset + 1, last, entrySize - 1, termRange(offset + 1, offset + 2)),
      (half - 1, half + 1, entrySize - 1, termRange(half - 1, half)),
      (half, last, entrySize - 1, termRange(half, half + 1)),
      // Exactly one entry.
      (offset + 1, last, entrySize, termRange(offset + 1, offset + 2)),
      (half - 1, half + 1, entrySize, termRange(half - 1, half)),
      (half, last, entrySize, termRange(half, half + 1)),
      // Not quite two.
      (offset + 1, last, entrySize + 1, termRange(offset + 1, offset + 2)),
      (half - 1, half + 1, entrySize + 1, termRange(half - 1, half)),
      (half, last, entrySize + 1, termRange(half, half + 1)),
      // Two, across the boundary or on either side.
      (offset + 1, last, entrySize * 2, termRange(offset + 1, offset + 3)),
      (half - 2, half + 1, entrySize * 2, termRange(half - 2, half)),
      (half - 1, half + 1, entrySize * 2, termRange(half - 1, half + 1)),
      (half, last, entrySize * 2, termRange(half, half + 2)),
      // Not quite three.
      (half - 2, half + 1, entrySize * 3 - 1, termRange(half - 2, half)),
      // Three, across the boundary.
      (half - 1, half + 2, entrySize * 3, termRange(half - 1, half + 2)),
    ]
    for (i, c) in cases.enumerated() {
      let got = sliceResult(log, c.lo, c.hi, c.max)
      if let want = c.want {
        XCTAssertEqual(got, .success(want), "case \(i)")
      } else {
        XCTAssertEqual(got, .failure(.compacted), "case \(i)")
      }
    }
  }

  func testSliceAfterStablePrefixDropped() throws {
    let storage = MemoryStorage()
    let log = newLog(storage)
    log.append(termRange(1, 11))
    // Persist 1..6 as the application would, then acknowledge.
    try storage.append(termRange(1, 7))
    log.stableTo(index: 6, term: 6)
    XCTAssertEqual(log.unstable.offset, 7)
    XCTAssertEqual(try log.slice(lo: 1, hi: 11, maxSize: noLimit), termRange(1, 11))
    XCTAssertEqual(try log.slice(lo: 5, hi: 9, maxSize: noLimit), termRange(5, 9))
    XCTAssertEqual(try log.slice(lo: 7, hi: 11, maxSize: noLimit), termRange(7, 11))
    XCTAssertEqual(try log.slice(lo: 8, hi: 10, maxSize: noLimit), termRange(8, 10))
    XCTAssertEqual(log.allEntries(), termRange(1, 11))
  }

  func testLimitSize() {
    let ents = termRange(4, 7)
    let s = ents.map(\.size)
    let cases: [(UInt64, [Entry])] = [
      (noLimit, ents),
      (0, Array(ents[..<1])),  // at least one
      (s[0] + s[1], Array(ents[..<2])),
      (s[0] + s[1] + s[2] / 2, Array(ents[..<2])),
      (s[0] + s[1] + s[2] - 1, Array(ents[..<2])),
      (s[0] + s[1] + s[2], ents),
    ]
    for (max, want) in cases {
      XCTAssertEqual(limitSize(ents, maxSize: max), want, "max \(max)")
    }
    XCTAssertEqual(limitSize([], maxSize: 0), [])
    // The protobuf size of an entry: tag+varint for term, index and type, plus the data field.
    XCTAssertEqual(Entry(term: 1, index: 1).size, 6)
    XCTAssertEqual(Entry(term: 1, index: 1, data: [1, 2, 3]).size, 11)
  }
}
