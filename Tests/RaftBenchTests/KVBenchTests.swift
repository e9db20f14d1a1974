import Foundation
import RaftTestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// `raft-bench kv` against a real raftkv member: etcd's report format, the JSON object, the
/// error distribution, and bad flags.
final class KVBenchTests: XCTestCase {
  /// A one-member raftkv; returns its HTTP port once it leads.
  func startMember() throws -> Int {
    let dir = try makeTestDirectory("kv-bench")
    let raft = freePort()
    let http = freePort()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try toolPath("raftkv"))
    p.arguments = ["--id", "1", "--cluster", "http://127.0.0.1:\(raft)", "--port", "\(http)", "--data-dir", dir + "/d"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    addTeardownBlock {
      p.terminate()
      p.waitUntilExit()
      try? FileManager.default.removeItem(atPath: dir)
    }
    // The member answers once it leads: a benchmark of 1 request that succeeds.
    let deadline = Date().addingTimeInterval(20)
    while Date() < deadline {
      let r = try runTool("raft-bench", ["kv", "--endpoints", "http://127.0.0.1:\(http)", "--total", "1", "--json"])
      if r.status == 0 && r.stdout.contains("\"requests\":1,") { return http }
      usleep(50_000)
    }
    struct NotStarted: Error {}
    XCTFail("the raftkv member did not start within 20 s")
    throw NotStarted()
  }

  func testTheReportHasEtcdsSectionsAndTheJSONCountsEveryRequest() throws {
    let port = try startMember()
    let url = "http://127.0.0.1:\(port)"
    let text = try runTool(
      "raft-bench", ["kv", "--endpoints", url, "--clients", "8", "--conns", "2", "--total", "400", "--val-size", "128"])
    XCTAssertEqual(text.status, 0, text.stderr)
    for section in [
      "Summary:", "  Total:\t", "  Slowest:\t", "  Fastest:\t", "  Average:\t", "  Stddev:\t", "  Requests/sec:\t",
      "Response time histogram:", "Latency distribution:", "  10% in ", "  50% in ", "  99.9% in ",
    ] {
      XCTAssertTrue(text.stdout.contains(section), "no \(section) in\n\(text.stdout)")
    }
    XCTAssertFalse(text.stdout.contains("Error distribution"), text.stdout)

    let json = try runTool(
      "raft-bench",
      [
        "kv", "--endpoints", url, "--clients", "4", "--conns", "4", "--total", "200", "--key-space-size", "50",
        "--json",
      ])
    XCTAssertEqual(json.status, 0, json.stderr)
    let object = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], json.stdout)
    XCTAssertEqual(object["requests"] as? Int, 200)
    XCTAssertEqual(object["errors"] as? Int, 0)
    XCTAssertEqual(object["target"] as? String, "raftkv")
    let p50 = try XCTUnwrap(object["p50_seconds"] as? Double)
    let p99 = try XCTUnwrap(object["p99_seconds"] as? Double)
    XCTAssertTrue(p50 > 0 && p50 <= p99, json.stdout)
  }

  func testRequestsTheServerRefusesAreCountedAsErrors() throws {
    // raftkv has no etcd gateway: every POST /v3/kv/put is refused, and the report says so.
    let port = try startMember()
    let r = try runTool(
      "raft-bench", ["kv", "--endpoints", "http://127.0.0.1:\(port)", "--total", "20", "--target", "etcd"])
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("Error distribution:\n  [20]\tHTTP 405"), r.stdout)
  }

  func testARequestWithoutAnAnswerTimesOutAndTheRunEnds() throws {
    // A server that accepts connections and never answers (the kernel completes the
    // handshakes from the backlog; nothing reads them).
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    XCTAssertGreaterThanOrEqual(fd, 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
        bind(fd, p, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, p, &length) == 0
      }
    }
    XCTAssertTrue(bound, "errno \(errno)")
    let port = Int(UInt16(bigEndian: addr.sin_port))
    let start = Date()
    let r = try runTool(
      "raft-bench",
      [
        "kv", "--endpoints", "http://127.0.0.1:\(port)", "--clients", "4", "--conns", "2", "--duration", "30",
        "--timeout", "0.5", "--json",
      ], killAfterSeconds: 20)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertLessThan(Date().timeIntervalSince(start), 10, "the run waited for answers that never came")
    let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
    XCTAssertEqual(object["errors"] as? Int, 4, r.stdout)
    XCTAssertEqual(object["requests"] as? Int, 0, r.stdout)
    XCTAssertEqual(object["timeout_seconds"] as? Double, 0.5, r.stdout)
  }

  func testBadFlagsExitWithAUsageError() throws {
    let cases: [([String], String)] = [
      (["kv", "--clients", "0"], "--clients"),
      (["kv", "--clients", "2", "--conns", "3"], "--conns"),
      (["kv", "--total", "10", "--duration", "1"], "--duration"),
      (["kv", "--endpoints", "127.0.0.1:1"], "--endpoints"),
      (["kv", "--endpoints", "http://127.0.0.1"], "--endpoints"),
      (["kv", "--target", "consul"], "--target"),
      (["kv", "--key-size", "0"], "--key-size"),
      (["kv", "--rate", "-1"], "--rate"),
      (["kv", "--timeout", "0"], "--timeout"),
    ]
    for (args, expected) in cases {
      let r = try runTool("raft-bench", args)
      XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
      XCTAssertTrue(r.stderr.contains(expected), "\(args): \(r.stderr)")
    }
  }
}
