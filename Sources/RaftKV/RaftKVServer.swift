import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Raft
import RaftEngine
import RaftTransport
import Synchronization

/// How a `RaftKVServer` runs.
public struct RaftKVConfiguration: Sendable {
  /// This member's id (non-zero).
  public var id: UInt64
  /// The members' raft addresses by id, as raftexample's `--cluster` gives them (the k-th URL is
  /// member k). A new cluster is made of all of them; a joining member uses them to reach the
  /// others (membership then follows the applied conf changes).
  public var cluster: [UInt64: PeerAddress]
  /// This member joins a running cluster (it was added with `POST /members/ID`): it does not
  /// bootstrap, and learns the log from the leader.
  public var join = false
  /// Where the HTTP API listens (port 0: any free port, see `httpPort`).
  public var httpHost = "127.0.0.1"
  public var httpPort = 0
  /// The engine: WAL directory, Ready handling, batching, snapshots (`snapshotEntries`).
  public var node: NodeConfiguration
  public var transport = TCPTransportOptions()
  /// The longest key (bytes, after percent-decoding) and value accepted (400 beyond).
  public var maxKeyBytes = 4096
  public var maxValueBytes = 1 << 20
  /// The largest HTTP request body read at all (413 beyond, without reading it).
  public var maxBodyBytes = 4 << 20
  /// The request bodies in flight (admitted, not yet answered) hold at most this many bytes:
  /// beyond it, requests are answered 503 with `Retry-After` before they reach the engine.
  public var maxRequestBytesInFlight = 64 << 20
  /// How long a request waits for its entry to be applied (or its read index).
  public var requestTimeoutSeconds = 5.0
  /// TLS for the HTTP API (nil: plain HTTP); with `clientCertAuth`, a client must present a
  /// certificate from the trusted CA.
  public var httpTLS: MemberTLS?
  public var logger = Logger(label: "raftkv")

  /// A configuration for member `id` of `cluster`, keeping its WAL in `dataDirectory`.
  public init(id: UInt64, cluster: [UInt64: PeerAddress], dataDirectory: String) {
    self.id = id
    self.cluster = cluster
    node = NodeConfiguration(id: id, peers: cluster.keys.sorted(), directory: dataDirectory)
    // A peer's snapshot must decode before the node takes it: restoring from one that does
    // not would stop this member.
    node.snapshotDataCheck = { data in
      do {
        _ = try KVStore.decodeSnapshot(data)
        return nil
      } catch {
        return "\(error)"
      }
    }
  }
}

/// One member of a replicated key-value store: the port of etcd's raftexample, with writes
/// answered only once committed and applied.
///
/// It runs a `Node` (the engine), a `TCPTransport` to the other members, the `KVStore` state
/// machine (snapshotted every `node.snapshotEntries` applied entries, the log compacted behind),
/// and the HTTP API (`HTTPAPI`).
public final class RaftKVServer: KVService, Sendable {
  public let configuration: RaftKVConfiguration
  /// The swift-metrics values of this member (engine, transport and HTTP), as `GET /metrics`
  /// renders them.
  public let metrics: PrometheusMetrics
  let node: Node
  let store: KVStore
  let transport: TCPTransport
  private let group: any EventLoopGroup
  private let logger: Logger
  private let httpChannel = Mutex<(any Channel)?>(nil)
  private let requestIDs: Atomic<UInt64>
  /// Called once when this member is removed.
  private let removed: RemovalHook
  private let stopped = Atomic<Bool>(false)
  /// `configuration.requestTimeoutSeconds`.
  private let requestTimeoutNanoseconds: UInt64
  /// The repeating task that fails the writes past their deadline (`KVStore.failExpired`).
  private let deadlineSweep = Mutex<RepeatedTask?>(nil)
  /// The HTTP requests in flight (closed by `shutDownGracefully`).
  private let gate: RequestGate

  /// Opens the member's WAL (recovering its state) and prepares the transport and the HTTP
  /// server; `start()` runs them. `onRemoved` is called (once, on an engine thread) when a conf
  /// change removed this member: raftexample's cue to shut down. `onFailed` is called (once,
  /// on an engine thread) when the node stopped on a storage failure or a broken invariant:
  /// the member answers nothing more, and the caller should exit non-zero (fail-stop, as etcd).
  public init(
    configuration: RaftKVConfiguration, group: any EventLoopGroup, onRemoved: (@Sendable () -> Void)? = nil,
    onFailed: (@Sendable (EngineError) -> Void)? = nil
  ) throws {
    precondition(configuration.cluster[configuration.id] != nil, "the cluster must list this member")
    self.configuration = configuration
    self.group = group
    logger = configuration.logger
    let metrics = PrometheusMetrics()
    self.metrics = metrics
    let removed = RemovalHook(onRemoved)
    self.removed = removed
    // Request ids: this member's id in the top 16 bits, a per-process random start below, so
    // that ids differ across members and across restarts.
    requestIDs = Atomic(configuration.id << 48 | UInt64.random(in: 0..<(1 << 40)))
    gate = RequestGate(bytesInFlightMax: configuration.maxRequestBytesInFlight)
    requestTimeoutNanoseconds = UInt64(configuration.requestTimeoutSeconds * 1e9)
    let transport = try TCPTransport(
      id: configuration.id, listenAddress: configuration.cluster[configuration.id]!, options: configuration.transport,
      group: group, logger: configuration.logger)
    self.transport = transport
    var members: [UInt64: String] = [:]
    for (id, address) in configuration.cluster { members[id] = "\(address)" }
    let localID = configuration.id
    let logger = configuration.logger
    store = KVStore(
      localID: configuration.id, initialMembers: members, logger: configuration.logger,
      membersChanged: { members in
        Self.updatePeers(transport, members, localID: localID, logger: logger)
      },
      removedSelf: {
        logger.warning("this member was removed from the cluster; shutting down")
        removed.fire()
      })
    var nodeConfiguration = configuration.node
    nodeConfiguration.peers = configuration.join ? [] : configuration.cluster.keys.sorted()
    nodeConfiguration.logger = configuration.logger
    nodeConfiguration.metricsFactory = metrics
    nodeConfiguration.onFailure = onFailed
    // A proposal forwarded to a leader that drops it (overloaded: the uncommitted-bytes limit;
    // or transferring leadership) comes back as its entries' heads, which hold the request id:
    // the request fails at once (503 with Retry-After), not at its deadline.
    nodeConfiguration.forwardTagBytes = KVCommand.headBytesMax
    let store = self.store
    nodeConfiguration.onForwardDropped = { heads in
      for head in heads {
        if let requestID = KVCommand.requestID(inHead: head) { store.fail(requestID, .engine(.dropped)) }
      }
    }
    node = try Node(configuration: nodeConfiguration, stateMachine: store, transport: transport)
    Self.updatePeers(transport, store.members, localID: localID, logger: logger)
  }

  /// Starts the transport, the node and the HTTP server.
  public func start() throws {
    try transport.start(delegate: TransportDelegate(node: node))
    node.start()
    let api = HTTPAPI(server: self, gate: gate)
    let maxBody = configuration.maxBodyBytes
    let tls = configuration.httpTLS
    let channel = try ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let pipeline = channel.pipeline.syncOperations
          if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls.serverContext)) }
          try HTTPHandler.configure(pipeline, api: api, maxBodyBytes: maxBody)
        }
      }
      .bind(host: configuration.httpHost, port: configuration.httpPort).wait()
    httpChannel.withLock { $0 = channel }
    // A write answers `.timedOut` at most one sweep interval after its deadline.
    let sweepNanoseconds = min(max(requestTimeoutNanoseconds / 20, 1_000_000), 50_000_000)
    let store = self.store
    let sweep = group.next().scheduleRepeatedTask(
      initialDelay: .nanoseconds(Int64(sweepNanoseconds)), delay: .nanoseconds(Int64(sweepNanoseconds))
    ) { _ in store.failExpired(nowNanoseconds: NIODeadline.now().uptimeNanoseconds) }
    deadlineSweep.withLock { $0 = sweep }
    logger.info(
      "raftkv serving",
      metadata: [
        "http": "\(channel.localAddress.map { "\($0)" } ?? "?")", "raft": "\(configuration.cluster[configuration.id]!)",
        "mode": "\(configuration.node.readyHandling)",
      ])
  }

  /// Why the node stopped on its own (nil: it did not).
  public var nodeFailure: EngineError? { node.failure }

  /// The HTTP port (after `start`).
  public var httpPort: Int? { httpChannel.withLock { $0?.localAddress?.port } }

  /// A graceful stop (SIGTERM, SIGINT): takes no new request (503 "shutting down"; the
  /// listener stays open meanwhile, so that a connection already made gets that answer rather
  /// than a reset), waits up to `drainSeconds` for the requests in flight to be answered, then
  /// `stop()`s: the listener closes, the node syncs and closes its WAL. Returns how many
  /// requests were still in flight when the wait ended (0: all answered).
  @discardableResult
  public func shutDownGracefully(drainSeconds: Double = 10) -> Int {
    let left = gate.drain(seconds: drainSeconds)
    if left > 0 { logger.warning("shutting down with requests still in flight", metadata: ["requests": "\(left)"]) }
    stop()
    return left
  }

  /// Stops serving (the listener closes; a request on a connection still open is answered 503
  /// "shutting down", reads too: the store stops following the log), then the node
  /// (everything acknowledged is durable), then the transport.
  public func stop() {
    guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
    gate.close()
    let channel = httpChannel.withLock { $0 }
    try? channel?.close().wait()
    deadlineSweep.withLock { $0 }?.cancel()
    node.stop()
    store.failAll()
    transport.shutdown()
  }

  /// Keeps the transport's peers equal to the members (less this one).
  private static func updatePeers(
    _ transport: TCPTransport, _ members: [UInt64: String], localID: UInt64, logger: Logger
  ) {
    let current = transport.peers
    for (id, url) in members where id != localID {
      do {
        let address = try PeerAddress(parsing: url)
        if current[id] != address { transport.addPeer(id, address: address) }
      } catch {
        logger.error("member with an unusable address", metadata: ["member": "\(id)", "error": "\(error)"])
      }
    }
    for id in current.keys where members[id] == nil { transport.removePeer(id) }
  }

  private func nextRequestID() -> UInt64 { requestIDs.add(1, ordering: .relaxed).newValue }

  // MARK: Operations (any thread; `done` runs on an engine or event loop thread)

  public typealias Done = @Sendable (Result<UInt64, KVError>) -> Void

  /// Writes `value` at `key`; `done` gets the entry's index once it is applied here.
  public func put(_ key: [UInt8], _ value: [UInt8], done: @escaping Done) {
    let id = nextRequestID()
    submit(.data(KVCommand(op: .put, requestID: id, key: key, value: value).encoded()), requestID: id, done: done)
  }

  /// Deletes `key`; `done` gets the entry's index once it is applied here.
  public func delete(_ key: [UInt8], done: @escaping Done) {
    let id = nextRequestID()
    submit(.data(KVCommand(op: .delete, requestID: id, key: key).encoded()), requestID: id, done: done)
  }

  /// Adds member `memberID` reachable at `url` (a voter); `done` once this member's Raft has the
  /// new configuration (so that the next change is not refused as one still pending).
  public func addMember(_ memberID: UInt64, url: String, done: @escaping Done) {
    let id = nextRequestID()
    let cc = ConfChange(
      type: .addNode, nodeID: memberID, context: MemberContext(requestID: id, url: url).encoded())
    submit(.confChange(.v1(cc)), requestID: id, done: whenConfigured(memberID, present: true, done))
  }

  /// Removes member `memberID`; `done` once this member's Raft has the new configuration.
  public func removeMember(_ memberID: UInt64, done: @escaping Done) {
    let id = nextRequestID()
    let cc = ConfChange(type: .removeNode, nodeID: memberID, context: MemberContext(requestID: id, url: "").encoded())
    submit(.confChange(.v1(cc)), requestID: id, done: whenConfigured(memberID, present: false, done))
  }

  /// Wraps `done` so that a success waits until the run loop's configuration has (or, for a
  /// removal, no longer has) `memberID`: the apply side sees a conf change before the run loop
  /// applies it.
  private func whenConfigured(_ memberID: UInt64, present: Bool, _ done: @escaping Done) -> Done {
    let (node, loop) = (self.node, group.next())
    return { result in
      guard case .success(let index) = result else { return done(result) }
      @Sendable func check(_ attempt: Int) {
        node.status { st in
          let members = st.config.voters.ids.union(st.config.learners)
          if members.contains(memberID) == present || attempt >= 1_000 || node.id == memberID {
            done(.success(index))
          } else {
            loop.scheduleTask(in: .milliseconds(1)) { check(attempt + 1) }
          }
        }
      }
      check(0)
    }
  }

  /// Proposes through the leader: on the leader with the engine's tracking (a lost proposal
  /// fails at once), on a follower by Raft's forwarding (the entry's request id completes it);
  /// either way `done` runs when the entry is applied here, or on failure, or at the deadline.
  private func submit(_ proposal: Node.ForwardedProposal, requestID: UInt64, done: @escaping Done) {
    guard let leader = node.leader else { return done(.failure(.noLeader)) }
    let deadline = NIODeadline.now().uptimeNanoseconds &+ requestTimeoutNanoseconds
    store.expect(requestID, deadlineNanoseconds: deadline, done)
    let store = self.store
    let failed: @Sendable (EngineError) -> Void = { error in
      store.fail(requestID, error == .notLeader(leader: nil) ? .noLeader : .engine(error))
    }
    let node = self.node
    let forward: @Sendable () -> Void = {
      node.forward(proposal) { error in
        if let error { failed(error == .dropped ? .notLeader(leader: nil) : error) }
      }
    }
    if leader == node.id {
      let engineDone: Node.Completion = { result in
        // Success is reported by the store when the entry is applied; failures end it here,
        // except that a leadership lost on the way sends the proposal to the new leader.
        switch result {
        case .success: break
        case .failure(.notLeader(leader: _?)): forward()
        case .failure(let error): failed(error)
        }
      }
      switch proposal {
      case .data(let data): node.propose(data, completion: engineDone)
      case .confChange(let cc): node.proposeConfChange(cc, completion: engineDone)
      }
    } else {
      forward()
    }
  }

  /// Reads `key` here; with `linearizable`, only after a ReadIndex round confirmed the commit
  /// index with a quorum and this member applied it.
  public func get(_ key: [UInt8], linearizable: Bool, done: @escaping @Sendable (Result<[UInt8]?, KVError>) -> Void) {
    guard linearizable else { return done(.success(store.value(of: key))) }
    guard node.leader != nil else { return done(.failure(.noLeader)) }
    let once = OnceDone { (r: Result<UInt64, KVError>) in done(r.map { _ in self.store.value(of: key) }) }
    // On the caller's event loop when it is one: no wake-up of another thread.
    let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? group.next()
    let timeout = loop.scheduleTask(in: .nanoseconds(Int64(requestTimeoutNanoseconds))) {
      once.call(.failure(.timedOut))
    }
    once.onDone { timeout.cancel() }
    let context = withUnsafeBytes(of: nextRequestID().bigEndian) { Array($0) }
    let node = self.node
    once.onDone { node.cancelReadIndex(context: context) }
    node.readIndex(context: context) { [store] result in
      switch result {
      case .success(let index): store.whenApplied(index) { once.call($0) }
      case .failure(let error): once.call(.failure(.engine(error)))
      }
    }
  }

  public func status(_ done: @escaping @Sendable (KVStatusReport) -> Void) {
    let (store, transport, storage, mode) = (self.store, self.transport, node.storage, configuration.node.readyHandling)
    node.status { st in
      var progress: [String: KVStatusReport.PeerProgress] = [:]
      for (id, p) in st.progress {
        progress[String(id)] = KVStatusReport.PeerProgress(match: p.match, next: p.next, state: "\(p.state)")
      }
      let lead = st.basic.softState.lead
      done(
        KVStatusReport(
          id: st.basic.id, state: "\(st.basic.softState.raftState)", term: st.basic.hardState.term,
          leader: lead == noNode ? nil : lead, commit: st.basic.hardState.commit,
          applied: store.applied.load(ordering: .acquiring), progress: progress,
          members: Dictionary(uniqueKeysWithValues: store.members.map { (String($0.key), $0.value) }),
          connectedPeers: transport.connectedPeers.sorted(), keys: store.keyCount,
          restoredSnapshots: store.restoredSnapshots,
          snapshotIndex: (try? storage.snapshot().metadata.index) ?? 0, firstIndex: (try? storage.firstIndex()) ?? 0,
          lastIndex: (try? storage.lastIndex()) ?? 0, readyHandling: "\(mode)"))
    }
  }

  public var limits: KVLimits {
    KVLimits(maxKeyBytes: configuration.maxKeyBytes, maxValueBytes: configuration.maxValueBytes)
  }

  public var members: [UInt64: String] { store.members }

  /// The leader's raft address, when one is known.
  public var leaderAddress: (id: UInt64, url: String?)? {
    guard let leader = node.leader else { return nil }
    return (leader, store.members[leader])
  }
}

/// A member's state, as `GET /status` shows it.
public struct KVStatusReport: Codable, Sendable {
  /// The leader's view of one member's log.
  public struct PeerProgress: Codable, Sendable {
    public var match: UInt64
    public var next: UInt64
    /// `StateProbe`, `StateReplicate` or `StateSnapshot`.
    public var state: String
  }
  public var id: UInt64
  /// `StateFollower`, `StateCandidate`, `StatePreCandidate` or `StateLeader`.
  public var state: String
  public var term: UInt64
  public var leader: UInt64?
  public var commit: UInt64
  public var applied: UInt64
  public var progress: [String: PeerProgress]
  public var members: [String: String]
  public var connectedPeers: [UInt64]
  public var keys: Int
  public var restoredSnapshots: Int
  public var snapshotIndex: UInt64
  public var firstIndex: UInt64
  public var lastIndex: UInt64
  public var readyHandling: String

  public init(
    id: UInt64, state: String, term: UInt64, leader: UInt64?, commit: UInt64, applied: UInt64,
    progress: [String: PeerProgress], members: [String: String], connectedPeers: [UInt64], keys: Int,
    restoredSnapshots: Int, snapshotIndex: UInt64, firstIndex: UInt64, lastIndex: UInt64, readyHandling: String
  ) {
    self.id = id
    self.state = state
    self.term = term
    self.leader = leader
    self.commit = commit
    self.applied = applied
    self.progress = progress
    self.members = members
    self.connectedPeers = connectedPeers
    self.keys = keys
    self.restoredSnapshots = restoredSnapshots
    self.snapshotIndex = snapshotIndex
    self.firstIndex = firstIndex
    self.lastIndex = lastIndex
    self.readyHandling = readyHandling
  }
}

/// Runs a hook at most once.
final class RemovalHook: Sendable {
  private let hook: Mutex<(@Sendable () -> Void)?>
  init(_ hook: (@Sendable () -> Void)?) { self.hook = Mutex(hook) }
  func fire() {
    hook.withLock { h in
      defer { h = nil }
      return h
    }?()
  }
}

/// Calls a completion at most once, then its cleanups.
final class OnceDone: Sendable {
  private let state: Mutex<(done: RaftKVServer.Done?, cleanups: [@Sendable () -> Void])>

  init(_ done: @escaping RaftKVServer.Done) { state = Mutex((done, [])) }

  func onDone(_ cleanup: @escaping @Sendable () -> Void) {
    let now = state.withLock { s -> Bool in
      if s.done == nil { return true }
      s.cleanups.append(cleanup)
      return false
    }
    if now { cleanup() }
  }

  func call(_ result: Result<UInt64, KVError>) {
    let (done, cleanups) = state.withLock { s in
      defer { s = (nil, []) }
      return s
    }
    guard let done else { return }
    done(result)
    for c in cleanups { c() }
  }
}
