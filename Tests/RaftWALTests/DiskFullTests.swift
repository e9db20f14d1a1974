import Raft
import RaftTestSupport
import XCTest

@testable import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// A full disk: the write fails with an error naming the file, nothing after the last durable
/// batch is acknowledged, the WAL stops, and everything acknowledged is there on reopen.
final class DiskFullTests: XCTestCase {
  func testAFullDiskStopsTheWALWithoutLosingAcknowledgedWrites() throws {
    try XCTSkipUnless(getuid() == 0, "needs root to mount a small tmpfs (CI runs as root)")
    let mountPoint = makeTemporaryDirectory("full")
    defer { removeDirectory(mountPoint) }
    guard try runSystemCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint]) == 0 else {
      throw XCTSkip("mount -t tmpfs failed (no privilege in this container)")
    }
    defer { _ = try? runSystemCommand("/bin/umount", [mountPoint]) }

    for io in TestIO.all {
      let dir = mountPoint + "/" + "\(io)".replacingOccurrences(of: "/", with: "-")
      let options = smallOptions(io)
      let wal = try WAL(directory: dir, options: options)
      var acknowledged: UInt64 = 0
      var failure: WALError?
      var next: UInt64 = 1
      while failure == nil && next < 100_000 {
        do {
          try wal.append(entries: makeEntries(next...(next + 9), size: 200))
          next += 10
          try wal.sync()
          acknowledged = next - 1
        } catch {
          failure = error
        }
      }
      let e = try XCTUnwrap(failure, "\(io): the disk never filled")
      guard case .io(_, let file, let err) = e else { return XCTFail("\(io): \(e)") }
      XCTAssertEqual(err, ENOSPC, "\(io): \(e)")
      XCTAssertTrue(file.hasPrefix(dir), "\(io): the error names the file: \(e)")
      XCTAssertTrue("\(e)".contains("disk full"), "\(e)")
      // It stays stopped.
      XCTAssertThrowsError(try wal.append(entries: makeEntries(next...next))) { e in
        guard case WALError.failed = e else { return XCTFail("\(e)") }
      }
      try? wal.close()

      let reopened = try WAL(directory: dir, options: options)
      XCTAssertGreaterThanOrEqual(reopened.recovered.entries.last?.index ?? 0, acknowledged, "\(io)")
      XCTAssertEqual(
        Array(reopened.recovered.entries.prefix(Int(acknowledged))), makeEntries(1...acknowledged, size: 200), "\(io)")
      try? reopened.close()
      for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
        unlink(dir + "/" + name)
      }
      rmdir(dir)
    }
  }
}
