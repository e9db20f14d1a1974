import Dispatch
import XCTest

@testable import Raft

/// Entries with consecutive indexes from `first`, one per term given.
private func seq(_ first: UInt64, _ terms: UInt64...) -> [Entry] {
  terms.enumerated().map { Entry(term: $0.element, index: first + UInt64($0.offset)) }
}

private func snap(_ index: UInt64, _ term: UInt64, confState: ConfState = ConfState(), data: [UInt8] = [])
  -> Snapshot
{
  Snapshot(data: data, metadata: SnapshotMetadata(confState: confState, index: index, term: term))
}

/// A storage whose log is `first, first+1, ...` with the given terms, where the entry at `first`
/// is the compacted one (only its index and term are known, as after a snapshot at `first`).
private func storage(_ first: UInt64, _ terms: UInt64...) throws -> MemoryStorage {
  let s = MemoryStorage()
  try s.applySnapshot(snap(first, terms[0]))
  try s.append(terms.dropFirst().enumerated().map { Entry(term: $0.element, index: first + 1 + UInt64($0.offset)) })
  return s
}

/// The whole log of `s` as (index, term) pairs, the compacted first entry included.
private func dump(_ s: MemoryStorage) throws -> [[UInt64]] {
  let first = try s.firstIndex()
  let last = try s.lastIndex()
  return try (first - 1...last).map { [$0, try s.term($0)] }
}

private func error(of body: () throws -> Void) -> RaftError? {
  do {
    try body()
    return nil
  } catch {
    return error as? RaftError
  }
}

final class LogMemoryStorageTests: XCTestCase {
  func testFresh() throws {
    let s = MemoryStorage()
    XCTAssertEqual(try s.firstIndex(), 1)
    XCTAssertEqual(try s.lastIndex(), 0)
    XCTAssertEqual(try s.term(0), 0)
    XCTAssertEqual(error { _ = try s.term(1) }, .unavailable)
    XCTAssertEqual(try s.snapshot(), Snapshot())
    let (hs, cs) = try s.initialState()
    XCTAssertEqual(hs, HardState())
    XCTAssertEqual(cs, ConfState())
    // Only the dummy entry: nothing can be read.
    XCTAssertEqual(error { _ = try s.entries(lo: 1, hi: 1, maxSize: noLimit) }, .unavailable)
  }

  func testTerm() throws {
    let s = try storage(3, 3, 4, 5)
    let cases: [(UInt64, UInt64?, RaftError?)] = [
      (2, nil, .compacted), (3, 3, nil), (4, 4, nil), (5, 5, nil), (6, nil, .unavailable),
    ]
    for (i, want, wantErr) in cases {
      do {
        let got = try s.term(i)
        XCTAssertEqual(got, want, "index \(i)")
        XCTAssertNil(wantErr, "index \(i)")
      } catch {
        XCTAssertEqual(error as? RaftError, wantErr, "index \(i)")
      }
    }
  }

  func testEntries() throws {
    let s = try storage(3, 3, 4, 5, 6)
    let all = seq(3, 3, 4, 5, 6)
    let size = all.map(\.size)
    let cases: [(lo: UInt64, hi: UInt64, max: UInt64, want: [Entry]?, err: RaftError?)] = [
      (2, 6, noLimit, nil, .compacted),
      (3, 4, noLimit, nil, .compacted),
      (4, 5, noLimit, seq(4, 4), nil),
      (4, 6, noLimit, seq(4, 4, 5), nil),
      (4, 7, noLimit, seq(4, 4, 5, 6), nil),
      (5, 5, noLimit, [], nil),
      // The first entry is returned even with no budget.
      (4, 7, 0, seq(4, 4), nil),
      (4, 7, size[1] + size[2], seq(4, 4, 5), nil),
      (4, 7, size[1] + size[2] + size[3] / 2, seq(4, 4, 5), nil),
      (4, 7, size[1] + size[2] + size[3] - 1, seq(4, 4, 5), nil),
      (4, 7, size[1] + size[2] + size[3], seq(4, 4, 5, 6), nil),
    ]
    for (i, c) in cases.enumerated() {
      do {
        let got = try s.entries(lo: c.lo, hi: c.hi, maxSize: c.max)
        XCTAssertNil(c.err, "case \(i)")
        XCTAssertEqual(got, c.want, "case \(i)")
      } catch {
        XCTAssertEqual(error as? RaftError, c.err, "case \(i)")
      }
    }
  }

  func testLastIndexAndFirstIndex() throws {
    let s = try storage(3, 3, 4, 5)
    XCTAssertEqual(try s.firstIndex(), 4)
    XCTAssertEqual(try s.lastIndex(), 5)
    try s.append(seq(6, 5))
    XCTAssertEqual(try s.lastIndex(), 6)
    try s.compact(4)
    XCTAssertEqual(try s.firstIndex(), 5)
    XCTAssertEqual(try s.lastIndex(), 6)
  }

  func testCompact() throws {
    let cases: [(index: UInt64, err: RaftError?, want: [[UInt64]])] = [
      (2, .compacted, [[3, 3], [4, 4], [5, 5]]),
      (3, .compacted, [[3, 3], [4, 4], [5, 5]]),
      (4, nil, [[4, 4], [5, 5]]),
      (5, nil, [[5, 5]]),
    ]
    for c in cases {
      let s = try storage(3, 3, 4, 5)
      XCTAssertEqual(error { try s.compact(c.index) }, c.err, "compact \(c.index)")
      XCTAssertEqual(try dump(s), c.want, "compact \(c.index)")
    }
  }

  func testCompactDropsPayloadOfNewDummy() throws {
    let s = MemoryStorage()
    try s.append([Entry(term: 1, index: 1, data: [1]), Entry(term: 1, index: 2, data: [2])])
    try s.compact(1)
    XCTAssertEqual(error { _ = try s.entries(lo: 1, hi: 2, maxSize: noLimit) }, .compacted)
    XCTAssertEqual(try s.entries(lo: 2, hi: 3, maxSize: noLimit), [Entry(term: 1, index: 2, data: [2])])
    XCTAssertEqual(try s.term(1), 1)
  }

  func testCreateSnapshot() throws {
    let cs = ConfState(voters: [1, 2, 3])
    let data: [UInt8] = Array("data".utf8)
    for i: UInt64 in [4, 5] {
      let s = try storage(3, 3, 4, 5)
      let got = try s.createSnapshot(i, confState: cs, data: data)
      XCTAssertEqual(got, snap(i, i, confState: cs, data: data))
      XCTAssertEqual(try s.snapshot(), got)
      XCTAssertEqual(try s.initialState().1, cs)
      // Creating a snapshot does not compact.
      XCTAssertEqual(try s.firstIndex(), 4)
    }
    // Not newer than the current snapshot.
    let s = try storage(3, 3, 4, 5)
    _ = try s.createSnapshot(4, confState: cs, data: data)
    XCTAssertEqual(error { _ = try s.createSnapshot(4, confState: nil, data: []) }, .snapshotOutOfDate)
    XCTAssertEqual(error { _ = try s.createSnapshot(3, confState: nil, data: []) }, .snapshotOutOfDate)
    // A nil configuration keeps the previous one.
    let later = try s.createSnapshot(5, confState: nil, data: [9])
    XCTAssertEqual(later, snap(5, 5, confState: cs, data: [9]))
  }

  func testAppend() throws {
    let cases: [(append: [Entry], want: [[UInt64]])] = [
      // Entirely older than the snapshot: ignored.
      (seq(1, 1, 2), [[3, 3], [4, 4], [5, 5]]),
      // Same entries: no change.
      (seq(3, 3, 4, 5), [[3, 3], [4, 4], [5, 5]]),
      // Conflicting tail replaced.
      (seq(3, 3, 6, 6), [[3, 3], [4, 6], [5, 6]]),
      // Extends.
      (seq(3, 3, 4, 5, 5), [[3, 3], [4, 4], [5, 5], [6, 5]]),
      // Compacted prefix of the input skipped, then the tail truncated and appended.
      (seq(2, 3, 3, 5), [[3, 3], [4, 5]]),
      // Truncate and append.
      (seq(4, 5), [[3, 3], [4, 5]]),
      // Direct append.
      (seq(6, 5), [[3, 3], [4, 4], [5, 5], [6, 5]]),
      // Nothing.
      ([], [[3, 3], [4, 4], [5, 5]]),
    ]
    for (i, c) in cases.enumerated() {
      let s = try storage(3, 3, 4, 5)
      try s.append(c.append)
      XCTAssertEqual(try dump(s), c.want, "case \(i)")
    }
  }

  func testAppendDoesNotAffectEntriesReadBefore() throws {
    let s = try storage(3, 3, 4, 5)
    let before = try s.entries(lo: 4, hi: 6, maxSize: noLimit)
    try s.append(seq(5, 9, 9))
    XCTAssertEqual(before, seq(4, 4, 5))
    XCTAssertEqual(try s.entries(lo: 4, hi: 7, maxSize: noLimit), seq(4, 4, 9, 9))
  }

  func testApplySnapshot() throws {
    let cs = ConfState(voters: [1, 2, 3])
    let data: [UInt8] = Array("data".utf8)
    // Normal case.
    var s = MemoryStorage()
    try s.applySnapshot(snap(4, 4, confState: cs, data: data))
    XCTAssertEqual(try s.snapshot(), snap(4, 4, confState: cs, data: data))
    XCTAssertEqual(try s.firstIndex(), 5)
    XCTAssertEqual(try s.lastIndex(), 4)
    XCTAssertEqual(try s.term(4), 4)
    XCTAssertEqual(try s.initialState().1, cs)
    // Out of date.
    XCTAssertEqual(error { try s.applySnapshot(snap(3, 3, confState: cs, data: data)) }, .snapshotOutOfDate)
    XCTAssertEqual(error { try s.applySnapshot(snap(4, 4, confState: cs, data: data)) }, .snapshotOutOfDate)
    // A newer one replaces the log.
    try s.append(seq(5, 4, 4))
    try s.applySnapshot(snap(10, 5))
    XCTAssertEqual(try dump(s), [[10, 5]])
    // Bootstrapping a fresh storage with a configuration only (index 0).
    s = MemoryStorage()
    try s.applySnapshot(snap(0, 0, confState: cs, data: data))
    XCTAssertEqual(try s.initialState().1, cs)
    XCTAssertEqual(try s.lastIndex(), 0)
  }

  func testHardState() throws {
    let s = MemoryStorage()
    let hs = HardState(term: 3, vote: 2, commit: 7)
    try s.setHardState(hs)
    XCTAssertEqual(try s.initialState().0, hs)
  }

  func testCallStats() throws {
    let s = try storage(3, 3, 4, 5)
    _ = try s.term(4)
    _ = try s.term(5)
    _ = try s.entries(lo: 4, hi: 5, maxSize: noLimit)
    _ = try s.snapshot()
    let stats = s.callStats
    XCTAssertEqual(stats.term, 2)
    XCTAssertEqual(stats.entries, 1)
    XCTAssertEqual(stats.snapshot, 1)
  }

  /// Appends on one thread while another reads: the lock keeps every read consistent.
  func testConcurrentAppendAndRead() throws {
    let s = MemoryStorage()
    let n: UInt64 = 2000
    DispatchQueue.concurrentPerform(iterations: 2) { worker in
      if worker == 0 {
        for i in 1...n { try! s.append([Entry(term: i, index: i)]) }
      } else {
        var seen: UInt64 = 0
        while seen < n {
          let last = try! s.lastIndex()
          XCTAssertGreaterThanOrEqual(last, seen)
          if last > 0 {
            XCTAssertEqual(try! s.term(last), last)
            let ents = try! s.entries(lo: 1, hi: last + 1, maxSize: noLimit)
            XCTAssertEqual(ents.count, Int(last))
            XCTAssertEqual(ents.last?.index, last)
          }
          seen = last
        }
      }
    }
  }
}
