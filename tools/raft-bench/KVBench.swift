import ArgumentParser
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import RaftEngineOptions
import Synchronization

/// `raft-bench kv`: PUT load over HTTP against raftkv or etcd (its JSON gateway, `POST
/// /v3/kv/put`), reported in the format of etcd's `benchmark put`: the summary, the
/// response-time histogram and the latency distribution.
struct KVBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "kv",
    abstract: "PUT load against raftkv or etcd over HTTP, reported like etcd's benchmark tool.",
    discussion: """
      --clients concurrent clients, each with one request outstanding, share --conns HTTP/1.1 \
      connections (client k uses connection k mod conns; a connection carries its clients' requests \
      pipelined), spread over --endpoints. Keys are drawn at random from --key-space-size keys of \
      --key-size bytes; values are --val-size bytes. With --rate, requests start at fixed intervals \
      and latency runs from each one's intended start (coordinated omission).
      """)

  enum Target: String, ExpressibleByArgument, CaseIterable {
    /// `PUT /KEY` with the value as the body; 204 is success.
    case raftkv
    /// etcd's gRPC gateway: `POST /v3/kv/put` with `{"key","value"}` in base64; 200 is success.
    case etcd
  }

  @Option(help: "Comma-separated base URLs (http://HOST:PORT).")
  var endpoints = "http://127.0.0.1:12380"
  @Option(help: "Concurrent clients, each with one request outstanding.")
  var clients = 1
  @Option(help: "HTTP connections the clients share.")
  var conns = 1
  @Option(help: "Requests in all (default 10000 unless --duration is given).")
  var total: Int?
  @Option(help: "Seconds to run instead of --total.")
  var duration: Double?
  @Option(help: "Value size in bytes.")
  var valSize = 8
  @Option(help: "Key size in bytes.")
  var keySize = 8
  @Option(help: "Distinct keys to draw from.")
  var keySpaceSize = 1
  @Option(help: "Requests per second in all (0: each client as fast as it is answered).")
  var rate = 0
  @Option(help: "What serves the endpoints: raftkv or etcd.")
  var target = Target.raftkv
  @Option(
    help:
      "Seconds a request may wait for its answer: beyond, it counts as an error and its connection closes (the requests behind it on the connection fail with it, its clients stop)."
  )
  var timeout = 10.0
  @Flag(help: "One JSON object instead of the report.")
  var json = false

  func validate() throws {
    guard clients >= 1 else { throw ValidationError("--clients must be at least 1") }
    guard (1...clients).contains(conns) else { throw ValidationError("--conns must be from 1 to --clients") }
    if total != nil && duration != nil { throw ValidationError("--total and --duration exclude each other") }
    if let total, total < 1 { throw ValidationError("--total must be at least 1") }
    if let duration, !(duration > 0 && duration <= 86_400) {
      throw ValidationError("--duration must be from 0 to 86400 seconds")
    }
    guard valSize >= 0, valSize <= 64 << 20 else { throw ValidationError("--val-size must be from 0 to 67108864") }
    guard (1...4096).contains(keySize) else { throw ValidationError("--key-size must be from 1 to 4096") }
    guard keySpaceSize >= 1 else { throw ValidationError("--key-space-size must be at least 1") }
    guard rate >= 0 else { throw ValidationError("--rate must not be negative") }
    guard timeout >= 0.001, timeout <= 3_600 else {
      throw ValidationError("--timeout must be from 0.001 to 3600 seconds")
    }
    _ = try parsedEndpoints()
  }

  func parsedEndpoints() throws -> [(host: String, port: Int)] {
    try endpoints.split(separator: ",").map { url in
      let s = url.trimmingCharacters(in: .whitespaces)
      guard s.hasPrefix("http://") else { throw ValidationError("--endpoints: \(s) is not an http:// URL") }
      let hostPort = s.dropFirst("http://".count).split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
      guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]),
        (1...65535).contains(port)
      else { throw ValidationError("--endpoints: \(s) has no port") }
      return (String(hostPort[..<colon]), port)
    }
  }

  func run() throws {
    FileDescriptorLimit.raiseToHardLimit()  // one descriptor per connection
    let endpoints = try parsedEndpoints()
    let group = MultiThreadedEventLoopGroup(numberOfThreads: min(System.coreCount, 4))
    defer { try? group.syncShutdownGracefully() }
    let load = KVLoad(
      target: target, valSize: valSize, keySize: keySize, keySpaceSize: keySpaceSize,
      total: duration == nil ? (total ?? 10_000) : nil, seconds: duration, clients: clients,
      intervalNanoseconds: rate > 0 ? UInt64(1e9 * Double(clients) / Double(rate)) : 0,
      timeoutNanoseconds: UInt64(timeout * 1e9))
    var connections: [KVConnection] = []
    for k in 0..<conns {
      let e = endpoints[k % endpoints.count]
      do {
        connections.append(try KVConnection.connect(host: e.host, port: e.port, group: group, load: load))
      } catch {
        throw ValidationError("--endpoints: cannot connect to \(e.host):\(e.port): \(error)")
      }
    }
    let result = load.run(connections)
    for c in connections { c.close() }
    if json {
      print(result.json(self))
    } else {
      print(result.report())
    }
  }
}

/// The shared state of one run: what to send, when to stop, what came back.
final class KVLoad: Sendable {
  let target: KVBench.Target
  let value: [UInt8]
  /// `value` as a buffer, its length as text, and in base64 (made once).
  let valueBuffer: ByteBuffer
  let valueLength: String
  let valueBase64: String
  let keySize: Int
  let keySpaceSize: Int
  /// Requests to start in all (nil: run for `seconds`).
  let total: Int?
  let seconds: Double?
  let clients: Int
  /// Per client, between intended starts (0: closed loop).
  let intervalNanoseconds: UInt64
  /// How long a request may wait for its answer.
  let timeoutNanoseconds: UInt64

  /// Requests started so far.
  let started = Atomic<Int>(0)
  /// Clients still running.
  let running: Atomic<Int>
  let deadline = Atomic<UInt64>(0)
  let startNanoseconds = Atomic<UInt64>(0)
  let endNanoseconds = Atomic<UInt64>(0)
  /// Latencies of the successful requests, in nanoseconds; failures by description; successes
  /// by the second of the run they finished in.
  let outcomes = Mutex<(latencies: [UInt64], errors: [String: Int], perSecond: [Int])>(([], [:], []))
  private let finished = DispatchSemaphore(value: 0)

  init(
    target: KVBench.Target, valSize: Int, keySize: Int, keySpaceSize: Int, total: Int?, seconds: Double?,
    clients: Int, intervalNanoseconds: UInt64, timeoutNanoseconds: UInt64
  ) {
    self.target = target
    value = [UInt8](repeating: UInt8(ascii: "v"), count: valSize)
    valueBuffer = ByteBuffer(bytes: value)
    valueLength = String(valSize)
    valueBase64 = Data(value).base64EncodedString()
    self.keySize = keySize
    self.keySpaceSize = keySpaceSize
    self.total = total
    self.seconds = seconds
    self.clients = clients
    self.intervalNanoseconds = intervalNanoseconds
    self.timeoutNanoseconds = timeoutNanoseconds
    running = Atomic(clients)
  }

  static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

  /// Starts every client on its connection and waits until all have stopped.
  func run(_ connections: [KVConnection]) -> KVResult {
    let start = Self.now()
    startNanoseconds.store(start, ordering: .relaxed)
    if let seconds { deadline.store(start + UInt64(seconds * 1e9), ordering: .relaxed) }
    for k in 0..<clients {
      let connection = connections[k % connections.count]
      // Spread the clients' first intended starts over one interval.
      let offset = intervalNanoseconds * UInt64(k) / UInt64(clients)
      connection.startClient(firstAt: start + offset)
    }
    finished.wait()
    let end = endNanoseconds.load(ordering: .relaxed)
    return outcomes.withLock {
      KVResult(
        seconds: Double(end - start) / 1e9, latencies: $0.latencies, errors: $0.errors, okPerSecond: $0.perSecond)
    }
  }

  /// Whether a client may start another request (and counts it).
  func mayStart() -> Bool {
    if let total { return started.add(1, ordering: .relaxed).newValue <= total }
    return Self.now() < deadline.load(ordering: .relaxed)
  }

  func clientStopped() {
    if running.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
      endNanoseconds.store(Self.now(), ordering: .relaxed)
      finished.signal()
    }
  }

  func record(latency: UInt64) {
    let second = Int((Self.now() &- startNanoseconds.load(ordering: .relaxed)) / 1_000_000_000)
    outcomes.withLock { o in
      o.latencies.append(latency)
      if o.perSecond.count <= second { o.perSecond += Array(repeating: 0, count: second + 1 - o.perSecond.count) }
      o.perSecond[second] += 1
    }
  }
  func record(error: String) { outcomes.withLock { $0.errors[error, default: 0] += 1 } }

  /// One request, as bytes on the wire (`hostHeader`: the connection's `Host` value). What does
  /// not change between requests is made once: the value's buffer (shared, copy on write) and
  /// its base64 text.
  func request(hostHeader: String) -> (head: HTTPRequestHead, body: ByteBuffer) {
    let n = Int.random(in: 0..<keySpaceSize)
    var key = String(n)
    if key.count < keySize { key = String(repeating: "0", count: keySize - key.count) + key }
    if key.count > keySize { key = String(key.suffix(keySize)) }
    var headers = HTTPHeaders([("Host", hostHeader)])
    switch target {
    case .raftkv:
      headers.add(name: "Content-Length", value: valueLength)
      return (HTTPRequestHead(version: .http1_1, method: .PUT, uri: "/k" + key, headers: headers), valueBuffer)
    case .etcd:
      let body = Array("{\"key\":\"\(Data(key.utf8).base64EncodedString())\",\"value\":\"\(valueBase64)\"}".utf8)
      headers.add(name: "Content-Type", value: "application/json")
      headers.add(name: "Content-Length", value: String(body.count))
      return (
        HTTPRequestHead(version: .http1_1, method: .POST, uri: "/v3/kv/put", headers: headers), ByteBuffer(bytes: body)
      )
    }
  }

  func succeeded(_ status: HTTPResponseStatus) -> Bool {
    switch target {
    case .raftkv: status == .noContent || status == .ok
    case .etcd: status == .ok
    }
  }
}

/// One HTTP/1.1 connection: its clients' requests go out pipelined, their answers come back in
/// order. Everything runs on the connection's event loop.
final class KVConnection: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = HTTPClientResponsePart

  let load: KVLoad
  let host: String
  let port: Int
  /// The `Host` header of every request (made once).
  let hostHeader: String
  private var channel: Channel!
  /// The clients waiting for an answer, oldest first, with each request's intended start and
  /// when it was sent.
  private var waiting: [(client: Int, intended: UInt64, sent: UInt64)] = []
  /// Checks every quarter of the timeout that the oldest request is not past it.
  private var watchdog: RepeatedTask?
  private var status: HTTPResponseStatus = .ok
  private var nextClient = 0
  private var failed = false

  init(load: KVLoad, host: String, port: Int) {
    self.load = load
    self.host = host
    self.port = port
    hostHeader = "\(host):\(port)"
  }

  static func connect(host: String, port: Int, group: EventLoopGroup, load: KVLoad) throws -> KVConnection {
    let handler = KVConnection(load: load, host: host, port: port)
    let channel = try ClientBootstrap(group: group)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHTTPClientHandlers()
          try channel.pipeline.syncOperations.addHandler(handler)
        }
      }
      .connect(host: host, port: port).wait()
    handler.channel = channel
    return handler
  }

  func close() { try? channel.close().wait() }

  /// Starts one client on this connection, its first request at `firstAt`.
  func startClient(firstAt: UInt64) {
    channel.eventLoop.execute {
      let client = self.nextClient
      self.nextClient += 1
      if self.watchdog == nil && !self.failed {
        let every = Int64(min(max(self.load.timeoutNanoseconds / 4, 1_000_000), 1_000_000_000))
        self.watchdog = self.channel.eventLoop.scheduleRepeatedTask(
          initialDelay: .nanoseconds(every), delay: .nanoseconds(every)
        ) { _ in self.checkTimeout() }
      }
      self.schedule(client, at: firstAt)
    }
  }

  private func schedule(_ client: Int, at intended: UInt64) {
    let now = KVLoad.now()
    if intended > now {
      channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(intended - now))) { self.send(client, intended: intended) }
    } else {
      send(client, intended: intended)
    }
  }

  private func send(_ client: Int, intended: UInt64) {
    guard !failed, load.mayStart() else { return load.clientStopped() }
    let (head, body) = load.request(hostHeader: hostHeader)
    let now = KVLoad.now()
    waiting.append((client, load.intervalNanoseconds > 0 ? intended : now, now))
    channel.write(HTTPClientRequestPart.head(head), promise: nil)
    channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let h): status = h.status
    case .body: break
    case .end:
      guard !waiting.isEmpty else { return }
      let (client, intended, _) = waiting.removeFirst()
      let now = KVLoad.now()
      if load.succeeded(status) {
        load.record(latency: now - intended)
      } else {
        load.record(error: "HTTP \(status.code) \(status.reasonPhrase)")
      }
      let next = load.intervalNanoseconds > 0 ? intended + load.intervalNanoseconds : now
      schedule(client, at: next)
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    fail("connection error: \(error)")
    context.close(promise: nil)
  }

  func channelInactive(context: ChannelHandlerContext) { fail("connection closed by the server") }

  /// The oldest request waited past the timeout: it fails, and the connection with it (an
  /// HTTP/1.1 answer cannot be skipped).
  private func checkTimeout() {
    guard !failed, let oldest = waiting.first, KVLoad.now() &- oldest.sent > load.timeoutNanoseconds else { return }
    fail("no answer within \(Double(load.timeoutNanoseconds) / 1e9) s (the connection was closed)")
    channel.close(promise: nil)
  }

  /// The connection is gone: its waiting clients stop, with the error counted.
  private func fail(_ why: String) {
    guard !failed else { return }
    failed = true
    watchdog?.cancel()
    watchdog = nil
    for _ in waiting {
      load.record(error: why)
      load.clientStopped()
    }
    waiting.removeAll()
  }
}

/// What a run measured, and etcd's report of it.
struct KVResult {
  var seconds: Double
  /// Successful requests' latencies, nanoseconds.
  var latencies: [UInt64]
  var errors: [String: Int]
  /// Successful requests by the second of the run they finished in.
  var okPerSecond: [Int] = []

  var sortedSeconds: [Double] { latencies.sorted().map { Double($0) / 1e9 } }

  func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
  }

  static let percentiles: [Double] = [10, 25, 50, 75, 90, 95, 99, 99.9]

  /// etcd's `benchmark` report: Summary, Response time histogram, Latency distribution (and
  /// Error distribution when there were errors).
  func report() -> String {
    let s = sortedSeconds
    func f(_ v: Double) -> String { String(format: "%.4f", v) }
    let average = s.isEmpty ? 0 : s.reduce(0, +) / Double(s.count)
    let variance = s.isEmpty ? 0 : s.reduce(0) { $0 + ($1 - average) * ($1 - average) } / Double(s.count)
    var out = "\nSummary:\n"
    out += "  Total:\t\(f(seconds)) secs.\n"
    out += "  Slowest:\t\(f(s.last ?? 0)) secs.\n"
    out += "  Fastest:\t\(f(s.first ?? 0)) secs.\n"
    out += "  Average:\t\(f(average)) secs.\n"
    out += "  Stddev:\t\(f(variance.squareRoot())) secs.\n"
    out += "  Requests/sec:\t\(f(Double(s.count) / max(seconds, 1e-9)))\n"
    if let fastest = s.first, let slowest = s.last {
      // Ten buckets from the fastest to the slowest; each counts the latencies up to its mark.
      let marks = (0...10).map { fastest + (slowest - fastest) * Double($0) / 10 }
      var counts = [Int](repeating: 0, count: marks.count)
      var k = 0
      for v in s {
        while k < marks.count - 1 && v > marks[k] { k += 1 }
        counts[k] += 1
      }
      let most = max(counts.max() ?? 1, 1)
      out += "\nResponse time histogram:\n"
      for (mark, count) in zip(marks, counts) {
        out += "  \(f(mark)) [\(count)]\t|\(String(repeating: "∎", count: count * 40 / most))\n"
      }
      out += "\nLatency distribution:\n"
      for p in Self.percentiles {
        let label = p == p.rounded() ? String(Int(p)) : String(p)
        out += "  \(label)% in \(f(percentile(s, p))) secs.\n"
      }
    }
    if !errors.isEmpty {
      out += "\nError distribution:\n"
      for (e, n) in errors.sorted(by: { $0.value > $1.value }) { out += "  [\(n)]\t\(e)\n" }
    }
    return out
  }

  /// The same as one JSON object.
  func json(_ options: KVBench) -> String {
    let s = sortedSeconds
    let average = s.isEmpty ? 0 : s.reduce(0, +) / Double(s.count)
    var fields: [(String, String)] = [
      ("target", "\"\(options.target.rawValue)\""), ("clients", "\(options.clients)"), ("conns", "\(options.conns)"),
      ("val_size", "\(options.valSize)"), ("key_size", "\(options.keySize)"),
      ("key_space_size", "\(options.keySpaceSize)"), ("rate", "\(options.rate)"),
      ("timeout_seconds", "\(options.timeout)"),
      ("requests", "\(s.count)"), ("errors", "\(errors.values.reduce(0, +))"),
      ("total_seconds", String(format: "%.6f", seconds)),
      ("requests_per_sec", String(format: "%.1f", Double(s.count) / max(seconds, 1e-9))),
      ("fastest_seconds", String(format: "%.6f", s.first ?? 0)),
      ("slowest_seconds", String(format: "%.6f", s.last ?? 0)),
      ("average_seconds", String(format: "%.6f", average)),
    ]
    for p in Self.percentiles {
      let name = "p" + String(p).replacingOccurrences(of: ".0", with: "").replacingOccurrences(of: ".", with: "")
      fields.append((name + "_seconds", String(format: "%.6f", percentile(s, p))))
    }
    fields.append(("ok_per_second", "[" + okPerSecond.map(String.init).joined(separator: ",") + "]"))
    return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
  }
}
