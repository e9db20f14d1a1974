import Raft
import XCTest

@testable import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// A logger that keeps every line, for asserting on warnings.
final class CapturingLogger: RaftLogger, @unchecked Sendable {
  private let lock = NSLock()
  private var stored: [(RaftLogLevel, String)] = []

  func isEnabled(_ level: RaftLogLevel) -> Bool { true }
  func log(_ level: RaftLogLevel, _ message: String) { lock.withLock { stored.append((level, message)) } }

  var lines: [(RaftLogLevel, String)] { lock.withLock { stored } }
  func messages(_ level: RaftLogLevel) -> [String] { lines.filter { $0.0 == level }.map(\.1) }
}

/// A fresh, empty directory under the system temp directory, removed by `removeDirectory`.
func makeTemporaryDirectory(_ label: String = "wal") -> String {
  var template = Array("\(NSTemporaryDirectory())/swift-raft-\(label)-XXXXXX".utf8CString)
  let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
  precondition(p != nil, "mkdtemp failed")
  return String(cString: p!)
}

func removeDirectory(_ path: String) {
  try? FileManager.default.removeItem(atPath: path)
}

/// Copies every file of `from` into a new temporary directory.
func copyDirectory(_ from: String) throws -> String {
  let to = makeTemporaryDirectory("copy")
  for name in try FileManager.default.contentsOfDirectory(atPath: from) {
    try FileManager.default.copyItem(atPath: from + "/" + name, toPath: to + "/" + name)
  }
  return to
}

/// Deterministic entry contents: `size` bytes derived from index and term.
func makeEntry(_ index: UInt64, term: UInt64 = 1, size: Int = 32) -> Entry {
  var data = [UInt8](repeating: 0, count: size)
  var x = index &* 0x9E37_79B9_7F4A_7C15 ^ term
  for i in 0..<size {
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    data[i] = UInt8(truncatingIfNeeded: x) | 1
  }
  return Entry(term: term, index: index, data: data)
}

func makeEntries(_ range: ClosedRange<UInt64>, term: UInt64 = 1, size: Int = 32) -> [Entry] {
  range.map { makeEntry($0, term: term, size: size) }
}

/// An I/O path and, for io_uring, how writes are ordered before syncs.
struct TestIO: CustomStringConvertible {
  var io: WALOptions.IO
  var writes: WALOptions.URingWrites = .inline
  var description: String { io == .uring ? "uring/\(writes)" : "\(io)" }
  static let all = [TestIO(io: .uring), TestIO(io: .uring, writes: .linked), TestIO(io: .posix)]
}

/// Small segments so that tests roll often.
func smallOptions(_ io: WALOptions.IO = .uring) -> WALOptions { smallOptions(TestIO(io: io)) }

func smallOptions(_ t: TestIO) -> WALOptions {
  var o = WALOptions()
  o.io = t.io
  o.uringWrites = t.writes
  o.segmentBytes = 64 << 10
  o.recordBytesMax = 16 << 10
  o.batchesInFlightMax = 4
  o.ringDepth = 16
  return o
}

func segmentFiles(_ dir: String) -> [String] {
  ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".wal") }.sorted()
}

func readFile(_ path: String) -> [UInt8] {
  [UInt8](FileManager.default.contents(atPath: path)!)
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
  precondition(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
}

/// Runs `body` for each I/O path (io_uring with inline and linked writes, posix).
func forEachIO(_ body: (TestIO) throws -> Void) rethrows {
  for io in TestIO.all { try body(io) }
}
