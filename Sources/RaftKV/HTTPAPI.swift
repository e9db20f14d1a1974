import Foundation
import Metrics
import NIOCore
import NIOHTTP1
import RaftEngine
import RaftTransport
import Synchronization

/// What the HTTP API needs of a member: `RaftKVServer`, or a stand-in (the HTTP fuzz target).
///
/// Every operation answers through `done`, exactly once, on whatever thread it completes on.
public protocol KVService: Sendable {
  /// The request limits (400 beyond them).
  var limits: KVLimits { get }
  /// The metrics `GET /metrics` renders.
  var metrics: PrometheusMetrics { get }
  /// The leader's id and raft URL, when one is known.
  var leaderAddress: (id: UInt64, url: String?)? { get }
  /// The members and their raft URLs.
  var members: [UInt64: String] { get }
  /// Writes `value` at `key`: the entry's index once it is committed and applied.
  func put(_ key: [UInt8], _ value: [UInt8], done: @escaping @Sendable (Result<UInt64, KVError>) -> Void)
  /// Deletes `key`: the entry's index once it is committed and applied.
  func delete(_ key: [UInt8], done: @escaping @Sendable (Result<UInt64, KVError>) -> Void)
  /// The value at `key` (nil: none), read locally or after a ReadIndex round.
  func get(_ key: [UInt8], linearizable: Bool, done: @escaping @Sendable (Result<[UInt8]?, KVError>) -> Void)
  /// Adds a voter reachable at the raft URL `url`, once the conf change is applied.
  func addMember(_ memberID: UInt64, url: String, done: @escaping @Sendable (Result<UInt64, KVError>) -> Void)
  /// Removes a member, once the conf change is applied.
  func removeMember(_ memberID: UInt64, done: @escaping @Sendable (Result<UInt64, KVError>) -> Void)
  /// The member's state.
  func status(_ done: @escaping @Sendable (KVStatusReport) -> Void)
}

/// The request limits of the HTTP API.
public struct KVLimits: Sendable {
  /// The longest key, in bytes after percent-decoding.
  public var maxKeyBytes: Int
  /// The largest value, in bytes.
  public var maxValueBytes: Int
  public init(maxKeyBytes: Int, maxValueBytes: Int) {
    self.maxKeyBytes = maxKeyBytes
    self.maxValueBytes = maxValueBytes
  }
}

/// One HTTP answer.
@_spi(Testing) public struct HTTPAnswer: Sendable {
  public var status: HTTPResponseStatus
  public var headers: [(String, String)] = []
  public var body: [UInt8] = []

  static func json<T: Encodable>(_ status: HTTPResponseStatus, _ value: T) -> HTTPAnswer {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    let body = (try? encoder.encode(value)).map { Array($0) + [UInt8(ascii: "\n")] } ?? []
    return HTTPAnswer(status: status, headers: [("Content-Type", "application/json")], body: body)
  }

  /// An error answer: `{"error": "..."}` plus, when known, the leader's id and raft address.
  static func error(_ status: HTTPResponseStatus, _ message: String, leader: (id: UInt64, url: String?)? = nil)
    -> HTTPAnswer
  {
    struct Body: Encodable {
      var error: String
      var leader: UInt64?
      var leaderUrl: String?
    }
    var a = json(status, Body(error: message, leader: leader?.id, leaderUrl: leader?.url ?? nil))
    if let leader {
      a.headers.append(("X-Raft-Leader", String(leader.id)))
      if let url = leader.url { a.headers.append(("X-Raft-Leader-URL", url)) }
    }
    return a
  }

  static func methodNotAllowed(_ allow: String) -> HTTPAnswer {
    var a = error(.methodNotAllowed, "method not allowed; allowed: \(allow)")
    a.headers.append(("Allow", allow))
    return a
  }
}

/// The HTTP API of a `RaftKVServer`:
///
/// - `PUT /KEY` (body: the value): 204 once committed and applied; `DELETE /KEY` likewise;
/// - `GET /KEY`: 200 with the value or 404; `?linearizable=true` reads through ReadIndex;
/// - `POST /members/ID` (body: the member's raft URL), `DELETE /members/ID`: 204 once applied;
///   `GET /members`: the members and their URLs;
/// - `GET /status`: JSON (id, state, term, leader, commit, applied, progress, ...);
/// - `GET /metrics`: Prometheus text.
///
/// Errors: 400 (bad key, value, id, URL or query), 404, 405 with `Allow`, 413 (body over
/// `maxBodyBytes`, answered by NIO's aggregator), 503 with the leader when there is no leader or
/// the request could not be carried out now (retry is safe: PUT and DELETE are idempotent).
@_spi(Testing) public struct HTTPAPI: Sendable {
  let server: any KVService
  /// Admits requests until a graceful shutdown closes it (nil: always open).
  let gate: RequestGate?
  private let counters: HTTPRequestCounters

  @_spi(Testing) public init(server: any KVService) {
    self.server = server
    gate = nil
    counters = HTTPRequestCounters(factory: server.metrics)
  }

  init(server: any KVService, gate: RequestGate) {
    self.server = server
    self.gate = gate
    counters = HTTPRequestCounters(factory: server.metrics)
  }

  @_spi(Testing) public func handle(
    _ request: NIOHTTPServerRequestFull, _ answer: @escaping @Sendable (HTTPAnswer) -> Void
  ) {
    let head = request.head
    let (rawPath, query) = Self.split(head.uri)
    let method = head.method
    let body = request.body.map { Array($0.readableBytesView) } ?? []
    let (gate, counters) = (self.gate, self.counters)
    let count: @Sendable (HTTPAnswer) -> Void = { a in
      counters.increment(method: method, code: a.status.code)
      answer(a)
    }
    let bytes = body.count
    switch gate?.enter(bytes: bytes) ?? .admitted {
    case .admitted: break
    case .closed: return count(.error(.serviceUnavailable, "shutting down"))
    case .overloaded:
      var a = HTTPAnswer.error(.serviceUnavailable, "overloaded: too many request bytes in flight")
      a.headers.append(("Retry-After", "1"))
      return count(a)
    }
    let done: @Sendable (HTTPAnswer) -> Void = { a in
      count(a)
      gate?.leave(bytes: bytes)
    }
    guard let path = Self.percentDecode(rawPath) else {
      return done(.error(.badRequest, "bad percent-encoding in path"))
    }
    let segments = path.split(separator: UInt8(ascii: "/"), maxSplits: 1, omittingEmptySubsequences: false)
    // segments[0] is the empty string before the leading "/".
    let first = segments.count > 1 ? Array(segments[1]) : []
    switch first {
    case Array("status".utf8):
      guard method == .GET else { return done(.methodNotAllowed("GET")) }
      server.status { done(.json(.ok, $0)) }
    case Array("metrics".utf8):
      guard method == .GET else { return done(.methodNotAllowed("GET")) }
      metrics(done)
    case Array("members".utf8):
      guard method == .GET else { return done(.methodNotAllowed("GET")) }
      done(.json(.ok, Dictionary(uniqueKeysWithValues: server.members.map { (String($0.key), $0.value) })))
    default:
      if first.starts(with: Array("members/".utf8)) {
        members(method, String(decoding: first.dropFirst(8), as: UTF8.self), body, done)
      } else {
        key(method, first, query, body, done)
      }
    }
  }

  private func key(
    _ method: HTTPMethod, _ key: [UInt8], _ query: [String: String], _ body: [UInt8],
    _ done: @escaping @Sendable (HTTPAnswer) -> Void
  ) {
    let allow = "GET, PUT, DELETE"
    guard [.GET, .PUT, .DELETE].contains(method) else { return done(.methodNotAllowed(allow)) }
    guard !key.isEmpty else { return done(.error(.badRequest, "empty key")) }
    let limits = server.limits
    guard key.count <= limits.maxKeyBytes else {
      return done(.error(.badRequest, "key of \(key.count) bytes exceeds the maximum of \(limits.maxKeyBytes)"))
    }
    let leader: @Sendable () -> (id: UInt64, url: String?)? = { [server] in server.leaderAddress }
    switch method {
    case .GET:
      var linearizable = false
      for (name, value) in query {
        guard name == "linearizable" else { return done(.error(.badRequest, "unknown query parameter \"\(name)\"")) }
        switch value {
        case "true", "1", "": linearizable = true
        case "false", "0": linearizable = false
        default: return done(.error(.badRequest, "linearizable must be true or false"))
        }
      }
      server.get(key, linearizable: linearizable) { result in
        switch result {
        case .success(let value?):
          done(HTTPAnswer(status: .ok, headers: [("Content-Type", "application/octet-stream")], body: value))
        case .success(nil): done(.error(.notFound, "no such key"))
        case .failure(let error): done(Self.unavailable(error, leader()))
        }
      }
    case .PUT:
      guard query.isEmpty else { return done(.error(.badRequest, "PUT takes no query parameters")) }
      guard body.count <= limits.maxValueBytes else {
        return done(.error(.badRequest, "value of \(body.count) bytes exceeds the maximum of \(limits.maxValueBytes)"))
      }
      server.put(key, body) { result in done(Self.written(result, leader())) }
    case .DELETE:
      guard query.isEmpty else { return done(.error(.badRequest, "DELETE takes no query parameters")) }
      server.delete(key) { result in done(Self.written(result, leader())) }
    default:
      preconditionFailure("checked above")
    }
  }

  private func members(
    _ method: HTTPMethod, _ idText: String, _ body: [UInt8], _ done: @escaping @Sendable (HTTPAnswer) -> Void
  ) {
    guard method == .POST || method == .DELETE else { return done(.methodNotAllowed("POST, DELETE")) }
    guard let id = UInt64(idText), id != 0, id < (1 << 48) else {
      return done(.error(.badRequest, "member id must be a number from 1 to 2^48-1"))
    }
    let leader: @Sendable () -> (id: UInt64, url: String?)? = { [server] in server.leaderAddress }
    if method == .DELETE {
      return server.removeMember(id) { done(Self.written($0, leader())) }
    }
    let url = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    do {
      _ = try PeerAddress(parsing: url)
    } catch {
      return done(.error(.badRequest, "\(error)"))
    }
    server.addMember(id, url: url) { done(Self.written($0, leader())) }
  }

  private func metrics(_ done: @escaping @Sendable (HTTPAnswer) -> Void) {
    let factory = server.metrics
    server.status { st in
      let d = [("node", String(st.id))]
      Meter(label: "raft_term", dimensions: d, factory: factory).set(Int64(st.term))
      Meter(label: "raft_commit_index", dimensions: d, factory: factory).set(Int64(st.commit))
      Meter(label: "raft_applied_index", dimensions: d, factory: factory).set(Int64(st.applied))
      Meter(label: "raft_is_leader", dimensions: d, factory: factory).set(st.leader == st.id ? 1 : 0)
      Meter(label: "raft_snapshot_index", dimensions: d, factory: factory).set(Int64(st.snapshotIndex))
      Meter(label: "raftkv_keys", dimensions: d, factory: factory).set(st.keys)
      Meter(label: "raft_connected_peers", dimensions: d, factory: factory).set(st.connectedPeers.count)
      done(
        HTTPAnswer(
          status: .ok, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array(factory.render().utf8)))
    }
  }

  /// 204 once applied, or the failure.
  static func written(_ result: Result<UInt64, KVError>, _ leader: (id: UInt64, url: String?)?) -> HTTPAnswer {
    switch result {
    case .success: return HTTPAnswer(status: .noContent)
    // A membership change the configuration cannot take (removing the last voter): retrying
    // will not help.
    case .failure(.engine(.invalidConfChange(let why))): return HTTPAnswer.error(.badRequest, why, leader: nil)
    case .failure(.engine(.tooLarge(let bytes, let max))):
      return HTTPAnswer.error(.payloadTooLarge, "an entry of \(bytes) bytes is larger than the log's limit of \(max)")
    case .failure(let error): return unavailable(error, leader)
    }
  }

  static func unavailable(_ error: KVError, _ leader: (id: UInt64, url: String?)?) -> HTTPAnswer {
    var a = HTTPAnswer.error(.serviceUnavailable, "\(error)", leader: leader)
    a.headers.append(("Retry-After", "1"))
    return a
  }

  /// The path and the query parameters of a request target.
  static func split(_ uri: String) -> (path: String, query: [String: String]) {
    guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
    var query: [String: String] = [:]
    for pair in uri[uri.index(after: q)...].split(separator: "&") {
      let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      query[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
    }
    return (String(uri[..<q]), query)
  }

  /// Decodes `%XX` escapes into bytes; nil for a malformed escape.
  static func percentDecode(_ s: String) -> [UInt8]? {
    var out: [UInt8] = []
    let bytes = Array(s.utf8)
    var i = 0
    func hex(_ b: UInt8) -> UInt8? {
      switch b {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
      default: return nil
      }
    }
    while i < bytes.count {
      if bytes[i] == UInt8(ascii: "%") {
        guard i + 2 < bytes.count, let h = hex(bytes[i + 1]), let l = hex(bytes[i + 2]) else { return nil }
        out.append(h << 4 | l)
        i += 3
      } else {
        out.append(bytes[i])
        i += 1
      }
    }
    return out
  }
}

/// The `raftkv_http_requests_total` counters by method and status code, each made once (making
/// one through the factory takes its lock, a lookup by label and dimensions, and the strings).
final class HTTPRequestCounters: Sendable {
  private struct Key: Hashable {
    var method: String
    var code: UInt
  }
  private let factory: PrometheusMetrics
  private let counters = Mutex<[Key: Counter]>([:])

  init(factory: PrometheusMetrics) { self.factory = factory }

  func increment(method: HTTPMethod, code: UInt) {
    let key = Key(method: method.rawValue, code: code)
    let counter = counters.withLock { c in
      if let counter = c[key] { return counter }
      let counter = Counter(
        label: "raftkv_http_requests_total", dimensions: [("method", key.method), ("code", String(code))],
        factory: factory)
      c[key] = counter
      return counter
    }
    counter.increment()
  }
}

/// The NIO side of the HTTP API: one full request in, one answer out, one request at a time
/// per connection (pipelined requests are carried out in order, so that a read sees the writes
/// sent before it on its connection).
///
/// Pipelined requests wait in a queue; once it holds `queuedRequestsMax`, the handler stops
/// asking for reads (what one read already brought is still queued: the queue is bounded by
/// that plus one read's bytes) until it drains below. NIO's own pipelining handler stops reading
/// while any request is in flight, which costs two `epoll_ctl` calls per request.
@_spi(Testing) public final class HTTPHandler: ChannelDuplexHandler {
  public typealias InboundIn = NIOHTTPServerRequestFull
  public typealias OutboundIn = HTTPServerResponsePart
  public typealias OutboundOut = HTTPServerResponsePart

  /// Queued requests beyond which the handler stops asking for reads.
  static let queuedRequestsMax = 16

  private let api: HTTPAPI
  /// Requests read, not yet started; the first starts when the one in flight is answered.
  private var queued = CircularBuffer<NIOHTTPServerRequestFull>()
  /// A request is being carried out (its answer is not written yet).
  private var busy = false
  /// A read was held back while the queue was full.
  private var readHeld = false
  /// The connection is closing (a request said `Connection: close`, or it broke).
  private var closing = false

  @_spi(Testing) public init(api: HTTPAPI) { self.api = api }

  /// Sets up the HTTP/1.1 server pipeline of the API on a new connection: NIO's codec (without
  /// its pipelining handler: this handler orders the requests) and error handling (400 for bytes
  /// that do not parse), the aggregator (413 beyond `maxBodyBytes`), and the handler.
  @_spi(Testing) public static func configure(
    _ pipeline: ChannelPipeline.SynchronousOperations, api: HTTPAPI, maxBodyBytes: Int
  ) throws {
    try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
    try pipeline.addHandlers(NIOHTTPServerRequestAggregator(maxContentLength: maxBodyBytes), HTTPHandler(api: api))
  }

  /// A request NIO could not parse (answered 400 by its error handler) or a broken connection:
  /// close it.
  public func errorCaught(context: ChannelHandlerContext, error: any Error) {
    closing = true
    queued.removeAll()
    context.close(promise: nil)
  }

  public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !closing else { return }
    queued.append(unwrapInboundIn(data))
    if !busy { startNext(context: context) }
  }

  public func read(context: ChannelHandlerContext) {
    if queued.count >= Self.queuedRequestsMax {
      readHeld = true
    } else {
      context.read()
    }
  }

  /// Carries out the oldest queued request; its answer is written on this event loop.
  private func startNext(context: ChannelHandlerContext) {
    guard !closing, let request = queued.popFirst() else { return }
    busy = true
    if readHeld && queued.count < Self.queuedRequestsMax {
      readHeld = false
      context.read()
    }
    let keepAlive = request.head.isKeepAlive
    let version = request.head.version
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let loop = context.eventLoop
    api.handle(request) { answer in
      loop.execute {
        let (handler, context) = bound.value
        handler.answered(answer, version: version, keepAlive: keepAlive, context: context)
      }
    }
  }

  private func answered(_ answer: HTTPAnswer, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
    busy = false
    guard !closing else { return }
    var headers = HTTPHeaders(answer.headers)
    headers.replaceOrAdd(name: "Content-Length", value: String(answer.body.count))
    if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
    let head = HTTPResponseHead(version: version, status: answer.status, headers: headers)
    context.write(wrapOutboundOut(.head(head)), promise: nil)
    if !answer.body.isEmpty {
      context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: answer.body)))), promise: nil)
    }
    if keepAlive {
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
      startNext(context: context)
    } else {
      closing = true
      queued.removeAll()
      context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
        context.close(promise: nil)
      }
    }
  }
}
