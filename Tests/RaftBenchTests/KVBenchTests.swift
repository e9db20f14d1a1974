import Foundation
import RaftTestSupport
import Synchronization
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

  /// A listening socket on a free loopback port: (descriptor, port).
  func listenOnLoopback() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    XCTAssertGreaterThanOrEqual(fd, 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
        bind(fd, p, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, p, &length) == 0
      }
    }
    struct CannotListen: Error {}
    guard bound else {
      close(fd)
      XCTFail("cannot listen: errno \(errno)")
      throw CannotListen()
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
  }

  /// Runs `raft-bench kv --total 1` with `args` against a server that takes one request,
  /// answers it with `answer`, and returns the request's bytes with the run.
  func oneRequest(_ args: [String], answer: String) throws -> (request: String, run: ToolRun) {
    let (fd, port) = try listenOnLoopback()
    defer { close(fd) }
    let request = Mutex<[UInt8]>([])
    let served = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
      defer { served.signal() }
      let c = accept(fd, nil, nil)
      guard c >= 0 else { return }
      defer { close(c) }
      var buffer = [UInt8](repeating: 0, count: 4096)
      var got: [UInt8] = []
      // The head, then as many body bytes as its Content-Length says.
      while true {
        let n = read(c, &buffer, buffer.count)
        if n <= 0 { return }
        got += buffer[0..<n]
        let text = String(decoding: got, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { continue }
        let head = text[..<end.lowerBound]
        let length =
          head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
          .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        if got.count >= text.utf8.distance(from: text.startIndex, to: end.upperBound) + length { break }
      }
      request.withLock { $0 = got }
      _ = answer.utf8CString.withUnsafeBufferPointer { write(c, $0.baseAddress, $0.count - 1) }
    }
    let run = try runTool(
      "raft-bench", ["kv", "--endpoints", "http://127.0.0.1:\(port)", "--total", "1", "--json"] + args,
      killAfterSeconds: 20)
    XCTAssertEqual(served.wait(timeout: .now() + 20), .success)
    return (String(decoding: request.withLock { $0 }, as: UTF8.self), run)
  }

  func testEachTargetGetsTheRequestItsAPIDefines() throws {
    // Key 0 of 4 digits ("0000"), a 3-byte value ("vvv"): raftkv's PUT /KEY with the value as
    // the body; etcd's gateway POST with both in base64 in JSON.
    let args = ["--key-size", "4", "--key-space-size", "1", "--val-size", "3"]
    let raftkv = try oneRequest(args, answer: "HTTP/1.1 204 No Content\r\n\r\n")
    let host = raftkv.request.split(separator: "\r\n").first { $0.hasPrefix("Host: ") } ?? "no Host"
    XCTAssertEqual(raftkv.request, "PUT /k0000 HTTP/1.1\r\n\(host)\r\nContent-Length: 3\r\n\r\nvvv")
    XCTAssertTrue(raftkv.run.stdout.contains("\"requests\":1,\"errors\":0"), raftkv.run.stdout)

    let body = #"{"key":"MDAwMA==","value":"dnZ2"}"#
    let etcd = try oneRequest(
      args + ["--target", "etcd"], answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    let etcdHost = etcd.request.split(separator: "\r\n").first { $0.hasPrefix("Host: ") } ?? "no Host"
    XCTAssertEqual(
      etcd.request,
      "POST /v3/kv/put HTTP/1.1\r\n\(etcdHost)\r\nContent-Type: application/json\r\n"
        + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
    XCTAssertTrue(etcd.run.stdout.contains("\"requests\":1,\"errors\":0"), etcd.run.stdout)
  }

  func testKeysAreZeroPaddedToTheirSize() throws {
    // --key-space-size 1 draws key 0; 12 bytes pad it with zeros.
    let r = try oneRequest(
      ["--key-size", "12", "--key-space-size", "1", "--val-size", "0"], answer: "HTTP/1.1 204 No Content\r\n\r\n")
    XCTAssertTrue(r.request.hasPrefix("PUT /k000000000000 HTTP/1.1\r\n"), r.request)
  }

  func testARequestWithoutAnAnswerTimesOutAndTheRunEnds() throws {
    // A server that accepts connections and never answers (the kernel completes the
    // handshakes from the backlog; nothing reads them).
    let (fd, port) = try listenOnLoopback()
    defer { close(fd) }
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
