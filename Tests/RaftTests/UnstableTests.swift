import XCTest

@testable import Raft

/// Entries with consecutive indexes from `first`, one per term given.
private func seq(_ first: UInt64, _ terms: UInt64...) -> [Entry] {
  terms.enumerated().map { Entry(term: $0.element, index: first + UInt64($0.offset)) }
}

private func snap(_ index: UInt64, _ term: UInt64) -> Snapshot {
  Snapshot(metadata: SnapshotMetadata(index: index, term: term))
}

/// Keeps the lines logged at info level and above.
private final class LinesLogger: RaftLogger {
  var lines: [String] = []
  /// The lowest level recorded.
  var lowest = RaftLogLevel.info
  func isEnabled(_ level: RaftLogLevel) -> Bool { level >= lowest }
  func log(_ level: RaftLogLevel, _ message: String) { lines.append("\(level) \(message)") }
}

final class LogUnstableTests: XCTestCase {
  func testMaybeFirstIndex() {
    struct Case {
      var entries: [Entry]
      var offset: UInt64
      var snapshot: Snapshot?
      var want: UInt64?
    }
    let cases = [
      Case(entries: seq(5, 1), offset: 5, snapshot: nil, want: nil),
      Case(entries: [], offset: 0, snapshot: nil, want: nil),
      Case(entries: seq(5, 1), offset: 5, snapshot: snap(4, 1), want: 5),
      Case(entries: [], offset: 5, snapshot: snap(4, 1), want: 5),
    ]
    for (i, c) in cases.enumerated() {
      let u = Unstable(entries: c.entries, offset: c.offset, snapshot: c.snapshot)
      XCTAssertEqual(u.maybeFirstIndex(), c.want, "case \(i)")
    }
  }

  func testMaybeLastIndex() {
    struct Case {
      var entries: [Entry]
      var offset: UInt64
      var snapshot: Snapshot?
      var want: UInt64?
    }
    let cases = [
      // From the entries, with or without a snapshot.
      Case(entries: seq(5, 1), offset: 5, snapshot: nil, want: 5),
      Case(entries: seq(5, 1), offset: 5, snapshot: snap(4, 1), want: 5),
      // From the snapshot.
      Case(entries: [], offset: 5, snapshot: snap(4, 1), want: 4),
      // Nothing unstable.
      Case(entries: [], offset: 0, snapshot: nil, want: nil),
    ]
    for (i, c) in cases.enumerated() {
      let u = Unstable(entries: c.entries, offset: c.offset, snapshot: c.snapshot)
      XCTAssertEqual(u.maybeLastIndex(), c.want, "case \(i)")
    }
  }

  func testMaybeTerm() {
    struct Case {
      var entries: [Entry]
      var offset: UInt64
      var snapshot: Snapshot?
      var index: UInt64
      var want: UInt64?
    }
    let cases = [
      // Entries only.
      Case(entries: seq(5, 1), offset: 5, snapshot: nil, index: 5, want: 1),
      Case(entries: seq(5, 1), offset: 5, snapshot: nil, index: 6, want: nil),
      Case(entries: seq(5, 1), offset: 5, snapshot: nil, index: 4, want: nil),
      // Entries after a snapshot.
      Case(entries: seq(5, 1), offset: 5, snapshot: snap(4, 1), index: 5, want: 1),
      Case(entries: seq(5, 1), offset: 5, snapshot: snap(4, 1), index: 6, want: nil),
      Case(entries: seq(5, 1), offset: 5, snapshot: snap(4, 1), index: 4, want: 1),
      Case(entries: seq(5, 1), offset: 5, snapshot: snap(4, 1), index: 3, want: nil),
      // Snapshot only.
      Case(entries: [], offset: 5, snapshot: snap(4, 1), index: 5, want: nil),
      Case(entries: [], offset: 5, snapshot: snap(4, 1), index: 4, want: 1),
      // Nothing.
      Case(entries: [], offset: 0, snapshot: nil, index: 5, want: nil),
    ]
    for (i, c) in cases.enumerated() {
      let u = Unstable(entries: c.entries, offset: c.offset, snapshot: c.snapshot)
      XCTAssertEqual(u.maybeTerm(c.index), c.want, "case \(i)")
    }
  }

  func testRestore() {
    var u = Unstable(
      entries: seq(5, 1), offset: 5, offsetInProgress: 6, snapshot: snap(4, 1), snapshotInProgress: true)
    let s = snap(6, 2)
    u.restore(s)
    XCTAssertEqual(u.offset, 7)
    XCTAssertEqual(u.offsetInProgress, 7)
    XCTAssertEqual(u.entryCount, 0)
    XCTAssertEqual(u.entries, [])
    XCTAssertEqual(u.snapshot, s)
    XCTAssertFalse(u.snapshotInProgress)
  }

  func testNextEntries() {
    let cases: [(inProgress: UInt64, want: [Entry])] = [
      (5, seq(5, 1, 1)),  // nothing in progress
      (6, seq(6, 1)),  // the first in progress
      (7, []),  // all in progress
    ]
    for (i, c) in cases.enumerated() {
      let u = Unstable(entries: seq(5, 1, 1), offset: 5, offsetInProgress: c.inProgress)
      XCTAssertEqual(u.nextEntries(), c.want, "case \(i)")
    }
  }

  func testNextSnapshot() {
    let s = snap(4, 1)
    XCTAssertNil(Unstable(offset: 5).nextSnapshot())
    XCTAssertEqual(Unstable(offset: 5, snapshot: s).nextSnapshot(), s)
    XCTAssertNil(Unstable(offset: 5, snapshot: s, snapshotInProgress: true).nextSnapshot())
  }

  func testAcceptInProgress() {
    struct Case {
      var entries: [Entry]
      var snapshot: Snapshot?
      var inProgress: UInt64
      var snapInProgress: Bool
      var wantInProgress: UInt64
    }
    var cases: [Case] = []
    for s in [nil, snap(4, 1)] {
      for snapInProgress in (s == nil ? [false] : [false, true]) {
        cases += [
          Case(entries: [], snapshot: s, inProgress: 5, snapInProgress: snapInProgress, wantInProgress: 5),
          Case(entries: seq(5, 1), snapshot: s, inProgress: 5, snapInProgress: snapInProgress, wantInProgress: 6),
          Case(entries: seq(5, 1, 1), snapshot: s, inProgress: 5, snapInProgress: snapInProgress, wantInProgress: 7),
          Case(entries: seq(5, 1, 1), snapshot: s, inProgress: 6, snapInProgress: snapInProgress, wantInProgress: 7),
          Case(entries: seq(5, 1, 1), snapshot: s, inProgress: 7, snapInProgress: snapInProgress, wantInProgress: 7),
        ]
      }
    }
    for (i, c) in cases.enumerated() {
      var u = Unstable(
        entries: c.entries, offset: 5, offsetInProgress: c.inProgress, snapshot: c.snapshot,
        snapshotInProgress: c.snapInProgress)
      u.acceptInProgress()
      XCTAssertEqual(u.offsetInProgress, c.wantInProgress, "case \(i)")
      XCTAssertEqual(u.snapshotInProgress, c.snapshot != nil, "case \(i)")
      XCTAssertEqual(u.nextEntries(), [], "case \(i)")
      XCTAssertNil(u.nextSnapshot(), "case \(i)")
    }
  }

  func testStableTo() {
    struct Case {
      var entries: [Entry]
      var offset: UInt64
      var inProgress: UInt64
      var snapshot: Snapshot?
      var index: UInt64
      var term: UInt64
      var wantOffset: UInt64
      var wantInProgress: UInt64
      var wantCount: Int
    }
    let cases = [
      Case(
        entries: [], offset: 0, inProgress: 0, snapshot: nil, index: 5, term: 1,
        wantOffset: 0, wantInProgress: 0, wantCount: 0),
      // Stable to the first entry.
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 6, snapshot: nil, index: 5, term: 1,
        wantOffset: 6, wantInProgress: 6, wantCount: 0),
      Case(
        entries: seq(5, 1, 1), offset: 5, inProgress: 6, snapshot: nil, index: 5, term: 1,
        wantOffset: 6, wantInProgress: 6, wantCount: 1),
      // In progress beyond the stable point is kept.
      Case(
        entries: seq(5, 1, 1), offset: 5, inProgress: 7, snapshot: nil, index: 5, term: 1,
        wantOffset: 6, wantInProgress: 7, wantCount: 1),
      // Term mismatch (the ABA case): ignored.
      Case(
        entries: seq(6, 2), offset: 6, inProgress: 7, snapshot: nil, index: 6, term: 1,
        wantOffset: 6, wantInProgress: 7, wantCount: 1),
      // Index before the unstable entries: ignored.
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 6, snapshot: nil, index: 4, term: 1,
        wantOffset: 5, wantInProgress: 6, wantCount: 1),
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 6, snapshot: nil, index: 4, term: 2,
        wantOffset: 5, wantInProgress: 6, wantCount: 1),
      // With a snapshot.
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 6, snapshot: snap(4, 1), index: 5, term: 1,
        wantOffset: 6, wantInProgress: 6, wantCount: 0),
      Case(
        entries: seq(5, 1, 1), offset: 5, inProgress: 6, snapshot: snap(4, 1), index: 5, term: 1,
        wantOffset: 6, wantInProgress: 6, wantCount: 1),
      Case(
        entries: seq(5, 1, 1), offset: 5, inProgress: 7, snapshot: snap(4, 1), index: 5, term: 1,
        wantOffset: 6, wantInProgress: 7, wantCount: 1),
      Case(
        entries: seq(6, 2), offset: 6, inProgress: 7, snapshot: snap(5, 1), index: 6, term: 1,
        wantOffset: 6, wantInProgress: 7, wantCount: 1),
      // The snapshot's index: ignored.
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 6, snapshot: snap(4, 1), index: 4, term: 1,
        wantOffset: 5, wantInProgress: 6, wantCount: 1),
      Case(
        entries: seq(5, 2), offset: 5, inProgress: 6, snapshot: snap(4, 2), index: 4, term: 1,
        wantOffset: 5, wantInProgress: 6, wantCount: 1),
    ]
    for (i, c) in cases.enumerated() {
      var u = Unstable(entries: c.entries, offset: c.offset, offsetInProgress: c.inProgress, snapshot: c.snapshot)
      u.stableTo(index: c.index, term: c.term)
      XCTAssertEqual(u.offset, c.wantOffset, "case \(i)")
      XCTAssertEqual(u.offsetInProgress, c.wantInProgress, "case \(i)")
      XCTAssertEqual(u.entryCount, c.wantCount, "case \(i)")
      XCTAssertEqual(u.entries.count, c.wantCount, "case \(i)")
    }
  }

  func testStableToLogsWhyItIgnores() {
    // (The expected case, an entry gone from the unstable log, logs at debug: etcd-io/raft#307.)
    let logger = LinesLogger()
    logger.lowest = .debug
    var u = Unstable(entries: seq(6, 2, 2), offset: 6, snapshot: snap(5, 1), logger: logger)
    u.stableTo(index: 9, term: 2)
    u.stableTo(index: 5, term: 1)
    u.stableTo(index: 7, term: 1)
    XCTAssertEqual(
      logger.lines,
      [
        "DEBUG entry at index 9 missing from unstable log; ignoring",
        "INFO entry at index 5 matched unstable snapshot; ignoring",
        "INFO entry at (index,term)=(7,1) mismatched with entry at (7,2) in unstable log; ignoring",
      ])
    XCTAssertEqual(u.offset, 6)
    XCTAssertEqual(u.entries, seq(6, 2, 2))
  }

  /// A write of the old tail finishes after the tail was replaced by entries of a newer term at
  /// the same indexes: the acknowledgement must not drop the new, unpersisted entries.
  func testStableToAfterReplacedTailIsIgnored() {
    var u = Unstable(entries: seq(5, 1, 1, 1), offset: 5)
    u.acceptInProgress()  // 5..7 (term 1) being written
    XCTAssertEqual(u.offsetInProgress, 8)
    u.truncateAndAppend(seq(6, 2, 2))  // the leader replaced 6..7
    XCTAssertEqual(u.offsetInProgress, 6)
    XCTAssertEqual(u.nextEntries(), seq(6, 2, 2))
    u.stableTo(index: 7, term: 1)  // the old write completes
    XCTAssertEqual(u.offset, 5)
    XCTAssertEqual(u.entries, seq(5, 1, 2, 2))
    u.stableTo(index: 5, term: 1)  // entry 5 of term 1 was indeed written
    XCTAssertEqual(u.offset, 6)
    XCTAssertEqual(u.entries, seq(6, 2, 2))
  }

  func testTruncateAndAppend() {
    struct Case {
      var entries: [Entry]
      var offset: UInt64
      var inProgress: UInt64
      var append: [Entry]
      var wantOffset: UInt64
      var wantInProgress: UInt64
      var want: [Entry]
    }
    let cases = [
      // Append at the end.
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 5, append: seq(6, 1, 1),
        wantOffset: 5, wantInProgress: 5, want: seq(5, 1, 1, 1)),
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 6, append: seq(6, 1, 1),
        wantOffset: 5, wantInProgress: 6, want: seq(5, 1, 1, 1)),
      // Replace everything.
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 5, append: seq(5, 2, 2),
        wantOffset: 5, wantInProgress: 5, want: seq(5, 2, 2)),
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 5, append: seq(4, 2, 2, 2),
        wantOffset: 4, wantInProgress: 4, want: seq(4, 2, 2, 2)),
      Case(
        entries: seq(5, 1), offset: 5, inProgress: 6, append: seq(5, 2, 2),
        wantOffset: 5, wantInProgress: 5, want: seq(5, 2, 2)),
      // Truncate the tail, then append.
      Case(
        entries: seq(5, 1, 1, 1), offset: 5, inProgress: 5, append: seq(6, 2),
        wantOffset: 5, wantInProgress: 5, want: seq(5, 1, 2)),
      Case(
        entries: seq(5, 1, 1, 1), offset: 5, inProgress: 5, append: seq(7, 2, 2),
        wantOffset: 5, wantInProgress: 5, want: seq(5, 1, 1, 2, 2)),
      Case(
        entries: seq(5, 1, 1, 1), offset: 5, inProgress: 6, append: seq(6, 2),
        wantOffset: 5, wantInProgress: 6, want: seq(5, 1, 2)),
      Case(
        entries: seq(5, 1, 1, 1), offset: 5, inProgress: 7, append: seq(6, 2),
        wantOffset: 5, wantInProgress: 6, want: seq(5, 1, 2)),
    ]
    for (i, c) in cases.enumerated() {
      var u = Unstable(entries: c.entries, offset: c.offset, offsetInProgress: c.inProgress)
      u.truncateAndAppend(c.append)
      XCTAssertEqual(u.offset, c.wantOffset, "case \(i)")
      XCTAssertEqual(u.offsetInProgress, c.wantInProgress, "case \(i)")
      XCTAssertEqual(u.entries, c.want, "case \(i)")
    }
  }

  func testTruncateAndAppendLogs() {
    let logger = LinesLogger()
    var u = Unstable(entries: seq(5, 1, 1, 1), offset: 5, logger: logger)
    u.truncateAndAppend(seq(8, 1))  // plain append: silent
    u.truncateAndAppend(seq(7, 2))
    u.truncateAndAppend(seq(4, 3))
    XCTAssertEqual(
      logger.lines,
      ["INFO truncate the unstable entries before index 7", "INFO replace the unstable entries from index 4"])
    XCTAssertEqual(u.entries, seq(4, 3))
  }

  func testSlice() {
    var u = Unstable(entries: seq(5, 1, 2, 3, 4), offset: 5)
    XCTAssertEqual(u.slice(5, 9), seq(5, 1, 2, 3, 4))
    XCTAssertEqual(u.slice(6, 8), seq(6, 2, 3))
    XCTAssertEqual(u.slice(7, 7), [])
    // After a stable prefix is dropped, indexes still map to the right entries.
    u.stableTo(index: 6, term: 2)
    XCTAssertEqual(u.slice(7, 9), seq(7, 3, 4))
    XCTAssertEqual(u.slice(8, 9), seq(8, 4))
    XCTAssertEqual(u.maybeTerm(7), 3)
    XCTAssertEqual(u.maybeTerm(6), nil)
  }

  /// Many rounds of "append a batch, hand it out, persist the oldest batch": the unstable log must
  /// keep exactly the unpersisted entries, in order, and its backing array must stay bounded by
  /// a constant factor of the live entries.
  func testPipelinedAppendAndStableKeepsOrderAndBoundedBuffer() {
    var u = Unstable(offset: 1)
    var next: UInt64 = 1
    var persisted: UInt64 = 0
    for round in 0..<2000 {
      let batch = (0..<UInt64(1 + round % 7)).map {
        Entry(term: 3, index: next + $0, data: [UInt8(truncatingIfNeeded: next + $0)])
      }
      u.truncateAndAppend(batch)
      next += UInt64(batch.count)
      XCTAssertEqual(u.nextEntries(), batch)
      u.acceptInProgress()
      // Persist up to a point lagging a few entries behind.
      let target = next > 20 ? next - 20 : 0
      if target > persisted {
        u.stableTo(index: target, term: 3)
        persisted = target
      }
      XCTAssertEqual(u.offset, persisted + 1)
      XCTAssertEqual(u.entryCount, Int(next - 1 - persisted))
      XCTAssertLessThanOrEqual(u.buffer.count, 2 * u.entryCount + 8)
    }
    let live = u.entries
    XCTAssertEqual(live.first?.index, persisted + 1)
    XCTAssertEqual(live.last?.index, next - 1)
    for (k, e) in live.enumerated() {
      XCTAssertEqual(e.index, persisted + 1 + UInt64(k))
      XCTAssertEqual(e.data, [UInt8(truncatingIfNeeded: e.index)])
    }
    u.stableTo(index: next - 1, term: 3)
    XCTAssertEqual(u.entryCount, 0)
    XCTAssertEqual(u.buffer.count, 0)
    XCTAssertEqual(u.offset, next)
  }

  func testEntriesSetterResets() {
    var u = Unstable(entries: seq(5, 1, 1, 1), offset: 5)
    u.stableTo(index: 5, term: 1)
    XCTAssertEqual(u.entries, seq(6, 1, 1))
    u.entries = seq(6, 4)
    XCTAssertEqual(u.entryCount, 1)
    XCTAssertEqual(u.maybeTerm(6), 4)
    XCTAssertEqual(u.maybeLastIndex(), 6)
  }
}
