import Raft
import RaftTestSupport
import XCTest

@testable import RaftWAL

final class WALDumpTests: XCTestCase {
  func run(_ args: [String]) throws -> (status: Int32, lines: [String]) {
    let r = try runTool("wal-dump", args)
    return (r.status, r.stdout.split(separator: "\n").map(String.init))
  }

  func testDumpsAHealthyWALAndReportsCorruption() throws {
    let dir = makeTemporaryDirectory("dump")
    defer { removeDirectory(dir) }
    let wal = try WAL(directory: dir, options: smallOptions())
    for i in stride(from: 1, through: 1000, by: 50) {
      try wal.append(entries: makeEntries(UInt64(i)...UInt64(i + 49), term: 2, size: 100))
    }
    try wal.append(entries: [], hardState: HardState(term: 2, vote: 1, commit: 990))
    try wal.close()
    let segments = segmentFiles(dir)

    let ok = try run([dir])
    XCTAssertEqual(ok.status, 0)
    XCTAssertEqual(
      ok.lines.last,
      "{\"segments\":\(segments.count),\"entries\":1000,\"first_index\":1,\"last_index\":1000,\"term\":2,\"commit\":990,\"corrupt\":null}"
    )
    XCTAssertEqual(ok.lines.filter { $0.contains(" entry (") }.count, 1000)
    XCTAssertTrue(ok.lines.contains("hard state: term 2, vote 1, commit 990"))
    XCTAssertEqual(ok.lines.filter { $0.hasPrefix("segment ") }.count, segments.count)

    // Flip a byte inside the tenth record of the first segment.
    var records: [WALInspection.Record] = []
    _ = try WALInspection.scan(directory: dir) { r in records.append(r) }
    let victim = records[10]
    var image = readFile(dir + "/" + victim.segment)
    image[victim.offset + 12] ^= 0xFF
    writeFile(dir + "/" + victim.segment, image)
    let bad = try run([dir, "--summary"])
    XCTAssertEqual(bad.status, 1)
    XCTAssertTrue(
      bad.lines.last!.hasSuffix(
        ",\"corrupt\":\"\(dir)/\(victim.segment):\(victim.offset): checksum mismatch"
          + bad.lines.last!.split(separator: "checksum mismatch").last!),
      bad.lines.last!)
    XCTAssertTrue(
      bad.lines.last!.contains("\"corrupt\":\"\(dir)/\(victim.segment):\(victim.offset): checksum mismatch"))
    XCTAssertFalse(bad.lines.contains { $0.contains(" entry (") }, "--summary lists no records")

    // wal-dump changed nothing: the WAL still refuses to open at the same place.
    XCTAssertThrowsError(try WAL(directory: dir, options: smallOptions())) { e in
      guard case WALError.corrupt(_, let offset, _) = e else { return XCTFail("\(e)") }
      XCTAssertEqual(offset, victim.offset)
    }
  }
}
