import Dispatch
import Raft
import RaftTestSupport
import XCTest

@testable import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// Kills a writer process at random moments and checks that every write it reported durable is
/// there after recovery, with the right contents.
final class CrashTests: XCTestCase {
  /// The `wal-crash-writer` executable built next to the test bundle.
  func writerPath() throws -> String { try toolPath("wal-crash-writer") }
}

extension CrashTests {

  /// What the writer's entry `index` holds (see tools/wal-crash-writer).
  func expectedEntry(_ index: UInt64) -> Entry {
    let size = Int(16 + (index &* 7919) % 600)
    return Entry(term: 1, index: index, data: (0..<size).map { UInt8(truncatingIfNeeded: index &+ UInt64($0) &* 31) })
  }

  /// Runs the writer for `milliseconds`, SIGKILLs it, and returns its output lines.
  func runAndKill(_ writer: String, dir: String, io: WALOptions.IO, seed: Int, milliseconds: Int) throws -> [String] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: writer)
    process.arguments = [dir, io.rawValue, String(seed)]
    let out = Pipe()
    process.standardOutput = out
    let collected = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var data = Data()
    let handle = out.fileHandleForReading
    DispatchQueue.global().async {
      data = handle.readDataToEndOfFile()  // returns once the writer is dead
      collected.signal()
    }
    try process.run()
    usleep(UInt32(milliseconds * 1000))
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    collected.wait()
    XCTAssertEqual(process.terminationReason, .uncaughtSignal, String(decoding: data, as: UTF8.self))
    return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
  }

  func checkKills(io: WALOptions.IO, rounds: Int) throws {
    let writer = try writerPath()
    let dir = makeTemporaryDirectory("crash")
    defer { removeDirectory(dir) }
    var acknowledged: UInt64 = 0
    var rng = SystemRandomNumberGenerator()
    var kills = 0
    for round in 0..<rounds {
      let ms = Int.random(in: 30...250, using: &rng)
      let lines = try runAndKill(writer, dir: dir, io: io, seed: round, milliseconds: ms)
      if let open = lines.first(where: { $0.hasPrefix("open ") }), let recovered = UInt64(open.dropFirst(5)) {
        XCTAssertGreaterThanOrEqual(
          recovered, acknowledged, "round \(round): the writer reopened without acknowledged entries")
      }
      for line in lines where line.hasPrefix("durable ") {
        acknowledged = max(acknowledged, UInt64(line.dropFirst(8))!)
      }
      kills += 1

      // Recover in this process and check every acknowledged entry.
      let wal = try WAL(
        directory: dir,
        options: {
          var o = WALOptions()
          o.io = io
          o.segmentBytes = 256 << 10
          o.recordBytesMax = 64 << 10
          return o
        }())
      let r = wal.recovered
      let last = r.snapshot.metadata.index + UInt64(r.entries.count)
      XCTAssertGreaterThanOrEqual(last, acknowledged, "round \(round) (\(io), killed after \(ms) ms)")
      XCTAssertGreaterThanOrEqual(r.hardState.commit, acknowledged, "round \(round)")
      for (k, e) in r.entries.enumerated() {
        let index = r.snapshot.metadata.index + 1 + UInt64(k)
        if e != expectedEntry(index) {
          XCTFail("round \(round): entry \(index) differs after recovery")
          break
        }
      }
      if r.snapshot.metadata.index > 0 {
        let i = r.snapshot.metadata.index
        XCTAssertEqual(r.snapshot.data, (0..<32).map { UInt8(truncatingIfNeeded: i &+ UInt64($0)) })
      }
      try wal.close()
    }
    XCTAssertEqual(kills, rounds)
    XCTAssertGreaterThan(acknowledged, 0, "the writer never acknowledged anything")
  }

  /// Kill cycles per run: `RAFT_CRASH_ROUNDS` overrides the default (CI's bounded amount).
  func rounds(_ default: Int) -> Int {
    ProcessInfo.processInfo.environment["RAFT_CRASH_ROUNDS"].flatMap { Int($0) } ?? `default`
  }

  func testSIGKILLNeverLosesAnAcknowledgedWriteURing() throws {
    try checkKills(io: .uring, rounds: rounds(25))
  }

  func testSIGKILLNeverLosesAnAcknowledgedWritePosix() throws {
    try checkKills(io: .posix, rounds: rounds(15))
  }
}
