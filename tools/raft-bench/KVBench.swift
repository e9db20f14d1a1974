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
  /// The request body's value bytes, and the same in base64 (made once).
  let value: [UInt8]
  let valueBase64: [UInt8]
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
  /// Failures by description (successes are kept by each connection, merged at the end).
  let errors = Mutex<[String: Int]>([:])
  private let finished = DispatchSemaphore(value: 0)

  init(
    target: KVBench.Target, valSize: Int, keySize: Int, keySpaceSize: Int, total: Int?, seconds: Double?,
    clients: Int, intervalNanoseconds: UInt64, timeoutNanoseconds: UInt64
  ) {
    self.target = target
    value = [UInt8](repeating: UInt8(ascii: "v"), count: valSize)
    valueBase64 = Array(Data(value).base64EncodedData())
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

  /// Starts every client on its connection, waits until all have stopped, and merges what the
  /// connections measured.
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
    var latencies: [UInt64] = []
    var perSecond: [Int] = []
    for c in connections {
      let (l, s) = c.measured()
      latencies += l
      if perSecond.count < s.count { perSecond += Array(repeating: 0, count: s.count - perSecond.count) }
      for (k, n) in s.enumerated() { perSecond[k] += n }
    }
    return KVResult(
      seconds: Double(end - start) / 1e9, latencies: latencies, errors: errors.withLock { $0 }, okPerSecond: perSecond)
  }

  /// Whether a client may start another request at `now` (and counts it).
  func mayStart(now: UInt64) -> Bool {
    if let total { return started.add(1, ordering: .relaxed).newValue <= total }
    return now < deadline.load(ordering: .relaxed)
  }

  func clientStopped() {
    if running.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
      endNanoseconds.store(Self.now(), ordering: .relaxed)
      finished.signal()
    }
  }

  func record(error: String) { errors.withLock { $0[error, default: 0] += 1 } }

  /// How every request of a connection looks on the wire: `head`, then the key (its decimal
  /// digits, in base64 for etcd), then `tail`. Only the key changes between requests.
  func template(hostHeader: String) -> (head: [UInt8], tail: [UInt8], method: HTTPMethod) {
    switch target {
    case .raftkv:
      let tail = " HTTP/1.1\r\nHost: \(hostHeader)\r\nContent-Length: \(value.count)\r\n\r\n"
      return (Array("PUT /k".utf8), Array(tail.utf8) + value, .PUT)
    case .etcd:
      let open = Array("{\"key\":\"".utf8)
      let close = Array("\",\"value\":\"".utf8) + valueBase64 + Array("\"}".utf8)
      let bodyBytes = open.count + Self.base64Bytes(keySize) + close.count
      let head =
        "POST /v3/kv/put HTTP/1.1\r\nHost: \(hostHeader)\r\nContent-Type: application/json\r\n"
        + "Content-Length: \(bodyBytes)\r\n\r\n"
      return (Array(head.utf8) + open, close, .POST)
    }
  }

  static func base64Bytes(_ n: Int) -> Int { (n + 2) / 3 * 4 }

  /// Writes key number `n` as the last `keySize` decimal digits of `n`, zero-padded, into `key`.
  static func writeKey(_ n: Int, into key: inout [UInt8]) {
    var rest = n
    for k in key.indices.reversed() {
      key[k] = UInt8(ascii: "0") + UInt8(rest % 10)
      rest /= 10
    }
  }

  func succeeded(_ status: HTTPResponseStatus) -> Bool {
    switch target {
    case .raftkv: status == .noContent || status == .ok
    case .etcd: status == .ok
    }
  }
}

/// A pseudo-random generator (SplitMix64) for the key draws: one per connection, seeded from
/// the system's generator, which costs a system call per draw.
struct SplitMix64: RandomNumberGenerator {
  private var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// The pipeline's first handler: what is written through it goes straight to the socket,
/// past the response decoder (whose write observer only takes NIO's request parts).
final class KVSocketWriter: ChannelOutboundHandler, @unchecked Sendable {
  typealias OutboundIn = ByteBuffer
  private var context: ChannelHandlerContext?
  func handlerAdded(context: ChannelHandlerContext) { self.context = context }
  func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }
  /// Writes and flushes `bytes` (on the channel's event loop).
  func send(_ bytes: ByteBuffer) { context?.writeAndFlush(NIOAny(bytes), promise: nil) }
}

/// One HTTP/1.1 connection: its clients' requests go out pipelined, their answers come back in
/// order. Everything runs on the connection's event loop.
///
/// A request is made as bytes from the connection's template (only the key changes) and
/// written with one call; NIO's decoder parses the answers and is told each request's method
/// as its encoder would (a HEAD's answer has no body).
final class KVConnection: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = HTTPClientResponsePart

  let load: KVLoad
  let host: String
  let port: Int
  private let template: (head: [UInt8], tail: [UInt8], method: HTTPMethod)
  /// The request head the decoder is told of for each request (only its method matters).
  private let decoderHead: HTTPRequestHead
  private let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)
  private let writer = KVSocketWriter()
  private var channel: Channel!
  private var random = SplitMix64(seed: UInt64.random(in: .min ... .max))
  /// The key's digits (reused).
  private var key: [UInt8]
  /// The clients waiting for an answer, oldest first, with each request's intended start and
  /// when it was sent.
  private var waiting = CircularBuffer<(client: Int, intended: UInt64, sent: UInt64)>()
  /// Successful requests' latencies (nanoseconds) and successes per second of the run.
  private var latencies: [UInt64] = []
  private var perSecond: [Int] = []
  /// Checks every quarter of the timeout that the oldest request is not past it.
  private var watchdog: RepeatedTask?
  private var status: HTTPResponseStatus = .ok
  private var nextClient = 0
  private var failed = false

  init(load: KVLoad, host: String, port: Int) {
    self.load = load
    self.host = host
    self.port = port
    template = load.template(hostHeader: "\(host):\(port)")
    decoderHead = HTTPRequestHead(version: .http1_1, method: template.method, uri: "/")
    key = [UInt8](repeating: UInt8(ascii: "0"), count: load.keySize)
    latencies.reserveCapacity(1 << 16)
  }

  static func connect(host: String, port: Int, group: EventLoopGroup, load: KVLoad) throws -> KVConnection {
    let handler = KVConnection(load: load, host: host, port: port)
    let channel = try ClientBootstrap(group: group)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let sync = channel.pipeline.syncOperations
          try sync.addHandler(handler.writer)
          try sync.addHandler(ByteToMessageHandler(handler.decoder))
          try sync.addHandler(handler)
        }
      }
      .connect(host: host, port: port).wait()
    handler.channel = channel
    return handler
  }

  func close() { try? channel.close().wait() }

  /// What the connection measured: successful latencies and successes per second of the run.
  func measured() -> (latencies: [UInt64], perSecond: [Int]) {
    (try? channel.eventLoop.submit { (self.latencies, self.perSecond) }.wait()) ?? ([], [])
  }

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
      self.schedule(client, at: firstAt, now: KVLoad.now())
    }
  }

  private func schedule(_ client: Int, at intended: UInt64, now: UInt64) {
    if intended > now {
      channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(intended - now))) {
        self.send(client, intended: intended, now: KVLoad.now())
      }
    } else {
      send(client, intended: intended, now: now)
    }
  }

  private func send(_ client: Int, intended: UInt64, now: UInt64) {
    guard !failed, load.mayStart(now: now) else { return load.clientStopped() }
    KVLoad.writeKey(Int.random(in: 0..<load.keySpaceSize, using: &random), into: &key)
    let keyBytes = load.target == .etcd ? KVLoad.base64Bytes(key.count) : key.count
    var bytes = channel.allocator.buffer(capacity: template.head.count + keyBytes + template.tail.count)
    bytes.writeBytes(template.head)
    switch load.target {
    case .raftkv: bytes.writeBytes(key)
    case .etcd: bytes.writeBytes(Data(key).base64EncodedData())
    }
    bytes.writeBytes(template.tail)
    waiting.append((client, load.intervalNanoseconds > 0 ? intended : now, now))
    decoder.write(data: .head(decoderHead))
    writer.send(bytes)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let h): status = h.status
    case .body: break
    case .end:
      guard let (client, intended, _) = waiting.popFirst() else { return }
      let now = KVLoad.now()
      if load.succeeded(status) {
        latencies.append(now - intended)
        let second = Int((now &- load.startNanoseconds.load(ordering: .relaxed)) / 1_000_000_000)
        if perSecond.count <= second { perSecond += Array(repeating: 0, count: second + 1 - perSecond.count) }
        perSecond[second] += 1
      } else {
        load.record(error: "HTTP \(status.code) \(status.reasonPhrase)")
      }
      let next = load.intervalNanoseconds > 0 ? intended + load.intervalNanoseconds : now
      schedule(client, at: next, now: now)
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
