import Raft
import RaftTestSupport
import XCTest

@testable import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// Recovery from damage: torn tails are cut, anything else refuses to open, naming file and
/// offset.
final class RecoveryTests: XCTestCase {
  var dirs: [String] = []

  override func tearDown() {
    for d in dirs { removeDirectory(d) }
    dirs = []
  }

  func tempDir() -> String {
    let d = makeTemporaryDirectory("recovery")
    dirs.append(d)
    return d
  }

  /// Offsets of every record, in order.
  func records(_ dir: String) throws -> [WALInspection.Record] {
    var out: [WALInspection.Record] = []
    _ = try WALInspection.scan(directory: dir, recordBytesMax: smallOptions().recordBytesMax) { out.append($0) }
    return out
  }

  /// A WAL with `writes` single-entry writes of `size` bytes (after 20 smaller ones), closed.
  func makeWAL(lastEntryBytes size: Int) throws -> (dir: String, entries: [Entry]) {
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    var entries = makeEntries(1...20, size: 40)
    try wal.append(entries: entries, hardState: HardState(term: 1, commit: 20))
    let last = makeEntry(21, size: size)
    try wal.append(entries: [last])
    entries.append(last)
    try wal.close()
    return (dir, entries)
  }

  /// Writes a modified copy of `dir` whose single segment is `image`.
  func damagedCopy(of dir: String, segment: String, image: [UInt8]) throws -> String {
    let copy = try copyDirectory(dir)
    dirs.append(copy)
    writeFile(copy + "/" + segment, image)
    return copy
  }

  func checkTornTailCut(lastEntryBytes: Int, offsets: (Range<Int>) -> [Int]) throws {
    let (dir, entries) = try makeWAL(lastEntryBytes: lastEntryBytes)
    let recs = try records(dir)
    let last = recs.last!
    XCTAssertEqual(last.entry?.index, 21)
    let segment = segmentFiles(dir)[0]
    let image = readFile(dir + "/" + segment)
    let extent = last.offset..<(last.offset + last.bytes)
    for cut in offsets(extent) {
      for truncate in [false, true] {
        var damaged = image
        if truncate {
          damaged.removeSubrange(cut...)
        } else {
          for i in cut..<extent.upperBound { damaged[i] = 0 }
        }
        let copy = try damagedCopy(of: dir, segment: segment, image: damaged)
        let log = CapturingLogger()
        let wal = try WAL(directory: copy, options: smallOptions(), logger: log)
        let what = "cut at \(cut) of \(extent) (\(truncate ? "truncated" : "zeroed"))"
        XCTAssertEqual(wal.recovered.entries, Array(entries.dropLast()), what)
        XCTAssertEqual(wal.recovered.hardState.commit, 20, what)
        if cut == extent.lowerBound && !truncate {
          XCTAssertNil(wal.inspection.tornTail, "nothing of the record was written: a clean end, \(what)")
        } else {
          XCTAssertEqual(wal.inspection.tornTail?.offset, extent.lowerBound, what)
          XCTAssertEqual(log.messages(.warning).filter { $0.contains("cut a torn tail at") }.count, 1, what)
        }
        // The WAL continues where the torn record was, and the segment is whole again.
        try wal.append(entries: [entries.last!])
        try wal.close()
        XCTAssertEqual(readFile(copy + "/" + segment).count, image.count, what)
        let again = try WAL(directory: copy, options: smallOptions())
        XCTAssertEqual(again.recovered.entries, entries, what)
        XCTAssertNil(again.inspection.tornTail, what)
        try again.close()
        removeDirectory(copy)
      }
    }
  }

  func testTornTailIsCutAtEveryByteOffsetOfTheLastRecord() throws {
    try checkTornTailCut(lastEntryBytes: 60) { Array($0) }
  }

  func testTornTailOfAMultiSectorRecord() throws {
    // A 3 KiB record spans several sectors: every 61st byte, and around each sector boundary.
    try checkTornTailCut(lastEntryBytes: 3000) { extent in
      var cuts = Set(stride(from: extent.lowerBound, to: extent.upperBound, by: 61))
      for b in stride(from: (extent.lowerBound / 512 + 1) * 512, to: extent.upperBound, by: 512) {
        cuts.formUnion([b - 1, b, b + 1].filter { extent.contains($0) })
      }
      cuts.insert(extent.upperBound - 1)
      return cuts.sorted()
    }
  }

  func testAnUnwrittenSectorInsideTheLastRecordIsTorn() throws {
    let (dir, entries) = try makeWAL(lastEntryBytes: 3000)
    let last = try records(dir).last!
    let segment = segmentFiles(dir)[0]
    var image = readFile(dir + "/" + segment)
    // The disk wrote the record's first and last sectors but not one in the middle.
    let sector = (last.offset / 512 + 2) * 512
    for i in sector..<(sector + 512) { image[i] = 0 }
    let copy = try damagedCopy(of: dir, segment: segment, image: image)
    let wal = try WAL(directory: copy, options: smallOptions())
    XCTAssertEqual(wal.recovered.entries, Array(entries.dropLast()))
    XCTAssertEqual(wal.inspection.tornTail?.offset, last.offset)
  }

  func testAHoleBeforeLaterRecordsIsATornTail() throws {
    // Batches in flight complete in any order: a later write can land while an earlier one
    // never does. Neither was acknowledged; both are cut.
    let (dir, entries) = try makeWAL(lastEntryBytes: 60)
    let recs = try records(dir)
    let hole = recs[recs.count - 4]  // entry 19, then entry 20, the hard state and entry 21
    XCTAssertEqual(hole.entry?.index, 19)
    let segment = segmentFiles(dir)[0]
    var image = readFile(dir + "/" + segment)
    for i in hole.offset..<(hole.offset + hole.bytes) { image[i] = 0 }
    let copy = try damagedCopy(of: dir, segment: segment, image: image)
    let wal = try WAL(directory: copy, options: smallOptions())
    XCTAssertEqual(wal.recovered.entries, Array(entries.prefix(18)))
    XCTAssertEqual(wal.inspection.tornTail?.offset, hole.offset)
    XCTAssertTrue(wal.inspection.tornTail!.reason.contains("hole"), wal.inspection.tornTail!.reason)
  }

  func testATornInstalledSnapshotWriteStillStartsRaft() throws {
    // Found by raft-sim: one write holds an installed snapshot's record, then the hard state.
    // A torn tail can keep the snapshot and lose the hard state; Raft must still start.
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    try wal.append(entries: makeEntries(1...5), hardState: HardState(term: 1, vote: 1, commit: 3))
    let snap = Snapshot(
      data: [1, 2, 3], metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2, 3]), index: 40, term: 2))
    try wal.append(entries: [], hardState: HardState(term: 2, vote: 1, commit: 40), snapshot: snap)
    try wal.close()
    let last = try records(dir).last!
    XCTAssertEqual(last.type, .hardState)
    let segment = segmentFiles(dir)[0]
    var image = readFile(dir + "/" + segment)
    for i in last.offset..<(last.offset + last.bytes) { image[i] = 0 }
    let copy = try damagedCopy(of: dir, segment: segment, image: image)
    let reopened = try WAL(directory: copy, options: smallOptions())
    let storage = try WALStorage(wal: reopened)
    let (hs, _) = try storage.initialState()
    XCTAssertEqual(try storage.snapshot().metadata.index, 40)
    XCTAssertEqual(hs.commit, 40, "a snapshot's index is committed")
    XCTAssertEqual(hs.term, 1)
    var config = Config(id: 1, storage: storage)
    config.applied = 40
    XCTAssertNoThrow(try RawNode(config: config))
    try reopened.close()
  }

  func testRandomDamageIsCutAsATornTailOrRefusedNeverMisread() throws {
    // Seeded: flip bytes, zero runs, truncate, anywhere in the segment. Recovery either opens
    // with a prefix of what was written (a torn tail cut), or refuses with a corruption error.
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    var written: [Entry] = []
    for k in 0..<30 {
      let es = makeEntries(UInt64(k * 4 + 1)...UInt64(k * 4 + 4), size: 20 + k * 13)
      try wal.append(entries: es, hardState: HardState(term: 1, commit: UInt64(k * 4)))
      written += es
    }
    try wal.close()
    let segment = segmentFiles(dir)[0]
    let image = readFile(dir + "/" + segment)
    let used = records(dirOrEmpty: dir).map { $0.offset + $0.bytes }.max()!
    var rng = SeededRandom(seed: 42)
    var cut = 0
    var refused = 0
    for round in 0..<300 {
      var damaged = image
      switch round % 3 {
      case 0:
        for _ in 0..<(1 + rng.below(3)) { damaged[rng.below(used)] ^= UInt8(1 + rng.below(255)) }
      case 1:
        let at = rng.below(used)
        for i in at..<min(used, at + 1 + rng.below(700)) { damaged[i] = 0 }
      default:
        damaged = Array(damaged.prefix(rng.below(used)))
      }
      let copy = try damagedCopy(of: dir, segment: segment, image: damaged)
      var got: [Entry]? = nil
      do {
        let w = try WAL(directory: copy, options: smallOptions())
        got = w.recovered.entries
        try w.close()
      } catch {
        guard case WALError.corrupt = error else { return XCTFail("round \(round): \(error)") }
      }
      if let got {
        XCTAssertEqual(got, Array(written.prefix(got.count)), "round \(round): recovered entries differ")
        cut += 1
      } else {
        refused += 1
      }
      removeDirectory(copy)
    }
    XCTAssertGreaterThan(cut, 0)
    XCTAssertGreaterThan(refused, 0)
  }

  private func records(dirOrEmpty dir: String) -> [WALInspection.Record] { (try? records(dir)) ?? [] }

  func testAFlippedByteRefusesToOpen() throws {
    let (dir, _) = try makeWAL(lastEntryBytes: 60)
    let recs = try records(dir)
    let segment = segmentFiles(dir)[0]
    let image = readFile(dir + "/" + segment)
    // A byte in the middle of a record's payload, in its CRC, in its length; and in the last
    // record (whose closing type byte and sectors are intact, so no torn write explains it).
    let middle = recs[10]
    let cases: [(String, Int, Int)] = [
      ("payload", middle.offset + 12, middle.offset),
      ("crc", middle.offset + 5, middle.offset),
      ("length", middle.offset + 2, middle.offset),
      ("last record", recs.last!.offset + 20, recs.last!.offset),
      ("segment header", 10, 0),
    ]
    for (what, at, recordOffset) in cases {
      var damaged = image
      damaged[at] ^= 0x10
      let copy = try damagedCopy(of: dir, segment: segment, image: damaged)
      XCTAssertThrowsError(try WAL(directory: copy, options: smallOptions()), what) { e in
        guard case WALError.corrupt(let file, let offset, _) = e else { return XCTFail("\(what): \(e)") }
        XCTAssertEqual(file, copy + "/" + segment, what)
        XCTAssertEqual(offset, recordOffset, what)
        XCTAssertTrue("\(e)".hasPrefix("corrupt WAL: \(copy)/\(segment):\(recordOffset): "), "\(e)")
      }
      // Refusing changed nothing on disk.
      XCTAssertEqual(readFile(copy + "/" + segment), damaged, what)
    }
  }

  func testDamageInAnEarlierSegmentIsNeverTorn() throws {
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    for i in stride(from: 1, through: 1500, by: 50) {
      try wal.append(entries: makeEntries(UInt64(i)...UInt64(i + 49), size: 100))
    }
    try wal.close()
    let names = segmentFiles(dir)
    XCTAssertGreaterThan(names.count, 2)
    var firstRecords: [WALInspection.Record] = []
    _ = try WALInspection.scan(directory: dir, recordBytesMax: smallOptions().recordBytesMax) { r in
      if r.segment == names[0] { firstRecords.append(r) }
    }
    // Zero the last record of the first segment: in the last segment this would be a torn
    // tail; here it loses acknowledged entries, so it is corruption. (The first segment alone
    // looks like it simply ends there: the gap shows at the next segment's first entry.)
    let last = firstRecords.last!
    let lost = last.entry!.index
    var image = readFile(dir + "/" + names[0])
    for i in last.offset..<(last.offset + last.bytes) { image[i] = 0 }
    let copy = try damagedCopy(of: dir, segment: names[0], image: image)
    XCTAssertThrowsError(try WAL(directory: copy, options: smallOptions())) { e in
      guard case WALError.corrupt(let file, _, let reason) = e else { return XCTFail("\(e)") }
      XCTAssertEqual(file, copy + "/" + names[1])
      XCTAssertEqual(reason, "entries \(lost) to \(lost) are missing")
    }
  }

  func testAMissingSegmentRefusesToOpen() throws {
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    for i in stride(from: 1, through: 1500, by: 50) {
      try wal.append(entries: makeEntries(UInt64(i)...UInt64(i + 49), size: 100))
    }
    try wal.close()
    let names = segmentFiles(dir)
    XCTAssertGreaterThan(names.count, 2)
    unlink(dir + "/" + names[1])
    XCTAssertThrowsError(try WAL(directory: dir, options: smallOptions())) { e in
      XCTAssertTrue("\(e)".contains("segments 1 to 1 are missing"), "\(e)")
    }
  }

  func testAMissingSnapshotFileRefusesToOpen() throws {
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    try wal.append(entries: makeEntries(1...10))
    try wal.saveSnapshot(Snapshot(data: [1], metadata: SnapshotMetadata(index: 5, term: 1)))
    try wal.close()
    unlink(dir + "/" + SnapshotFiles.name(SnapshotMetadata(index: 5, term: 1)))
    XCTAssertThrowsError(try WAL(directory: dir, options: smallOptions())) { e in
      XCTAssertTrue("\(e)".contains("snapshot file is missing"), "\(e)")
    }
  }

  func testATornNewSegmentHeaderIsCut() throws {
    // The crash came right after a roll: the new segment exists, its first batch never landed.
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: smallOptions())
    var written: [Entry] = []
    while segmentFiles(dir).count < 2 {
      let next = UInt64(written.count + 1)
      let batch = makeEntries(next...(next + 9), size: 100)
      try wal.append(entries: batch)
      written += batch
    }
    try wal.close()
    let names = segmentFiles(dir)
    var image = readFile(dir + "/" + names[1])
    let recs = try records(dir).filter { $0.segment == names[1] }
    for i in 5..<(recs.last!.offset + recs.last!.bytes) { image[i] = 0 }  // only 5 bytes of the header remain
    let copy = try damagedCopy(of: dir, segment: names[1], image: image)
    let reopened = try WAL(directory: copy, options: smallOptions())
    let kept = reopened.recovered.entries
    XCTAssertEqual(reopened.inspection.tornTail?.offset, 0)
    XCTAssertEqual(kept, Array(written.prefix(kept.count)))
    XCTAssertEqual(kept.last?.index, recs.first { $0.entry != nil }!.entry!.index - 1)
    try reopened.append(entries: makeEntries((kept.last!.index + 1)...(kept.last!.index + 5), size: 100))
    try reopened.close()
    let again = try WAL(directory: copy, options: smallOptions())
    XCTAssertEqual(again.recovered.entries.count, kept.count + 5)
    XCTAssertNil(again.inspection.tornTail)
  }
}

extension RecoveryTests {
  func testALengthFlippedIntoTheZeroTailIsCorruptionNotATornWrite() throws {
    // The last record's length grows by 256 and now ends in the zero-filled rest of the segment,
    // where its "type byte" is zero: without the length check this would pass for a torn write.
    let (dir, _) = try makeWAL(lastEntryBytes: 60)
    let last = try records(dir).last!
    let segment = segmentFiles(dir)[0]
    var image = readFile(dir + "/" + segment)
    image[last.offset + 1] ^= 0x01
    let copy = try damagedCopy(of: dir, segment: segment, image: image)
    XCTAssertThrowsError(try WAL(directory: copy, options: smallOptions())) { e in
      guard case WALError.corrupt(_, let offset, let reason) = e else { return XCTFail("\(e)") }
      XCTAssertEqual(offset, last.offset)
      XCTAssertTrue(reason.contains("fails its check"), reason)
    }
  }

  func testDamageFollowedByMoreThanTheUnsyncedSpanIsCorruption() throws {
    var o = smallOptions()
    o.batchBytesMax = 4096
    o.batchesInFlightMax = 1
    o.syncsInFlightMax = 1
    o.ringDepth = 4
    o.recordBytesMax = 1024
    XCTAssertEqual(o.unsyncedBytesMax, 4096 + 1024 + 4096)
    let dir = tempDir()
    let wal = try WAL(directory: dir, options: o)
    for i in stride(from: 1, through: 400, by: 10) {
      try wal.append(entries: makeEntries(UInt64(i)...UInt64(i + 9), size: 100))
    }
    try wal.close()
    let recs = try records(dir)
    let segment = segmentFiles(dir)[0]
    let image = readFile(dir + "/" + segment)
    // A record zeroed early, with about 40 KiB of data after it: it was synced long ago.
    let early = recs[20]
    var damaged = image
    for i in early.offset..<(early.offset + early.bytes) { damaged[i] = 0 }
    var copy = try damagedCopy(of: dir, segment: segment, image: damaged)
    XCTAssertThrowsError(try WAL(directory: copy, options: o)) { e in
      guard case WALError.corrupt(_, let offset, let reason) = e else { return XCTFail("\(e)") }
      XCTAssertEqual(offset, early.offset)
      XCTAssertTrue(reason.contains("more than the 9216 bytes that can be unsynced"), reason)
    }
    // The same hole within the last few KiB is a torn tail.
    let late = recs[recs.count - 20]
    damaged = image
    for i in late.offset..<(late.offset + late.bytes) { damaged[i] = 0 }
    copy = try damagedCopy(of: dir, segment: segment, image: damaged)
    let reopened = try WAL(directory: copy, options: o)
    XCTAssertEqual(reopened.inspection.tornTail?.offset, late.offset)
    XCTAssertEqual(reopened.recovered.entries.last?.index, late.entry!.index - 1)
  }

  func testARestartWritesTheStateAgain() throws {
    let dir = tempDir()
    var wal = try WAL(directory: dir, options: smallOptions())
    try wal.append(entries: makeEntries(1...3), hardState: HardState(term: 4, vote: 2, commit: 3))
    try wal.close()
    wal = try WAL(directory: dir, options: smallOptions())
    try wal.append(entries: makeEntries(4...5))
    try wal.close()
    let types = try records(dir).map(\.type)
    XCTAssertEqual(types.filter { $0 == .segmentHeader }.count, 1)
    // The prologue's hard state, the first write's, and the restart's.
    XCTAssertEqual(types.filter { $0 == .hardState }.count, 3)
    XCTAssertEqual(try WAL(directory: dir, options: smallOptions()).recovered.hardState.commit, 3)
  }

  func testASecondWALCannotOpenTheSameDirectory() throws {
    let dir = tempDir()
    let first = try WAL(directory: dir, options: smallOptions())
    XCTAssertThrowsError(try WAL(directory: dir, options: smallOptions())) { e in
      XCTAssertTrue("\(e)".contains("is in use by another WAL"), "\(e)")
    }
    try first.close()
    XCTAssertNoThrow(try WAL(directory: dir, options: smallOptions()).close())
  }

  func testARingThatCannotBeSetUpThrowsCleanly() {
    // A depth of 0 is refused by the kernel (EINVAL): the error comes back, nothing is freed twice.
    XCTAssertThrowsError(
      try URingBatchIO(fs: PosixFileSystem.shared, depth: 0, sqpoll: false, slots: 2, fsync: .datasync, writes: .inline)
    ) {
      e in
      guard case WALError.io(let op, _, let err) = e else { return XCTFail("\(e)") }
      XCTAssertEqual(op, "io_uring_setup")
      XCTAssertEqual(err, EINVAL)
    }
  }
}
