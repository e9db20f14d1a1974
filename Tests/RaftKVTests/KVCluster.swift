import Foundation
import RaftTestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// One HTTP answer, as the tests see it.
struct HTTPReply {
  var status: Int
  var headers: [String: String]
  var body: [UInt8]
  var text: String { String(decoding: body, as: UTF8.self) }
}

struct HTTPClientError: Error, CustomStringConvertible {
  var description: String
  /// The errno of the socket call that failed, if one did.
  var code: Int32? = nil
}

/// A TCP connection to 127.0.0.1:`port` whose sends and receives give up after `timeout`
/// seconds (nil: never); the caller closes the descriptor.
func connectToLoopback(port: Int, timeout: Double? = nil) throws -> Int32 {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { throw HTTPClientError(description: "socket: errno \(errno)") }
  if let timeout {
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
  }
  var addr = sockaddr_in()
  addr.sin_family = sa_family_t(AF_INET)
  addr.sin_port = in_port_t(UInt16(port).bigEndian)
  addr.sin_addr.s_addr = inet_addr("127.0.0.1")
  let rc = withUnsafePointer(to: &addr) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  guard rc == 0 else {
    let e = errno
    close(fd)
    throw HTTPClientError(description: "connect to port \(port): errno \(e)")
  }
  return fd
}

/// A blocking HTTP/1.1 request to 127.0.0.1:`port` over a fresh connection (`Connection: close`),
/// so that the tests depend on nothing but sockets. `raw` replaces the whole request.
func http(
  _ method: String, port: Int, _ target: String, body: [UInt8] = [], timeout: Double = 10, raw: [UInt8]? = nil
) throws -> HTTPReply {
  let fd = try connectToLoopback(port: port, timeout: timeout)
  defer { close(fd) }
  let request =
    raw
    ?? Array(
      "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        .utf8) + body
  var sent = 0
  while sent < request.count {
    let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    // The server may answer (413) and close before taking the whole body.
    if n <= 0 { break }
    sent += n
  }
  var response: [UInt8] = []
  var buffer = [UInt8](repeating: 0, count: 64 << 10)
  while true {
    let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    if n < 0 && response.isEmpty {
      let e = errno
      throw HTTPClientError(description: "recv from port \(port): errno \(e)", code: e)
    }
    if n <= 0 { break }
    response += buffer[..<n]
  }
  guard let end = response.firstRange(of: Array("\r\n\r\n".utf8)) else {
    throw HTTPClientError(description: "no HTTP answer from port \(port) (\(response.count) bytes)")
  }
  let headText = String(decoding: response[..<end.lowerBound], as: UTF8.self)
  var lines = headText.components(separatedBy: "\r\n")
  let statusLine = lines.removeFirst().split(separator: " ")
  guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
    throw HTTPClientError(description: "bad status line from port \(port): \(headText)")
  }
  var headers: [String: String] = [:]
  for line in lines {
    guard let colon = line.firstIndex(of: ":") else { continue }
    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
  }
  return HTTPReply(status: status, headers: headers, body: Array(response[end.upperBound...]))
}

/// The client side of HTTPS: the CA that issued the members' certificates, and the client's
/// own certificate (nil: none is presented).
struct ClientTLS {
  var caFile: String
  var certificate: (file: String, key: String)?
}

/// An HTTPS request through curl (the tests' plain-socket client speaks no TLS); nil when no
/// answer came (refused, handshake failed, timed out).
func https(
  _ method: String, port: Int, _ target: String, body: [UInt8] = [], timeout: Double = 10, tls: ClientTLS
) -> HTTPReply? {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
  var args = [
    "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--max-time", "\(timeout)", "--cacert", tls.caFile,
  ]
  if let c = tls.certificate { args += ["--cert", c.file, "--key", c.key] }
  if !body.isEmpty || method == "PUT" { args += ["--data-binary", "@-"] }
  p.arguments = args + ["https://127.0.0.1:\(port)\(target)"]
  let input = Pipe()
  let output = Pipe()
  p.standardInput = input
  p.standardOutput = output
  p.standardError = FileHandle.nullDevice
  guard (try? p.run()) != nil else { return nil }
  input.fileHandleForWriting.write(Data(body))
  try? input.fileHandleForWriting.close()
  let data = output.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  guard p.terminationStatus == 0, let nl = data.lastIndex(of: UInt8(ascii: "\n")),
    let status = Int(String(decoding: data[(nl + 1)...], as: UTF8.self)), status > 0
  else { return nil }
  return HTTPReply(status: status, headers: [:], body: Array(data[..<nl]))
}

/// Real `raftkv` processes on loopback, each with its own data directory and log file.
final class KVCluster {
  let dir: String
  let args: [String]
  /// Set for a cluster whose members speak TLS: `https://` peer URLs, and the HTTP API through
  /// `https` with these client credentials.
  var clientTLS: ClientTLS?
  private(set) var raftPorts: [UInt64: Int] = [:]
  private(set) var httpPorts: [UInt64: Int] = [:]
  private(set) var processes: [UInt64: Process] = [:]
  /// Signalled when each member's process exits.
  private var exits: [UInt64: DispatchSemaphore] = [:]

  /// Ports for members 1...`size` (more are made by `reserve`); nothing starts yet.
  init(size: Int, args: [String] = []) throws {
    dir = try makeTestDirectory("raftkv-test")
    self.args = args
    for id in 1...UInt64(size) { reserve(id) }
  }

  func reserve(_ id: UInt64) {
    raftPorts[id] = freePort()
    httpPorts[id] = freePort()
  }

  /// The `--cluster` flag for members 1...`count`.
  func clusterFlag(_ count: Int) -> String {
    let scheme = clientTLS == nil ? "http" : "https"
    return (1...UInt64(count)).map { "\(scheme)://127.0.0.1:\(raftPorts[$0]!)" }.joined(separator: ",")
  }

  /// A request to member `id`'s HTTP API (over TLS when the cluster has it).
  func request(
    _ method: String, _ id: UInt64, _ target: String, body: [UInt8] = [], timeout: Double = 10
  ) -> HTTPReply? {
    if let clientTLS {
      return https(method, port: httpPorts[id]!, target, body: body, timeout: timeout, tls: clientTLS)
    }
    return try? http(method, port: httpPorts[id]!, target, body: body, timeout: timeout)
  }

  func start(_ id: UInt64, members: Int? = nil, join: Bool = false, extra: [String] = []) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try toolPath("raftkv"))
    p.arguments =
      [
        "--id", "\(id)", "--cluster", clusterFlag(members ?? raftPorts.count), "--port", "\(httpPorts[id]!)",
        "--data-dir", "\(dir)/member-\(id)",
      ] + (join ? ["--join"] : []) + args + extra
    let logPath = "\(dir)/member-\(id).log"
    if !FileManager.default.fileExists(atPath: logPath) {
      _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    }
    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    log.seekToEndOfFile()
    p.standardOutput = log
    p.standardError = log
    let exited = DispatchSemaphore(value: 0)
    p.terminationHandler = { _ in exited.signal() }
    try p.run()
    processes[id] = p
    exits[id] = exited
  }

  /// Sends `signal` to member `id` and waits for it to exit.
  func kill(_ id: UInt64, signal: Int32 = SIGKILL) {
    guard let p = processes.removeValue(forKey: id) else { return }
    exits[id] = nil
    Glibc.kill(p.processIdentifier, signal)
    p.waitUntilExit()
  }

  /// Sends `signal` to member `id` without waiting for anything (SIGSTOP, SIGCONT).
  func signal(_ id: UInt64, _ signal: Int32) {
    if let p = processes[id] { Glibc.kill(p.processIdentifier, signal) }
  }

  /// Waits up to `seconds` for member `id` to exit on its own; true when it did.
  func waitForExit(_ id: UInt64, seconds: Double) -> Bool {
    guard let p = processes[id], let exited = exits[id] else { return true }
    // The process's termination handler signals it: wait on the exit itself.
    guard exited.wait(timeout: .now() + seconds) == .success else { return false }
    p.waitUntilExit()
    processes[id] = nil
    exits[id] = nil
    return true
  }

  /// Waits up to `seconds` for member `id` to exit on its own; its exit status, or nil while it
  /// runs.
  func waitForExitStatus(_ id: UInt64, seconds: Double) -> Int32? {
    guard let p = processes[id] else { return nil }
    guard waitForExit(id, seconds: seconds) else { return nil }
    return p.terminationStatus
  }

  func shutdown() {
    for id in Array(processes.keys) { kill(id) }
    try? FileManager.default.removeItem(atPath: dir)
  }

  /// The last lines of every member's log (for failure messages).
  func logs(lines: Int = 15) -> String {
    var out = ""
    for id in raftPorts.keys.sorted() {
      guard let text = try? String(contentsOfFile: "\(dir)/member-\(id).log", encoding: .utf8) else { continue }
      out += "--- member \(id)\n" + text.split(separator: "\n").suffix(lines).joined(separator: "\n") + "\n"
    }
    return out
  }

  func status(_ id: UInt64) -> [String: Any]? {
    guard let r = request("GET", id, "/status", timeout: 2), r.status == 200 else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(r.body))) as? [String: Any]
  }

  /// Waits until a running member among `among` reports itself leader; returns it.
  func waitForLeader(among: [UInt64]? = nil, seconds: Double = 20) -> UInt64? {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      for id in (among ?? Array(processes.keys)).sorted() where processes[id] != nil {
        if let st = status(id), st["state"] as? String == "StateLeader", (st["leader"] as? Int).map(UInt64.init) == id {
          return id
        }
      }
      usleep(50_000)
    }
    return nil
  }

  /// Waits until every running member reports `leader` as its leader (a follower learns it
  /// from the leader's first message, which may come after the leader is elected); false at
  /// the deadline.
  func waitUntilAllFollow(_ leader: UInt64, seconds: Double = 20) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      let ids = processes.keys.sorted()
      if ids.allSatisfy({ id in (status(id)?["leader"] as? Int).map(UInt64.init) == leader }) { return true }
      usleep(50_000)
    }
    return false
  }

  /// PUT; the HTTP status, or nil when the member did not answer.
  func put(_ id: UInt64, _ key: String, _ value: String, timeout: Double = 10) -> Int? {
    request("PUT", id, "/\(key)", body: Array(value.utf8), timeout: timeout)?.status
  }

  /// PUT through `id` until it answers 204 (a new leader may still be on its way).
  func putEventually(_ id: UInt64, _ key: String, _ value: String, seconds: Double = 20) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if put(id, key, value) == 204 { return true }
      usleep(100_000)
    }
    return false
  }

  func get(_ id: UInt64, _ key: String, linearizable: Bool = false) -> HTTPReply? {
    request("GET", id, "/\(key)" + (linearizable ? "?linearizable=true" : ""), timeout: 10)
  }

  /// Waits until member `id` reads `value` at `key` (locally, or linearizably).
  func waitForValue(_ id: UInt64, _ key: String, _ value: String, linearizable: Bool = false, seconds: Double = 20)
    -> Bool
  {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if let r = get(id, key, linearizable: linearizable), r.status == 200, r.text == value { return true }
      usleep(50_000)
    }
    return false
  }
}
