/// Where a peer listens: a host and a port, written as a URL (`http://127.0.0.1:12379`, as
/// raftexample's `--cluster` has them; `https://` for a member that speaks TLS) or as
/// `host:port`.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
  public var host: String
  public var port: Int
  /// Written `https://`: the member speaks TLS (`TCPTransportOptions.tls`).
  public var secure: Bool

  public init(host: String, port: Int, secure: Bool = false) {
    self.host = host
    self.port = port
    self.secure = secure
  }

  /// Parses `http://HOST:PORT`, `https://HOST:PORT`, `tcp://HOST:PORT` or `HOST:PORT` (IPv6
  /// hosts in brackets); a trailing `/` is allowed. Throws `PeerAddressError` naming what is
  /// wrong.
  public init(parsing text: String) throws(PeerAddressError) {
    var rest = Substring(text)
    var secure = false
    if let scheme = rest.firstRange(of: "://") {
      let name = rest[..<scheme.lowerBound]
      guard name == "http" || name == "https" || name == "tcp" else {
        throw PeerAddressError(text: text, reason: "scheme must be http, https or tcp")
      }
      secure = name == "https"
      rest = rest[scheme.upperBound...]
    }
    if rest.hasSuffix("/") { rest = rest.dropLast() }
    let host: Substring
    let portText: Substring
    if rest.hasPrefix("[") {
      guard let close = rest.firstIndex(of: "]"), rest[rest.index(after: close)...].hasPrefix(":") else {
        throw PeerAddressError(text: text, reason: "expected [IPV6]:PORT")
      }
      host = rest[rest.index(after: rest.startIndex)..<close]
      portText = rest[rest.index(close, offsetBy: 2)...]
    } else {
      guard let colon = rest.lastIndex(of: ":") else { throw PeerAddressError(text: text, reason: "no port") }
      host = rest[..<colon]
      portText = rest[rest.index(after: colon)...]
    }
    guard !host.isEmpty, !host.contains("/") else { throw PeerAddressError(text: text, reason: "no host") }
    guard let port = Int(portText), (1...65535).contains(port) else {
      throw PeerAddressError(text: text, reason: "port must be a number from 1 to 65535")
    }
    self.host = String(host)
    self.port = port
    self.secure = secure
  }

  /// `http://HOST:PORT` (`https://` when secure).
  public var description: String {
    let scheme = secure ? "https" : "http"
    return host.contains(":") ? "\(scheme)://[\(host)]:\(port)" : "\(scheme)://\(host):\(port)"
  }
}

/// A peer address that does not parse.
public struct PeerAddressError: Error, Equatable, CustomStringConvertible {
  public var text: String
  public var reason: String
  public var description: String { "bad peer address \"\(text)\": \(reason)" }
}

/// The transport's limits and timings.
public struct TCPTransportOptions: Sendable {
  /// The largest frame sent or accepted, in bytes: one message larger than this is dropped (with
  /// a log line and ReportUnreachable), an incoming frame larger than this closes the connection.
  public var frameBytesMax = 64 << 20
  /// A batch of messages to one peer is cut into frames of about this many bytes.
  public var frameBytesTarget = 1 << 20
  /// Messages waiting to be written to one peer, at most; beyond it (or `queueBytesMax`) new
  /// messages are dropped and the peer is reported unreachable. The run loop never waits.
  public var queueMessagesMax = 4096
  /// Bytes of messages waiting to be written to one peer, at most.
  public var queueBytesMax = 64 << 20
  /// Bytes of snapshot data per chunk frame.
  public var snapshotChunkBytes = 1 << 20
  /// The largest snapshot accepted from a peer, in bytes.
  public var snapshotBytesMax = 1 << 30
  /// How long a connection attempt may take, in milliseconds.
  public var connectTimeoutMilliseconds = 1_000
  /// The first and the longest wait before reconnecting to a peer, in milliseconds (doubling in
  /// between, with jitter).
  public var reconnectBackoffMinMilliseconds = 50
  public var reconnectBackoffMaxMilliseconds = 2_000
  /// A connection takes no new writes once this many bytes wait in its socket buffer (the
  /// messages queue instead, up to `queueBytesMax`).
  public var writeBufferHighWatermarkBytes = 1 << 20
  /// TLS between members (nil: plain TCP, where anyone who reaches the port can say hello as
  /// any member).
  public var tls: MemberTLS?

  public init() {}

  /// Checks that every limit is positive and consistent; the error names the field.
  public func validate() throws(TransportOptionError) {
    func check(_ ok: Bool, _ what: String) throws(TransportOptionError) {
      if !ok { throw TransportOptionError(message: what) }
    }
    try check(frameBytesMax >= 1 << 10, "frameBytesMax must be at least 1024")
    try check(
      frameBytesTarget > 0 && frameBytesTarget <= frameBytesMax, "frameBytesTarget must be in 1...frameBytesMax")
    try check(queueMessagesMax > 0, "queueMessagesMax must be positive")
    try check(queueBytesMax > 0, "queueBytesMax must be positive")
    try check(
      snapshotChunkBytes > 0 && snapshotChunkBytes + 64 <= frameBytesMax,
      "snapshotChunkBytes must be positive and fit in a frame")
    try check(snapshotBytesMax > 0, "snapshotBytesMax must be positive")
    try check(connectTimeoutMilliseconds > 0, "connectTimeoutMilliseconds must be positive")
    try check(
      reconnectBackoffMinMilliseconds > 0 && reconnectBackoffMinMilliseconds <= reconnectBackoffMaxMilliseconds,
      "reconnect backoff must be positive, min <= max")
    try check(writeBufferHighWatermarkBytes > 0, "writeBufferHighWatermarkBytes must be positive")
  }
}

/// A `TCPTransportOptions` value out of range.
public struct TransportOptionError: Error, Equatable, CustomStringConvertible {
  public var message: String
  public var description: String { "transport options: \(message)" }
}
