import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOPosix
import RaftEngine
import RaftEngineOptions
import RaftKV
import RaftTransport
import RaftWAL
import ServiceLifecycle

#if canImport(Glibc)
  import Glibc
#endif

/// `raftkv`: one member of a replicated key-value store with an HTTP API (etcd's raftexample,
/// answering writes once they are committed and applied).
@main
struct RaftKVCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "raftkv",
    abstract: "A member of a Raft-replicated key-value store with an HTTP API.",
    discussion: """
      Start each member of a new cluster with the same --cluster list (member k is the k-th URL):
        raftkv --id 1 --cluster http://127.0.0.1:12379,http://127.0.0.1:22379,http://127.0.0.1:32379 --port 12380
      Add one: curl -X POST -d http://127.0.0.1:42379 http://127.0.0.1:12380/members/4, then
        raftkv --id 4 --cluster ...,http://127.0.0.1:42379 --port 42380 --join
      """)

  @Option(help: "This member's id (1 for the first URL of --cluster, and so on).")
  var id: UInt64
  @Option(help: "The members' raft URLs, comma-separated (http://HOST:PORT,...).")
  var cluster: String
  @Option(help: "The HTTP API port.")
  var port: Int
  @Option(help: "The address the HTTP API binds to.")
  var httpHost = "127.0.0.1"
  @Flag(help: "Join a running cluster (after POST /members/ID on it) instead of starting a new one.")
  var join = false
  @Option(help: "The WAL directory (default: raftkv-ID).")
  var dataDir: String?
  @Option(
    help:
      "Snapshot the store every this many applied entries and compact the log (0: never; etcd 3.4's --snapshot-count default)."
  )
  var snapshotEvery: UInt64 = 100_000
  @Option(help: "Entries kept behind a snapshot for slow followers.")
  var snapshotCatchupEntries: UInt64 = 5_000
  @Option(
    help:
      "Also snapshot once the entries applied since the last snapshot carry this many bytes of values (0: by count only)."
  )
  var snapshotEveryBytes: UInt64 = NodeConfiguration(id: 1, peers: [1], directory: "").snapshotBytes
  @Option(help: "Keep at most this many bytes of entries behind a snapshot (0: by count only).")
  var snapshotCatchupBytes: UInt64 = NodeConfiguration(id: 1, peers: [1], directory: "").compactionRetainBytes
  @Option(help: "How Ready is handled: sync (persist, send, apply, advance) or async (storage workers).")
  var readyHandling = NodeConfiguration.ReadyHandling.async
  @Option(help: "One Raft tick, in milliseconds (elections after 10 ticks, heartbeats every tick).")
  var tickMs = 10
  @Option(help: "The longest key accepted, in bytes after percent-decoding (400 beyond).")
  var maxKeyBytes = 4096
  @Option(help: "The largest value accepted, in bytes (400 beyond).")
  var maxValueBytes = 1 << 20
  @Option(help: "The largest request body read, in bytes (413 beyond).")
  var maxBodyBytes = 4 << 20
  @Option(help: "NIO event loop threads for HTTP and the peers' connections.")
  var eventLoops = 2
  @Option(help: "Request body bytes in flight at most (503 with Retry-After beyond).")
  var maxRequestBytesInFlight = 64 << 20
  @Option(help: "How long a request waits for its write to apply or its read index, in seconds.")
  var requestTimeout = 5.0
  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
  var logLevel = "info"
  @Option(help: "The certificate (PEM) this member presents to its peers (with https:// URLs in --cluster).")
  var peerCertFile: String?
  @Option(help: "The private key (PEM) of --peer-cert-file.")
  var peerKeyFile: String?
  @Option(help: "The CA (PEM) that issues the members' certificates.")
  var peerTrustedCaFile: String?
  @Flag(
    help:
      "Accept a peer only with a certificate from --peer-trusted-ca-file naming the member it speaks for (URI SAN raft://member/ID)."
  )
  var peerClientCertAuth = false
  @Option(help: "The certificate (PEM) of the HTTP API (HTTPS).")
  var certFile: String?
  @Option(help: "The private key (PEM) of --cert-file.")
  var keyFile: String?
  @Option(help: "The CA (PEM) that issues the clients' certificates.")
  var trustedCaFile: String?
  @Flag(help: "Accept an HTTP client only with a certificate from --trusted-ca-file.")
  var clientCertAuth = false
  @OptionGroup(title: "Engine, WAL and Raft")
  var knobs: EngineKnobs

  func validate() throws {
    let urls = try parsedCluster()
    guard id >= 1, urls[id] != nil else {
      throw ValidationError("--id \(id) is not a member of --cluster (ids are 1...\(urls.count))")
    }
    guard (1...65535).contains(port) else { throw ValidationError("--port must be from 1 to 65535") }
    guard (1...60_000).contains(tickMs) else { throw ValidationError("--tick-ms must be from 1 to 60000") }
    guard maxValueBytes > 0, maxValueBytes <= maxBodyBytes else {
      throw ValidationError("--max-value-bytes must be positive and at most --max-body-bytes")
    }
    guard maxKeyBytes > 0 else { throw ValidationError("--max-key-bytes must be positive") }
    do {
      try walOptions.validate()
    } catch {
      throw ValidationError("\(error) (records must hold a --max-value-bytes value: raise --segment-bytes)")
    }
    guard requestTimeout > 0 else { throw ValidationError("--request-timeout must be positive") }
    guard (1...64).contains(eventLoops) else { throw ValidationError("--event-loops must be from 1 to 64") }
    guard maxRequestBytesInFlight > 0 else { throw ValidationError("--max-request-bytes-in-flight must be positive") }
    guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level \(logLevel) is unknown") }
    let secure = urls.values.filter(\.secure).count
    guard secure == 0 || secure == urls.count else {
      throw ValidationError("--cluster mixes http:// and https:// URLs")
    }
    if secure > 0 {
      guard peerCertFile != nil, peerKeyFile != nil else {
        throw ValidationError("https:// URLs in --cluster need --peer-cert-file and --peer-key-file")
      }
    } else if peerCertFile != nil || peerKeyFile != nil || peerTrustedCaFile != nil || peerClientCertAuth {
      throw ValidationError(
        "--peer-cert-file, --peer-key-file, --peer-trusted-ca-file and --peer-client-cert-auth need https:// URLs in --cluster"
      )
    }
    if peerClientCertAuth && peerTrustedCaFile == nil {
      throw ValidationError("--peer-client-cert-auth needs --peer-trusted-ca-file")
    }
    guard (certFile == nil) == (keyFile == nil) else { throw ValidationError("--cert-file and --key-file go together") }
    if certFile == nil && (trustedCaFile != nil || clientCertAuth) {
      throw ValidationError("--trusted-ca-file and --client-cert-auth need --cert-file and --key-file")
    }
    if clientCertAuth && trustedCaFile == nil { throw ValidationError("--client-cert-auth needs --trusted-ca-file") }
  }

  /// The WAL's options: the knobs, with records large enough for a value and its request.
  private var walOptions: WALOptions {
    var o = knobs.walOptions(payload: maxValueBytes + maxBodyBytes / 64)
    o.recordBytesMax = max(o.recordBytesMax, maxValueBytes + 64 << 10)
    return o
  }

  private func parsedCluster() throws -> [UInt64: PeerAddress] {
    var out: [UInt64: PeerAddress] = [:]
    for (k, url) in cluster.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
      do {
        out[UInt64(k + 1)] = try PeerAddress(parsing: url.trimmingCharacters(in: .whitespaces))
      } catch {
        throw ValidationError("--cluster: \(error)")
      }
    }
    guard Set(out.values).count == out.count else { throw ValidationError("--cluster lists an address twice") }
    return out
  }

  func run() async throws {
    FileDescriptorLimit.raiseToHardLimit()  // one descriptor per client connection
    let level = Logger.Level(rawValue: logLevel)!
    LoggingSystem.bootstrap { label in
      var h = StreamLogHandler.standardError(label: label)
      h.logLevel = level
      return h
    }
    var logger = Logger(label: "raftkv")
    logger.logLevel = level
    var c = RaftKVConfiguration(id: id, cluster: try parsedCluster(), dataDirectory: dataDir ?? "raftkv-\(id)")
    c.join = join
    c.httpHost = httpHost
    c.httpPort = port
    c.maxKeyBytes = maxKeyBytes
    c.maxValueBytes = maxValueBytes
    c.maxBodyBytes = maxBodyBytes
    c.requestTimeoutSeconds = requestTimeout
    c.maxRequestBytesInFlight = maxRequestBytesInFlight
    c.logger = logger
    c.node.readyHandling = readyHandling
    c.node.snapshotEntries = snapshotEvery
    c.node.compactionRetainEntries = snapshotCatchupEntries
    c.node.snapshotBytes = snapshotEveryBytes
    c.node.compactionRetainBytes = snapshotCatchupBytes
    c.node.tickMicroseconds = tickMs * 1000
    knobs.configure(&c.node, payload: maxValueBytes + maxBodyBytes / 64)
    c.node.wal = walOptions
    c.transport.frameBytesMax = max(c.transport.frameBytesMax, 2 * maxValueBytes + (1 << 20))
    if knobs.fsync == .none { logger.warning("--fsync none: nothing is durable (for measurement only)") }
    do {
      if let peerCertFile, let peerKeyFile {
        c.transport.tls = try MemberTLS(
          certificateFile: peerCertFile, keyFile: peerKeyFile, trustedCAFile: peerTrustedCaFile,
          clientCertAuth: peerClientCertAuth)
      }
      if let certFile, let keyFile {
        c.httpTLS = try MemberTLS(
          certificateFile: certFile, keyFile: keyFile, trustedCAFile: trustedCaFile, clientCertAuth: clientCertAuth)
      }
    } catch {
      logger.critical("raftkv failed to start: \(error)")
      throw ExitCode(1)
    }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: eventLoops)
    let (stops, stop) = AsyncStream.makeStream(of: MemberStop.self)
    let server: RaftKVServer
    do {
      server = try RaftKVServer(
        configuration: c, group: group, onRemoved: { stop.yield(.removed) },
        onFailed: { error in stop.yield(.failed(error)) })
      try server.start()
    } catch {
      logger.critical("raftkv failed to start: \(error)")
      throw ExitCode(1)
    }
    // swift-service-lifecycle: SIGTERM and SIGINT start a graceful shutdown of the member.
    let member = RaftKVMember(server: server, stops: stops, stop: stop, logger: logger)
    let services = ServiceGroup(
      configuration: ServiceGroupConfiguration(
        services: [.init(service: member)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    do {
      try await services.run()
    } catch {
      try? await group.shutdownGracefully()
      // Fail-stop, as etcd: the cause is logged; a non-zero exit.
      throw ExitCode(2)
    }
    try? await group.shutdownGracefully()
  }
}

/// Why the member stops.
enum MemberStop: Sendable {
  /// SIGTERM or SIGINT: a graceful shutdown.
  case signal
  /// A conf change removed this member (raftexample's cue to shut down).
  case removed
  /// The node stopped on a storage failure or a broken invariant.
  case failed(EngineError)
}

/// The member as a swift-service-lifecycle service: runs until a shutdown signal, its removal
/// or a failure. A signal or a removal finishes the requests in flight, syncs and closes the
/// WAL, and ends normally (exit 0); a failure is logged and thrown (exit 2, fail-stop).
struct RaftKVMember: Service {
  let server: RaftKVServer
  let stops: AsyncStream<MemberStop>
  let stop: AsyncStream<MemberStop>.Continuation
  let logger: Logger

  struct Failed: Error, CustomStringConvertible {
    var error: EngineError
    var description: String { "the node failed: \(error)" }
  }

  func run() async throws {
    let stop = self.stop
    let reason = await withGracefulShutdownHandler {
      var first = MemberStop.signal
      for await r in stops {
        first = r
        break
      }
      return first
    } onGracefulShutdown: {
      stop.yield(.signal)
    }
    switch reason {
    case .failed(let error):
      logger.critical(
        "raftkv stopping: the node failed (\(error)); every write acknowledged before is durable. Check the data directory's disk, then restart the member."
      )
      server.stop()
      throw Failed(error: error)
    case .signal, .removed:
      logger.info("raftkv stopping: finishing the requests in flight, then syncing and closing the WAL")
      let server = self.server
      let left = await Task.detached { server.shutDownGracefully(drainSeconds: 10) }.value
      // A failure while draining is still fail-stop.
      if let error = server.nodeFailure {
        logger.critical("raftkv stopped: the node failed while shutting down (\(error))")
        throw Failed(error: error)
      }
      logger.info("raftkv stopped", metadata: ["unanswered": "\(left)"])
    }
  }
}
