import Raft
import XCTest

@testable import RaftWAL

final class WALTests: XCTestCase {
  var dirs: [String] = []

  override func tearDown() {
    for d in dirs { removeDirectory(d) }
    dirs = []
  }

  func tempDir() -> String {
    let d = makeTemporaryDirectory()
    dirs.append(d)
    return d
  }

  func testRoundTrip() throws {
    try forEachIO { io in
      let dir = tempDir()
      let wal = try WAL(directory: dir, options: smallOptions(io))
      XCTAssertEqual(wal.io, io.io)
      XCTAssertEqual(wal.recovered.entries, [])
      let s1 = try wal.append(entries: makeEntries(1...10), hardState: HardState(term: 1, vote: 2, commit: 5))
      let s2 = try wal.append(
        entries: makeEntries(11...12, size: 0), hardState: HardState(term: 1, vote: 2, commit: 12))
      XCTAssertEqual(s2, s1 + 1)
      try wal.sync()
      XCTAssertEqual(wal.durableSequence, s2)
      try wal.close()

      let again = try WAL(directory: dir, options: smallOptions(io))
      XCTAssertEqual(again.recovered.entries, makeEntries(1...10) + makeEntries(11...12, size: 0))
      XCTAssertEqual(again.recovered.hardState, HardState(term: 1, vote: 2, commit: 12))
      XCTAssertEqual(again.recovered.snapshot, Snapshot())
      XCTAssertNil(again.inspection.tornTail)
      try again.close()
    }
  }

  func testAcknowledgementsAreInOrderWithManyBatchesInFlight() throws {
    try forEachIO { io in
      let dir = tempDir()
      var o = smallOptions(io)
      o.segmentBytes = 1 << 20
      o.batchesInFlightMax = 8
      o.ringDepth = 32
      let wal = try WAL(directory: dir, options: o)
      var last: UInt64 = 0
      var seen: [UInt64] = []
      for i in 0..<200 {
        let seq = try wal.append(entries: [makeEntry(UInt64(i + 1), size: 100)])
        try wal.submit()
        XCTAssertEqual(seq, UInt64(i + 1))
        let d = try wal.poll()
        XCTAssertGreaterThanOrEqual(d, last)
        XCTAssertLessThanOrEqual(d, seq)
        XCTAssertLessThanOrEqual(wal.batchesInFlight, 8)
        if d != last { seen.append(d) }
        last = d
      }
      try wal.sync()
      XCTAssertEqual(wal.durableSequence, 200)
      XCTAssertEqual(wal.stats.batches, 200)
      if io.io == .uring && io.writes == .inline {
        XCTAssertLessThanOrEqual(wal.stats.syncs, 200, "a sync may cover several batches")
        XCTAssertGreaterThan(wal.stats.syncs, 0)
      } else {
        XCTAssertEqual(wal.stats.syncs, 200)
      }
      try wal.close()
      XCTAssertEqual(try WAL(directory: dir, options: o).recovered.entries.count, 200)
    }
  }

  func testBatchesCloseAtTheirLimits() throws {
    let dir = tempDir()
    var o = smallOptions()
    o.batchEntriesMax = 10
    let wal = try WAL(directory: dir, options: o)
    for i in 1...25 { try wal.append(entries: [makeEntry(UInt64(i))]) }
    // Two batches of ten went out by themselves (the first one with the segment prologue).
    XCTAssertEqual(wal.stats.batches, 2)
    XCTAssertEqual(wal.openBatchEntries, 5)
    try wal.sync()
    XCTAssertEqual(wal.stats.batches, 3)
    XCTAssertEqual(wal.durableSequence, 25)
  }

  func testLingerHoldsABatchUntilItIsDue() throws {
    let dir = tempDir()
    var o = smallOptions()
    o.lingerMicroseconds = 1_000_000  // long enough that a loaded machine cannot make it pass early
    let wal = try WAL(directory: dir, options: o)
    try wal.append(entries: [makeEntry(1)])
    let opened = monotonicNanoseconds()
    let wait = try wal.submitIfDue(nowNanoseconds: opened)
    XCTAssertGreaterThan(wait, 0)
    XCTAssertLessThanOrEqual(wait, 1_000_000_000)
    XCTAssertEqual(wal.stats.batches, 0)
    XCTAssertEqual(try wal.submitIfDue(nowNanoseconds: opened + 2_000_000_000), 0)
    XCTAssertEqual(wal.stats.batches, 1)
  }

  func testALaterWriteAtALowerIndexReplacesTheTail() throws {
    try forEachIO { io in
      let dir = tempDir()
      let wal = try WAL(directory: dir, options: smallOptions(io))
      try wal.append(entries: makeEntries(1...10, term: 1))
      try wal.append(entries: makeEntries(6...8, term: 2), hardState: HardState(term: 2, vote: 0, commit: 7))
      try wal.sync()
      try wal.close()
      let r = try WAL(directory: dir, options: smallOptions(io)).recovered
      XCTAssertEqual(r.entries, makeEntries(1...5, term: 1) + makeEntries(6...8, term: 2))
      XCTAssertEqual(r.hardState.commit, 7)
    }
  }

  func testRestartAndContinue() throws {
    let dir = tempDir()
    var expected: [Entry] = []
    for round in 0..<5 {
      let wal = try WAL(directory: dir, options: smallOptions())
      XCTAssertEqual(wal.recovered.entries, expected, "round \(round)")
      let start = UInt64(expected.count + 1)
      let more = makeEntries(start...(start + 299), term: UInt64(round + 1), size: 64)
      for chunk in stride(from: 0, to: more.count, by: 30) {
        try wal.append(entries: Array(more[chunk..<min(chunk + 30, more.count)]))
      }
      expected += more
      try wal.close()
    }
    // 1500 entries of about 80 bytes each roll over 64 KiB segments.
    XCTAssertGreaterThan(segmentFiles(dir).count, 1)
    let wal = try WAL(directory: dir, options: smallOptions())
    XCTAssertEqual(wal.recovered.entries, expected)
  }

  func testSegmentsRollAndNameTheirFirstIndex() throws {
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    for i in stride(from: 1, through: 2000, by: 50) {
      try wal.append(
        entries: makeEntries(UInt64(i)...UInt64(i + 49), size: 100), hardState: HardState(term: 1, commit: UInt64(i)))
    }
    try wal.sync()
    let names = segmentFiles(dir)
    XCTAssertGreaterThan(names.count, 2)
    XCTAssertEqual(names, wal.segmentNames)
    XCTAssertEqual(names[0], "0000000000000000-0000000000000001.wal")
    for (k, n) in names.enumerated() {
      XCTAssertEqual(SegmentNames.parse(n)?.sequence, UInt64(k))
      let size = try FileManager.default.attributesOfItem(atPath: dir + "/" + n)[.size] as! Int
      XCTAssertEqual(size, 64 << 10, "segments keep their fixed size")
    }
    try wal.close()
    let r = try WAL(directory: dir, options: smallOptions())
    XCTAssertEqual(r.recovered.entries.count, 2000)
    XCTAssertEqual(r.recovered.hardState.commit, 1951)
    // Each segment's name tells where its entries start.
    for s in r.inspection.segments.dropFirst() {
      XCTAssertEqual(s.minEntryIndex, s.firstIndex, s.name)
    }
  }

  func testCompactionRemovesSegmentsBelowTheSnapshot() throws {
    try forEachIO { io in
      let dir = tempDir()
      let wal = try WAL(directory: dir, options: smallOptions(io))
      for i in stride(from: 1, through: 3000, by: 100) {
        try wal.append(entries: makeEntries(UInt64(i)...UInt64(i + 99), term: 3, size: 100))
      }
      try wal.append(entries: [], hardState: HardState(term: 3, vote: 1, commit: 3000))
      let before = segmentFiles(dir)
      XCTAssertGreaterThan(before.count, 4)
      XCTAssertThrowsError(try wal.compact(through: 10)) { e in
        guard case WALError.invalidRequest = e else { return XCTFail("\(e)") }
      }
      let cs = ConfState(voters: [1, 2, 3])
      let snap = Snapshot(data: Array("state".utf8), metadata: SnapshotMetadata(confState: cs, index: 2500, term: 3))
      try wal.saveSnapshot(snap)
      try wal.compact(through: 2400)
      let after = segmentFiles(dir)
      XCTAssertLessThan(after.count, before.count)
      XCTAssertEqual(after, wal.segmentNames)
      // Every remaining segment but the first has entries above 2400.
      try wal.append(entries: makeEntries(3001...3010, term: 3, size: 100))
      try wal.close()

      let r = try WAL(directory: dir, options: smallOptions(io))
      XCTAssertEqual(r.recovered.snapshot, snap)
      XCTAssertEqual(r.recovered.entries.first?.index, 2501)
      XCTAssertEqual(r.recovered.entries.last?.index, 3010)
      XCTAssertEqual(
        r.recovered.entries, makeEntries(2501...3000, term: 3, size: 100) + makeEntries(3001...3010, term: 3, size: 100)
      )
      XCTAssertEqual(r.recovered.hardState, HardState(term: 3, vote: 1, commit: 3000))
      XCTAssertEqual(r.inspection.segments.first?.sequence, SegmentNames.parse(after[0])?.sequence)
      try r.close()
    }
  }

  func testCompactionKeepsOnlyTheLatestSnapshotFile() throws {
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    try wal.append(entries: makeEntries(1...100))
    for i: UInt64 in [10, 20, 30] {
      try wal.saveSnapshot(Snapshot(data: [UInt8(i)], metadata: SnapshotMetadata(index: i, term: 1)))
    }
    try wal.compact(through: 30)
    let snaps = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".snap") }
    XCTAssertEqual(snaps, ["0000000000000001-000000000000001e.snap"])
    try wal.close()
    let r = try WAL(directory: dir, options: smallOptions()).recovered
    XCTAssertEqual(r.snapshot.data, [30])
    XCTAssertEqual(r.entries, makeEntries(31...100))
  }

  func testAnInstalledSnapshotReplacesTheLog() throws {
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    try wal.append(entries: makeEntries(1...50, term: 1), hardState: HardState(term: 1, commit: 40))
    let snap = Snapshot(
      data: [9, 9], metadata: SnapshotMetadata(confState: ConfState(voters: [1]), index: 30, term: 2))
    try wal.append(entries: [], hardState: HardState(term: 2, commit: 30), snapshot: snap)
    try wal.append(entries: makeEntries(31...35, term: 2))
    try wal.close()
    let r = try WAL(directory: dir, options: smallOptions()).recovered
    XCTAssertEqual(r.snapshot, snap)
    XCTAssertEqual(r.entries, makeEntries(31...35, term: 2))
    XCTAssertEqual(r.hardState, HardState(term: 2, commit: 30))
  }

  func testBadWritesAreRefusedAndLoseNothing() throws {
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    try wal.append(entries: makeEntries(1...5))
    XCTAssertThrowsError(try wal.append(entries: makeEntries(7...8))) { e in
      XCTAssertEqual("\(e)", "invalid WAL request: entries start at 7; the log ends at 5 and its snapshot is at 0")
    }
    XCTAssertThrowsError(try wal.append(entries: [makeEntry(6), makeEntry(8)]))
    XCTAssertThrowsError(try wal.append(entries: [makeEntry(6, size: 20 << 10)])) { e in
      XCTAssertTrue("\(e)".contains("more than recordBytesMax"), "\(e)")
    }
    try wal.append(entries: makeEntries(6...6))
    try wal.close()
    XCTAssertEqual(try WAL(directory: dir, options: smallOptions()).recovered.entries, makeEntries(1...6))
  }

  func testInvalidOptionsNameTheField() {
    var o = WALOptions()
    o.ringDepth = 8
    XCTAssertThrowsError(try WAL(directory: tempDir(), options: o)) { e in
      XCTAssertTrue("\(e)".contains("ringDepth (8) must be at least 4 x batchesInFlightMax (8)"), "\(e)")
    }
    o = WALOptions()
    o.segmentBytes = 1000
    XCTAssertThrowsError(try o.validate())
  }

  func testFallsBackToPosixWhenIOURingIsUnavailable() throws {
    let dir = tempDir()
    var o = smallOptions(.uring)
    o.simulateURingUnavailable = true
    let log = CapturingLogger()
    let wal = try WAL(directory: dir, options: o, logger: log)
    XCTAssertEqual(wal.io, .posix)
    let warnings = log.messages(.warning)
    XCTAssertEqual(warnings.count, 1)
    XCTAssertTrue(warnings[0].contains("io_uring unavailable"), warnings[0])
    XCTAssertTrue(warnings[0].contains("falling back to pwritev+fdatasync"), warnings[0])
    try wal.append(entries: makeEntries(1...3))
    try wal.close()
    XCTAssertEqual(try WAL(directory: dir, options: smallOptions()).recovered.entries.count, 3)
  }

  func testFsyncNoneWarns() throws {
    var o = smallOptions()
    o.fsync = .none
    let log = CapturingLogger()
    let wal = try WAL(directory: tempDir(), options: o, logger: log)
    XCTAssertTrue(log.messages(.warning).contains { $0.contains("nothing written is durable") })
    try wal.append(entries: makeEntries(1...3))
    try wal.sync()
    XCTAssertEqual(wal.stats.syncs, 0)
  }

  func testWithoutSyncsBatchesAreDoneOnceWrittenAndSegmentsAreSparse() throws {
    for io in [WALOptions.IO.uring, .posix] {
      let dir = tempDir()
      var o = smallOptions(io)
      o.fsync = .none
      o.batchesInFlightMax = 8
      o.ringDepth = 32
      let wal = try WAL(directory: dir, options: o)
      var sequence: UInt64 = 0
      for i in stride(from: 1, through: 2000, by: 20) {
        sequence = try wal.append(entries: makeEntries(UInt64(i)...UInt64(i + 19), size: 100))
        try wal.submit()
        // Nothing to wait for: a batch is done once it is in the page cache.
        XCTAssertEqual(try wal.poll(), sequence, "\(io)")
      }
      XCTAssertEqual(wal.stats.syncs, 0)
      XCTAssertGreaterThan(wal.stats.segmentsStarted, 2, "\(io)")
      // The segment rolled into last was a hole until written: it holds fewer blocks than its
      // size (a zero-filled one is all allocated before the roll; this one holds 40 KiB of 64).
      let last = dir + "/" + segmentFiles(dir).last!
      var written = stat()
      XCTAssertEqual(stat(last, &written), 0)
      XCTAssertEqual(Int(written.st_size), o.segmentBytes)
      XCTAssertLessThan(Int(written.st_blocks) * 512, o.segmentBytes * 3 / 4, "\(io): \(last) is not sparse")
      try wal.close()
      // Segments are prepared as holes: the spare made ready for the next roll has its size and
      // not one block (a zero-filled spare would have its first zeros written by now).
      var st = stat()
      XCTAssertEqual(stat(dir + "/spare.tmp", &st), 0, "\(io)")
      XCTAssertEqual(Int(st.st_size), o.segmentBytes, "\(io)")
      XCTAssertEqual(st.st_blocks, 0, "\(io): the spare is not sparse")
      XCTAssertEqual(try WAL(directory: dir, options: o).recovered.entries.count, 2000, "\(io)")
    }
  }

  func testSQPollRing() throws {
    let dir = tempDir()
    var o = smallOptions(.uring)
    o.sqpoll = true
    let wal = try WAL(directory: dir, options: o)
    for i in stride(from: 1, through: 500, by: 10) {
      try wal.append(entries: makeEntries(UInt64(i)...UInt64(i + 9)))
      try wal.submit()
    }
    try wal.close()
    XCTAssertEqual(try WAL(directory: dir, options: smallOptions()).recovered.entries.count, 500)
  }
}

extension WALTests {
  func testAnEmptyWriteIsDurableWithTheWritesBeforeIt() throws {
    try forEachIO { io in
      let wal = try WAL(directory: tempDir(), options: smallOptions(io))
      XCTAssertEqual(try wal.append(entries: []), 1)
      XCTAssertEqual(wal.durableSequence, 1, "nothing to write, nothing before it")
      try wal.append(entries: makeEntries(1...3))
      try wal.submit()
      let empty = try wal.append(entries: [])
      try wal.sync()
      XCTAssertEqual(wal.durableSequence, empty)
    }
  }

  func testADeferredHardStateRidesWithTheNextWrite() throws {
    try forEachIO { io in
      let dir = tempDir()
      let wal = try WAL(directory: dir, options: smallOptions(io))
      let s1 = try wal.append(entries: makeEntries(1...3), hardState: HardState(term: 2, vote: 1, commit: 0))
      try wal.sync()
      let batches = wal.stats.batches
      // Only the commit index moves: nothing waits for it, so nothing is submitted for it.
      let deferred = try wal.appendDeferred(hardState: HardState(term: 2, vote: 1, commit: 3))
      XCTAssertEqual(deferred, s1, "as durable as it needs to be once the writes before it are")
      XCTAssertEqual(wal.durableSequence, s1)
      XCTAssertEqual(try wal.submitIfDue(nowNanoseconds: monotonicNanoseconds()), 0)
      XCTAssertEqual(wal.stats.batches, batches, "a batch of deferred records only is never due")
      XCTAssertGreaterThan(wal.openBatchBytes, 0)
      // The next write that waits carries it.
      let s2 = try wal.append(entries: makeEntries(4...4))
      XCTAssertEqual(try wal.submitIfDue(nowNanoseconds: monotonicNanoseconds()), 0)
      XCTAssertEqual(wal.stats.batches, batches + 1)
      XCTAssertEqual(try wal.waitForCompletion(), s2)
      try wal.close()
      let again = try WAL(directory: dir, options: smallOptions(io))
      XCTAssertEqual(again.recovered.hardState, HardState(term: 2, vote: 1, commit: 3))
      XCTAssertEqual(again.recovered.entries, makeEntries(1...4))
      try again.close()
    }
  }
}

extension WALTests {
  func testFallocatedSparseAndAutoPreparedSegments() throws {
    for preparation in [WALOptions.SegmentPreparation.fallocate, .sparse, .auto] {
      let dir = tempDir()
      var o = smallOptions()
      o.segmentPreparation = preparation
      o.autoFallocateBatchBytes = 4096  // batches of 50 x 100 B entries take the fallocate branch
      let wal = try WAL(directory: dir, options: o)
      for i in stride(from: 1, through: 3000, by: 50) {
        try wal.append(entries: makeEntries(UInt64(i)...UInt64(i + 49), size: 100))
      }
      try wal.close()
      XCTAssertGreaterThan(segmentFiles(dir).count, 3)
      // Unwritten extents read as zeros: a fallocated segment ends cleanly, and a record cut
      // short in it is a torn tail like in a zero-filled one.
      var records: [WALInspection.Record] = []
      let inspection = try WALInspection.scan(directory: dir, recordBytesMax: o.recordBytesMax) { records.append($0) }
      XCTAssertNil(inspection.corruption)
      XCTAssertNil(inspection.tornTail)
      XCTAssertEqual(inspection.entries.count, 3000)
      let last = records.last!
      let path = dir + "/" + last.segment
      var image = readFile(path)
      for i in (last.offset + 20)..<(last.offset + last.bytes) { image[i] = 0 }
      writeFile(path, image)
      let reopened = try WAL(directory: dir, options: o)
      XCTAssertEqual(reopened.inspection.tornTail?.offset, last.offset, "\(preparation)")
      XCTAssertEqual(reopened.recovered.entries.count, 2999, "\(preparation)")
      try reopened.close()
    }
  }
}

extension WALTests {
  func testOneSyncCoversTheBatchesWrittenWhileAnotherRuns() throws {
    let dir = tempDir()
    var o = smallOptions(.uring)
    o.segmentBytes = 1 << 20
    o.batchesInFlightMax = 8
    o.syncsInFlightMax = 1
    o.ringDepth = 32
    let wal = try WAL(directory: dir, options: o)
    // Eight batches submitted back to back: the first gets a sync at once, the other seven are
    // written while it runs and share the next one.
    for i in 1...8 {
      try wal.append(entries: [makeEntry(UInt64(i))])
      try wal.submit()
    }
    XCTAssertEqual(wal.batchesInFlight, 8)
    try wal.sync()
    XCTAssertEqual(wal.durableSequence, 8)
    XCTAssertEqual(wal.stats.batches, 8)
    XCTAssertEqual(wal.stats.syncs, 2)
    try wal.close()
    XCTAssertEqual(try WAL(directory: dir, options: o).recovered.entries, makeEntries(1...8))
  }
}
