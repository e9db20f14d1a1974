import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Raft
import RaftEngine
import Synchronization

/// What a transport tells its node: the messages that arrived, the peers it could not reach,
/// and how each snapshot it streamed ended (etcd's `ReportUnreachable` / `ReportSnapshot`).
public struct TransportDelegate: Sendable {
  public var deliver: MessageSink
  public var reportUnreachable: @Sendable (UInt64) -> Void
  public var reportSnapshot: @Sendable (UInt64, SnapshotStatus) -> Void
  /// Checks a received snapshot's data (`NodeConfiguration.snapshotDataCheck`): a refused one
  /// closes its stream and is not delivered.
  public var snapshotDataCheck: (@Sendable ([UInt8]) -> String?)?
  /// Whether the node is behind on what it was delivered: while true, the transport stops
  /// reading from its peers' connections (NIO back-pressure: TCP's window then holds the
  /// senders back) instead of buffering, and checks again every millisecond.
  public var backlogged: @Sendable () -> Bool

  public init(
    deliver: @escaping MessageSink, reportUnreachable: @escaping @Sendable (UInt64) -> Void,
    reportSnapshot: @escaping @Sendable (UInt64, SnapshotStatus) -> Void,
    snapshotDataCheck: (@Sendable ([UInt8]) -> String?)? = nil, backlogged: @escaping @Sendable () -> Bool = { false }
  ) {
    self.deliver = deliver
    self.reportUnreachable = reportUnreachable
    self.reportSnapshot = reportSnapshot
    self.snapshotDataCheck = snapshotDataCheck
    self.backlogged = backlogged
  }

  /// Delivers to `node`'s inbox and reports to it.
  public init(node: Node) {
    self.init(
      deliver: node.sink, reportUnreachable: { node.reportUnreachable($0) },
      reportSnapshot: { node.reportSnapshot($0, status: $1) },
      snapshotDataCheck: node.configuration.snapshotDataCheck, backlogged: { node.inboxBacklogged })
  }
}

/// The ordered outbound stream to one peer: one TCP connection, redialled with backoff when it
/// drops, fed from a bounded queue that any thread may push to without waiting.
///
/// Threading: `enqueue` and `close` may be called from any thread; everything else runs on
/// `eventLoop` (asserted), which owns the channel and the snapshot streams.
final class PeerConnection: @unchecked Sendable {
  let peerID: UInt64
  let address: PeerAddress
  let eventLoop: any EventLoop
  private let localID: UInt64
  private let options: TCPTransportOptions
  private let delegate: TransportDelegate
  let logger: Logger

  /// What `enqueue` shares with the event loop.
  private struct Shared {
    /// Invariant: `messages.count <= queueMessagesMax` and `bytes <= queueBytesMax`.
    var messages: [Message] = []
    var bytes = 0
    /// A connection is up: only then are messages queued (otherwise dropped: Raft resends).
    var connected = false
    /// A drain is scheduled on the event loop (one at a time).
    var drainScheduled = false
    var closed = false
  }
  private let shared = Mutex(Shared())

  // Event loop only.
  private var channel: (any Channel)?
  private var backoffMilliseconds: Int
  private var reconnect: Scheduled<Void>?
  /// MsgSnaps waiting for their turn (one stream at a time per peer).
  private var snapshots: [Message] = []
  /// The stream being written: its id, its MsgSnap, and how much of the data is written.
  private var streaming: (id: UInt64, message: Message, offset: Int)?
  /// The stream written in full, waiting for the peer's ack.
  private var awaitingAck: (id: UInt64, message: Message)?
  private var nextStreamID: UInt64 = 1
  /// Logged once per outage, not per attempt.
  private var reportedDown = false
  private var isClosed = false

  init(
    peerID: UInt64, address: PeerAddress, localID: UInt64, eventLoop: any EventLoop, options: TCPTransportOptions,
    delegate: TransportDelegate, logger: Logger
  ) {
    self.peerID = peerID
    self.address = address
    self.localID = localID
    self.eventLoop = eventLoop
    self.options = options
    self.delegate = delegate
    var logger = logger
    logger[metadataKey: "peer"] = "\(peerID)"
    self.logger = logger
    backoffMilliseconds = options.reconnectBackoffMinMilliseconds
  }

  /// Whether a connection is up.
  var isConnected: Bool { shared.withLock { $0.connected } }

  /// Starts dialling.
  func start() { eventLoop.execute { self.connect() } }

  /// Queues `messages` (all to this peer) for writing; false when they were dropped because no
  /// connection is up or the queue is full. Never waits.
  func enqueue(_ messages: [Message]) -> Bool {
    var bytes = 0
    // A snapshot's data is shared, not copied, until it is streamed: count its header only.
    for m in messages { bytes += m.type == .msgSnap ? 256 : RaftCodec.encodedSize(m) }
    let schedule: Bool? = shared.withLock { s in
      guard s.connected, !s.closed, s.messages.count + messages.count <= options.queueMessagesMax,
        s.bytes + bytes <= options.queueBytesMax
      else { return nil }
      s.messages.append(contentsOf: messages)
      s.bytes += bytes
      if s.drainScheduled { return false }
      s.drainScheduled = true
      return true
    }
    guard let schedule else { return false }
    if schedule { eventLoop.execute { self.drain() } }
    return true
  }

  /// Closes the stream for good (the peer was removed, or the transport shuts down); snapshots
  /// in flight are reported as failed.
  func close() -> EventLoopFuture<Void> {
    shared.withLock { $0.closed = true }
    return eventLoop.submit {
      self.isClosed = true
      self.reconnect?.cancel()
      self.reconnect = nil
      let channel = self.channel
      self.lost()
      return channel
    }.flatMap { channel in
      guard let channel else { return self.eventLoop.makeSucceededVoidFuture() }
      return channel.close().recover { _ in }
    }
  }

  // MARK: Event loop

  private func connect() {
    eventLoop.assertInEventLoop()
    guard !isClosed else { return }
    let decoder = FrameDecoder(frameBytesMax: options.frameBytesMax)
    let watermark = ChannelOptions.Types.WriteBufferWaterMark(
      low: options.writeBufferHighWatermarkBytes / 2, high: options.writeBufferHighWatermarkBytes)
    ClientBootstrap(group: eventLoop)
      .connectTimeout(.milliseconds(Int64(options.connectTimeoutMilliseconds)))
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelOption(.writeBufferWaterMark, value: watermark)
      .channelInitializer { [options, peerID] channel in
        channel.eventLoop.makeCompletedFuture {
          if let tls = options.tls {
            try channel.pipeline.syncOperations.addHandlers(
              try NIOSSLClientHandler(context: tls.clientContext, serverHostname: nil),
              DialledIdentityCheck(peerID: peerID))
          }
          try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(decoder), OutboundStreamHandler(peer: self))
        }
      }
      .connect(host: address.host, port: address.port)
      .whenComplete { result in
        switch result {
        case .success(let channel): self.connected(channel)
        case .failure(let error): self.connectFailed(error)
        }
      }
  }

  private func connected(_ channel: any Channel) {
    eventLoop.assertInEventLoop()
    guard !isClosed else {
      channel.close(promise: nil)
      return
    }
    self.channel = channel
    backoffMilliseconds = options.reconnectBackoffMinMilliseconds
    var hello = channel.allocator.buffer(capacity: frameHeaderBytes + 16)
    hello.writeFrame(.hello) { b in
      b.writeInteger(localID)
      b.writeInteger(peerID)
    }
    channel.writeAndFlush(hello, promise: nil)
    shared.withLock { $0.connected = true }
    logger.info("connected to peer", metadata: ["address": "\(address)"])
    reportedDown = false
  }

  private func connectFailed(_ error: any Error) {
    eventLoop.assertInEventLoop()
    if !reportedDown {
      logger.warning("peer unreachable, retrying", metadata: ["address": "\(address)", "error": "\(error)"])
      reportedDown = true
    }
    scheduleReconnect()
  }

  private func scheduleReconnect() {
    guard !isClosed else { return }
    let wait = backoffMilliseconds / 2 + Int.random(in: 0...max(backoffMilliseconds / 2, 1))
    backoffMilliseconds = min(backoffMilliseconds * 2, options.reconnectBackoffMaxMilliseconds)
    reconnect = eventLoop.scheduleTask(in: .milliseconds(Int64(wait))) { self.connect() }
  }

  /// The connection closed (either side): drop what is queued, fail the snapshots in flight,
  /// and dial again.
  func connectionClosed(_ closed: any Channel) {
    eventLoop.assertInEventLoop()
    guard closed === channel else { return }
    if !isClosed {
      logger.warning("connection to peer lost", metadata: ["address": "\(address)"])
      reportedDown = true
    }
    lost()
    scheduleReconnect()
  }

  /// Forgets the channel and everything that was to go through it.
  private func lost() {
    channel = nil
    let dropped = shared.withLock { s in
      s.connected = false
      let dropped = s.messages
      s.messages = []
      s.bytes = 0
      return dropped
    }
    var failed = snapshots + dropped.filter { $0.type == .msgSnap }
    snapshots = []
    if let s = streaming { failed.append(s.message) }
    if let a = awaitingAck { failed.append(a.message) }
    streaming = nil
    awaitingAck = nil
    for _ in failed { delegate.reportSnapshot(peerID, .failure) }
    if !dropped.isEmpty { delegate.reportUnreachable(peerID) }
  }

  /// Writes what is queued (while the socket takes more) and continues the snapshot stream.
  func drain() {
    eventLoop.assertInEventLoop()
    guard let channel, channel.isActive else {
      shared.withLock { $0.drainScheduled = false }
      return
    }
    guard channel.isWritable else {
      // `channelWritabilityChanged` drains again once the socket buffer empties.
      shared.withLock { $0.drainScheduled = false }
      return
    }
    let taken = shared.withLock { s in
      let taken = s.messages
      s.messages = []
      s.bytes = 0
      s.drainScheduled = false
      return taken
    }
    var batch: [Message] = []
    var batchBytes = 0
    var tooLarge = false
    for m in taken {
      if m.type == .msgSnap {
        snapshots.append(m)
        continue
      }
      let size = RaftCodec.encodedSize(m)
      if size + 16 > options.frameBytesMax {
        logger.error("message too large for a frame, dropped", metadata: ["type": "\(m.type)", "bytes": "\(size)"])
        tooLarge = true
        continue
      }
      if !batch.isEmpty && batchBytes + size > options.frameBytesTarget {
        write(batch, to: channel)
        batch.removeAll(keepingCapacity: true)
        batchBytes = 0
      }
      batch.append(m)
      batchBytes += size
    }
    if !batch.isEmpty { write(batch, to: channel) }
    streamSnapshots(to: channel)
    channel.flush()
    if tooLarge { delegate.reportUnreachable(peerID) }
  }

  private func write(_ batch: [Message], to channel: any Channel) {
    let body = RaftCodec.encodeMessages(batch)
    var buffer = channel.allocator.buffer(capacity: frameHeaderBytes + body.count)
    buffer.writeFrame(.messages) { $0.writeBytes(body) }
    channel.write(buffer, promise: nil)
  }

  /// Writes snapshot chunks while the socket takes them: a MsgSnap's data goes out in
  /// `snapshotChunkBytes` pieces, interleaved with the messages sent meanwhile (heartbeats keep
  /// flowing during a long stream).
  private func streamSnapshots(to channel: any Channel) {
    while channel.isWritable {
      if streaming == nil {
        guard awaitingAck == nil, !snapshots.isEmpty else { return }
        let m = snapshots.removeFirst()
        let id = nextStreamID
        nextStreamID += 1
        var header = m
        header.snapshot!.data = []
        let headerBytes = RaftCodec.encodeMessage(header)
        var buffer = channel.allocator.buffer(capacity: frameHeaderBytes + 16 + headerBytes.count)
        buffer.writeFrame(.snapshotBegin) { b in
          b.writeInteger(id)
          b.writeInteger(UInt64(m.snapshot!.data.count))
          b.writeBytes(headerBytes)
        }
        channel.write(buffer, promise: nil)
        streaming = (id, m, 0)
        logger.info(
          "streaming snapshot",
          metadata: ["index": "\(m.snapshot!.metadata.index)", "bytes": "\(m.snapshot!.data.count)"])
      }
      let (id, m, offset) = streaming!
      let data = m.snapshot!.data
      if offset < data.count {
        let end = min(data.count, offset + options.snapshotChunkBytes)
        var buffer = channel.allocator.buffer(capacity: frameHeaderBytes + 8 + end - offset)
        buffer.writeFrame(.snapshotChunk) { b in
          b.writeInteger(id)
          b.writeBytes(data[offset..<end])
        }
        channel.write(buffer, promise: nil)
        streaming!.offset = end
      } else {
        var buffer = channel.allocator.buffer(capacity: frameHeaderBytes + 8)
        buffer.writeFrame(.snapshotEnd) { $0.writeInteger(id) }
        channel.write(buffer, promise: nil)
        awaitingAck = (id, m)
        streaming = nil
      }
    }
  }

  /// The peer has the snapshot of stream `id`: report it, and start the next one.
  func snapshotAcknowledged(_ id: UInt64, on channel: any Channel) throws {
    eventLoop.assertInEventLoop()
    guard channel === self.channel, let a = awaitingAck, a.id == id else {
      throw FrameError.protocolViolation("acknowledgement of unknown snapshot stream \(id)")
    }
    awaitingAck = nil
    logger.info("snapshot delivered", metadata: ["index": "\(a.message.snapshot!.metadata.index)"])
    delegate.reportSnapshot(peerID, .finish)
    drain()
  }
}

/// The dialling side's handler: the only frames a listening node sends back are snapshot acks.
final class OutboundStreamHandler: ChannelInboundHandler {
  typealias InboundIn = Frame

  private let peer: PeerConnection

  init(peer: PeerConnection) { self.peer = peer }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var frame = unwrapInboundIn(data)
    do {
      guard frame.kind == .snapshotAck else {
        throw FrameError.protocolViolation("unexpected \(frame.kind) frame from a listening node")
      }
      try peer.snapshotAcknowledged(try frame.body.readUInt64("stream id"), on: context.channel)
    } catch {
      errorCaught(context: context, error: error)
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable { peer.drain() }
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    peer.connectionClosed(context.channel)
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    peer.logger.warning("closing the connection to the peer: \(error)")
    context.close(promise: nil)
  }
}
