import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Raft
import RaftEngine
import Synchronization

/// Raft messages between processes over TCP (SwiftNIO).
///
/// Each node listens on its own address and dials one connection to each peer, over which its
/// messages to that peer go in order: batches of messages in length-prefixed, versioned frames
/// (see `FrameKind`), and snapshots as streams of chunks, each acknowledged by the receiver
/// before the sender reports `SnapshotStatus.finish` (a lost connection reports `.failure`).
///
/// `send` never blocks: messages go into a bounded queue per peer; when the queue is full, or
/// the peer is not connected, they are dropped and the peer is reported unreachable (Raft
/// resends). Lost connections are redialled with exponential backoff. Peers can be added and
/// removed while running; a connection from a node that is not a peer, or was removed, is
/// refused. Bytes that do not parse close the connection with a log line.
public final class TCPTransport: Transport, @unchecked Sendable {
  /// This node's id.
  public let id: UInt64
  public let options: TCPTransportOptions
  private let listenAddress: PeerAddress
  private let group: any EventLoopGroup
  private let logger: Logger
  private let state = Mutex(State())

  private struct State {
    /// Set by `start`; connections exist only from then on.
    var delegate: TransportDelegate?
    var addresses: [UInt64: PeerAddress] = [:]
    /// Invariant: once started, one connection per address.
    var peers: [UInt64: PeerConnection] = [:]
    var listener: (any Channel)?
    /// Peers removed (their connections are refused) until added again.
    var removed: Set<UInt64> = []
    /// The accepted connections (closed by `shutdown`), and the peer each said it is (once its
    /// hello was accepted).
    var inbound: [ObjectIdentifier: (channel: any Channel, peer: UInt64?)] = [:]
    var stopped = false
  }

  /// A transport for node `id` that will listen on `listenAddress` (port 0: any free port, see
  /// `localPort`), running on `group`.
  public init(
    id: UInt64, listenAddress: PeerAddress, options: TCPTransportOptions = TCPTransportOptions(),
    group: any EventLoopGroup, logger: Logger = Logger(label: "swift-raft.transport")
  ) throws(TransportOptionError) {
    precondition(id != noNode, "a node id must not be 0")
    try options.validate()
    self.id = id
    self.listenAddress = listenAddress
    self.options = options
    self.group = group
    var logger = logger
    logger[metadataKey: "node"] = "\(id)"
    self.logger = logger
  }

  /// Starts listening, and dialling the peers added so far; incoming messages and the reports
  /// go to `delegate`. Throws when the address cannot be bound.
  public func start(delegate: TransportDelegate) throws {
    state.withLock { s in
      precondition(s.delegate == nil, "TCPTransport.start called twice")
      s.delegate = delegate
    }
    let (localID, options, logger) = (id, self.options, self.logger)
    let listener = try ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { [self] channel in
        let key = ObjectIdentifier(channel)
        let open = state.withLock { s in
          guard !s.stopped else { return false }
          s.inbound[key] = (channel, nil)
          return true
        }
        guard open else { return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        channel.closeFuture.whenComplete { _ in _ = self.state.withLock { $0.inbound.removeValue(forKey: key) } }
        return channel.eventLoop.makeCompletedFuture {
          if let tls = options.tls {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.serverContext))
          }
          try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(FrameDecoder(frameBytesMax: options.frameBytesMax)),
            InboundConnectionHandler(
              localID: localID, options: options, delegate: delegate, logger: logger,
              isRemoved: { [weak self] id in self?.state.withLock { $0.removed.contains(id) } ?? true },
              isKnown: { [weak self] id in self?.state.withLock { $0.addresses[id] != nil } ?? false },
              identified: { [weak self] id in self?.state.withLock { $0.inbound[key]?.peer = id } }))
        }
      }
      .bind(host: listenAddress.host, port: listenAddress.port).wait()
    let connections = state.withLock { s in
      s.listener = listener
      for (peerID, address) in s.addresses { s.peers[peerID] = makeConnection(peerID, address, delegate) }
      return Array(s.peers.values)
    }
    for c in connections { c.start() }
    logger.info(
      "transport listening",
      metadata: [
        "address": "\(listener.localAddress.map { "\($0)" } ?? "?")",
        "tls": "\(options.tls == nil ? "off" : options.tls!.clientCertAuth ? "mutual" : "server only")",
      ])
    if options.tls?.clientCertAuth != true {
      logger.warning(
        "peers are unauthenticated: anyone who reaches the raft port can speak as a member (use --peer-client-cert-auth with TLS)"
      )
    }
  }

  /// The port the transport listens on (after `start`).
  public var localPort: Int? { state.withLock { $0.listener?.localAddress?.port } }

  /// Adds (or re-addresses) peer `peerID`; its connection is dialled at once when started.
  public func addPeer(_ peerID: UInt64, address: PeerAddress) {
    guard peerID != id else { return }
    let (changed, old, new): (Bool, PeerConnection?, PeerConnection?) = state.withLock { s in
      guard !s.stopped, s.addresses[peerID] != address else { return (false, nil, nil) }
      s.addresses[peerID] = address
      s.removed.remove(peerID)
      guard let delegate = s.delegate else { return (true, nil, nil) }
      let connection = makeConnection(peerID, address, delegate)
      return (true, s.peers.updateValue(connection, forKey: peerID), connection)
    }
    guard changed else { return }
    logger.info("peer added", metadata: ["peer": "\(peerID)", "address": "\(address)"])
    _ = old?.close()
    new?.start()
  }

  private func makeConnection(_ peerID: UInt64, _ address: PeerAddress, _ delegate: TransportDelegate) -> PeerConnection
  {
    PeerConnection(
      peerID: peerID, address: address, localID: id, eventLoop: group.next(), options: options, delegate: delegate,
      logger: logger)
  }

  /// Removes peer `peerID` (a member removed from the cluster): closes the connection to it,
  /// and refuses its messages from then on, until it is added again.
  public func removePeer(_ peerID: UInt64) {
    let (known, old) = state.withLock { s in
      s.removed.insert(peerID)
      return (s.addresses.removeValue(forKey: peerID) != nil, s.peers.removeValue(forKey: peerID))
    }
    if known { logger.info("peer removed", metadata: ["peer": "\(peerID)"]) }
    _ = old?.close()
  }

  /// The peers and their addresses.
  public var peers: [UInt64: PeerAddress] {
    state.withLock { $0.addresses }
  }

  /// The peers with a connection up.
  public var connectedPeers: Set<UInt64> {
    Set(state.withLock { s in s.peers.values.filter(\.isConnected).map(\.peerID) })
  }

  /// Queues each message for its peer (never waits). Dropped messages report the peer
  /// unreachable, and a dropped MsgSnap reports the snapshot failed.
  public func send(_ messages: [Message]) {
    guard !messages.isEmpty else { return }
    // Group by peer, keeping each peer's order (a Ready addresses a handful of peers).
    var byPeer: [(UInt64, [Message])] = []
    for m in messages {
      if let k = byPeer.firstIndex(where: { $0.0 == m.to }) {
        byPeer[k].1.append(m)
      } else {
        byPeer.append((m.to, [m]))
      }
    }
    let (connections, delegate) = state.withLock { s in (byPeer.map { s.peers[$0.0] }, s.delegate) }
    guard let delegate else { return }
    for (k, (peerID, batch)) in byPeer.enumerated() {
      guard let connection = connections[k] else {
        logger.debug("message to an unknown peer dropped", metadata: ["peer": "\(peerID)"])
        continue
      }
      if !connection.enqueue(batch) {
        for m in batch where m.type == .msgSnap { delegate.reportSnapshot(peerID, .failure) }
        delegate.reportUnreachable(peerID)
      }
    }
  }

  /// Queues the forwarded proposal for its leader; false (and nothing reported: the caller goes
  /// through Raft instead) when the peer is unknown, not connected or its queue is full.
  public func forward(_ proposal: Message) -> Bool {
    guard let connection = state.withLock({ s in s.delegate == nil ? nil : s.peers[proposal.to] }) else { return false }
    return connection.enqueue([proposal])
  }

  /// The accepted connections that said hello as `peer` (for tests).
  func inboundConnections(from peer: UInt64) -> Set<ObjectIdentifier> {
    state.withLock { s in Set(s.inbound.filter { $0.value.peer == peer }.keys) }
  }

  /// Closes the accepted connections from `peer` (the node refused one of its messages); an
  /// honest peer redials. Does not wait for them to close.
  public func disconnect(peer: UInt64) {
    let channels = state.withLock { s in s.inbound.values.filter { $0.peer == peer }.map(\.channel) }
    guard !channels.isEmpty else { return }
    logger.info("closing the connections from a peer", metadata: ["peer": "\(peer)", "count": "\(channels.count)"])
    for c in channels { c.close(promise: nil) }
  }

  /// Stops listening and closes every connection (waits for them to close).
  public func shutdown() {
    let (listener, peers, inbound) = state.withLock { s -> ((any Channel)?, [PeerConnection], [any Channel]) in
      s.stopped = true
      let peers = Array(s.peers.values)
      s.peers = [:]
      s.addresses = [:]
      return (s.listener, peers, s.inbound.values.map(\.channel))
    }
    try? listener?.close().wait()
    for c in inbound { try? c.close().wait() }
    for p in peers { try? p.close().wait() }
  }
}
