import Foundation
import Logging
import NIOPosix
import RaftEngine
import RaftTestSupport
import RaftTransport
import XCTest

@_spi(Testing) @testable import RaftKV

#if canImport(Glibc)
  import Glibc
#endif

/// The HTTP API of an in-process member: answers, status codes and errors.
final class HTTPAPITests: XCTestCase {
  let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

  override func tearDown() { try? group.syncShutdownGracefully() }

  /// A started member of a cluster of `size` (only this one runs); its HTTP port.
  func startMember(size: Int = 1, configure: (inout RaftKVConfiguration) -> Void = { _ in }) throws -> (
    RaftKVServer, Int
  ) {
    var cluster: [UInt64: PeerAddress] = [:]
    for id in 1...UInt64(size) { cluster[id] = PeerAddress(host: "127.0.0.1", port: freePort()) }
    let dir = try makeTestDirectory("raftkv-http")
    addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    var c = RaftKVConfiguration(id: 1, cluster: cluster, dataDirectory: dir)
    c.node.tickMicroseconds = 2_000
    c.maxValueBytes = 1000
    c.maxBodyBytes = 4000
    c.requestTimeoutSeconds = 1
    c.logger.logLevel = .warning
    configure(&c)
    let server = try RaftKVServer(configuration: c, group: group)
    try server.start()
    addTeardownBlock { server.stop() }
    return (server, server.httpPort!)
  }

  func waitForLeader(_ port: Int) throws {
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline {
      if let r = try? http("GET", port: port, "/status"), r.text.contains("\"state\":\"StateLeader\"") { return }
      usleep(10_000)
    }
    XCTFail("no leader")
  }

  func testTheGateBoundsTheRequestBytesInFlight() {
    let gate = RequestGate(bytesInFlightMax: 1000)
    XCTAssertEqual(gate.enter(bytes: 600), .admitted)
    XCTAssertEqual(gate.enter(bytes: 300), .admitted)
    XCTAssertEqual(gate.enter(bytes: 200), .overloaded, "900 + 200 bytes would be in flight")
    XCTAssertEqual(gate.enter(bytes: 0), .admitted, "a request without a body still fits")
    gate.leave(bytes: 600)
    XCTAssertEqual(gate.enter(bytes: 200), .admitted)
    for bytes in [300, 200, 0] { gate.leave(bytes: bytes) }
    // Alone, a request larger than the bound is admitted (the body limit is what refuses it).
    XCTAssertEqual(gate.enter(bytes: 5000), .admitted)
    XCTAssertEqual(gate.enter(bytes: 1), .overloaded)
    gate.leave(bytes: 5000)
    XCTAssertEqual(gate.drain(seconds: 0), 0)
    XCTAssertEqual(gate.enter(bytes: 1), .closed)
  }

  func testAfterStopAConnectionStillOpenIsAnsweredShuttingDown() throws {
    let (server, port) = try startMember()
    try waitForLeader(port)
    XCTAssertEqual(try http("PUT", port: port, "/k", body: Array("v".utf8)).status, 204)
    // A keep-alive connection made before the stop: the listener closing does not close it.
    let fd = try connectToLoopback(port: port, timeout: 10)
    defer { close(fd) }
    /// Sends a GET of /k on the connection and returns the answer's head and body (bounded by
    /// its Content-Length).
    func get() -> String {
      let request = Array("GET /k HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
      _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      var got: [UInt8] = []
      var buffer = [UInt8](repeating: 0, count: 4096)
      while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        got += buffer[..<n]
        let text = String(decoding: got, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { continue }
        let length =
          text[..<end.lowerBound].split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
          .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        if text.utf8.distance(from: end.upperBound, to: text.endIndex) >= length { return text }
      }
      return String(decoding: got, as: UTF8.self)
    }
    XCTAssertTrue(get().hasPrefix("HTTP/1.1 200"), "before the stop the read is served")
    server.stop()
    let after = get()
    XCTAssertTrue(after.hasPrefix("HTTP/1.1 503"), after)
    XCTAssertTrue(after.contains("shutting down"), after)
  }

  func testKeysCanBeWrittenReadAndDeleted() throws {
    let (_, port) = try startMember()
    try waitForLeader(port)
    XCTAssertEqual(try http("PUT", port: port, "/color", body: Array("blue".utf8)).status, 204)
    let got = try http("GET", port: port, "/color")
    XCTAssertEqual(got.status, 200)
    XCTAssertEqual(got.text, "blue")
    XCTAssertEqual(try http("GET", port: port, "/color?linearizable=true").text, "blue")
    // Keys are the percent-decoded path, slashes included; values are bytes.
    let binary: [UInt8] = [0, 255, 10, 13]
    XCTAssertEqual(try http("PUT", port: port, "/a%20b/c", body: binary).status, 204)
    XCTAssertEqual(try http("GET", port: port, "/a%20b/c").body, binary)
    XCTAssertEqual(try http("PUT", port: port, "/empty", body: []).status, 204)
    let empty = try http("GET", port: port, "/empty")
    XCTAssertEqual(empty.status, 200)
    XCTAssertEqual(empty.body, [])
    XCTAssertEqual(try http("DELETE", port: port, "/color").status, 204)
    XCTAssertEqual(try http("GET", port: port, "/color").status, 404)
    XCTAssertEqual(try http("GET", port: port, "/color?linearizable=true").status, 404)
    XCTAssertEqual(try http("DELETE", port: port, "/never-there").status, 204)
  }

  func testBadRequestsGetClearErrors() throws {
    let (_, port) = try startMember()
    try waitForLeader(port)
    func check(_ method: String, _ target: String, body: [UInt8] = [], _ status: Int, _ text: String) throws {
      let r = try http(method, port: port, target, body: body)
      XCTAssertEqual(r.status, status, "\(method) \(target): \(r.text)")
      XCTAssertTrue(r.text.contains(text), "\(method) \(target): \(r.text)")
    }
    try check("PUT", "/", body: [1], 400, "empty key")
    try check("GET", "/", 400, "empty key")
    try check("PUT", "/" + String(repeating: "k", count: 5000), body: [1], 400, "exceeds the maximum of 4096")
    try check("PUT", "/bad%zzescape", body: [1], 400, "percent-encoding")
    try check(
      "PUT", "/big", body: Array(repeating: 1, count: 1001), 400, "value of 1001 bytes exceeds the maximum of 1000")
    try check("GET", "/k?consistent=yes", 400, "unknown query parameter")
    try check("GET", "/k?linearizable=maybe", 400, "linearizable must be true or false")
    try check("PUT", "/k?x=1", body: [1], 400, "no query parameters")
    try check("POST", "/members/zero", body: Array("http://127.0.0.1:9".utf8), 400, "member id")
    try check("POST", "/members/0", body: Array("http://127.0.0.1:9".utf8), 400, "member id")
    try check("POST", "/members/5", body: Array("not a url".utf8), 400, "bad peer address")
    try check("POST", "/members/5", body: [], 400, "bad peer address")
    // Oversized bodies are refused before they are read.
    let huge = try http("PUT", port: port, "/huge", body: Array(repeating: 7, count: 5000))
    XCTAssertEqual(huge.status, 413)
    // Nothing of the refused writes was applied.
    XCTAssertEqual(try http("GET", port: port, "/big").status, 404)
    XCTAssertEqual(try http("GET", port: port, "/huge").status, 404)
  }

  func testWrongMethodsGet405WithAllow() throws {
    let (_, port) = try startMember()
    for (method, target, allow) in [
      ("POST", "/key", "GET, PUT, DELETE"), ("PATCH", "/key", "GET, PUT, DELETE"), ("PUT", "/status", "GET"),
      ("DELETE", "/metrics", "GET"), ("GET", "/members/2", "POST, DELETE"), ("PUT", "/members", "GET"),
    ] {
      let r = try http(method, port: port, target, body: [1])
      XCTAssertEqual(r.status, 405, "\(method) \(target)")
      XCTAssertEqual(r.headers["allow"], allow, "\(method) \(target)")
    }
  }

  func testMalformedHTTPIsRefusedAndTheServerGoesOn() throws {
    let (_, port) = try startMember()
    let r = try http("", port: port, "", raw: Array("THIS IS NOT HTTP\r\n\r\n".utf8))
    XCTAssertEqual(r.status, 400)
    try waitForLeader(port)
    XCTAssertEqual(try http("PUT", port: port, "/still", body: Array("up".utf8)).status, 204)
  }

  func testPipelinedRequestsAreAnsweredInOrder() throws {
    let (_, port) = try startMember()
    try waitForLeader(port)
    // More than the handler queues (it stops reading beyond them), all to one key: each is
    // carried out after the one before it is answered, so the read at the end sees the last.
    let count = HTTPHandler.queuedRequestsMax * 3
    var raw: [UInt8] = []
    for k in 0..<count {
      raw += Array("PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nv\(k % 10)\(k / 10)".utf8)
    }
    raw += Array("GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
    let r = try http("", port: port, "", raw: raw)
    // The reply parser reads the first head; the rest of the stream holds the others in order.
    XCTAssertEqual(r.status, 204)
    let rest = r.text
    XCTAssertEqual(rest.components(separatedBy: "HTTP/1.1 204").count - 1, count - 1, rest)
    XCTAssertTrue(rest.hasSuffix("v\((count - 1) % 10)\((count - 1) / 10)"), rest)
  }

  func testWithoutALeaderWritesAnswer503AndLocalReadsStillWork() throws {
    // A member of a 3-member cluster whose peers never start: it can never elect itself.
    let (_, port) = try startMember(size: 3)
    let r = try http("PUT", port: port, "/k", body: [1])
    XCTAssertEqual(r.status, 503)
    XCTAssertTrue(r.text.contains("no leader"), r.text)
    XCTAssertEqual(r.headers["retry-after"], "1")
    XCTAssertEqual(try http("GET", port: port, "/k?linearizable=true").status, 503)
    XCTAssertEqual(try http("POST", port: port, "/members/4", body: Array("http://127.0.0.1:9".utf8)).status, 503)
    XCTAssertEqual(try http("GET", port: port, "/k").status, 404)
  }

  func testStatusAndMetricsDescribeTheMember() throws {
    let (_, port) = try startMember()
    try waitForLeader(port)
    XCTAssertEqual(try http("PUT", port: port, "/m", body: [1]).status, 204)
    let st = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(try http("GET", port: port, "/status").body)) as? [String: Any])
    XCTAssertEqual(st["id"] as? Int, 1)
    XCTAssertEqual(st["leader"] as? Int, 1)
    XCTAssertEqual(st["state"] as? String, "StateLeader")
    XCTAssertGreaterThanOrEqual(try XCTUnwrap(st["term"] as? Int), 1)
    let commit = try XCTUnwrap(st["commit"] as? Int)
    XCTAssertGreaterThanOrEqual(commit, 2)
    XCTAssertGreaterThanOrEqual(try XCTUnwrap(st["applied"] as? Int), commit - 1)
    let progress = try XCTUnwrap(st["progress"] as? [String: [String: Any]])
    XCTAssertEqual(progress["1"]?["state"] as? String, "StateReplicate")
    XCTAssertEqual(st["keys"] as? Int, 1)

    let metrics = try http("GET", port: port, "/metrics")
    XCTAssertEqual(metrics.status, 200)
    XCTAssertEqual(metrics.headers["content-type"], "text/plain; version=0.0.4")
    for line in [
      "# TYPE raft_term gauge", "raft_is_leader{node=\"1\"} 1", "# TYPE raft_wal_batch_sync_seconds histogram",
      "raft_proposal_to_commit_seconds_count{node=\"1\"}", "raftkv_http_requests_total{method=\"PUT\",code=\"204\"} 1",
    ] {
      XCTAssertTrue(metrics.text.contains(line), "no \(line) in\n\(metrics.text)")
    }
  }
}
