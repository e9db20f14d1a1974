import Logging
import NIOCore
import NIOSSL
import Raft

/// The listening side of one connection: checks the dialler's `hello`, decodes its message
/// batches and reassembles its snapshot streams, and delivers what it gets to the node.
///
/// Anything malformed (a frame the decoder refuses, a codec error, a message that claims another
/// sender, a local message type, a snapshot stream out of order or over its size) closes the
/// connection with one log line; nothing of the bad frame reaches the node.
@_spi(Testing) public final class InboundConnectionHandler: ChannelInboundHandler {
  public typealias InboundIn = Frame
  public typealias OutboundOut = ByteBuffer

  private let localID: UInt64
  private let options: TCPTransportOptions
  private let delegate: TransportDelegate
  private let logger: Logger
  private let limits: CodecLimits
  /// Whether a peer was removed from the cluster: its connections are refused (etcd's rafthttp
  /// does the same), so that a removed member that never learned it cannot disrupt the others.
  private let isRemoved: @Sendable (UInt64) -> Bool
  /// Whether a node id is a peer of this node (others are refused at their hello: a connection
  /// from a stranger buffers nothing).
  private let isKnown: @Sendable (UInt64) -> Bool
  /// Told the dialler's id once its hello is accepted (the transport closes a peer's
  /// connections by it).
  private let identified: @Sendable (UInt64) -> Void
  /// The dialler's id, once its hello arrived.
  private var remoteID: UInt64?
  /// The snapshot stream being received: its id, its MsgSnap (data still empty), the data so
  /// far, and the announced length. Invariant: `data.count <= total <= snapshotBytesMax`.
  private var assembling: (id: UInt64, message: Message, data: [UInt8], total: Int)?
  /// Reading is paused while the node is backlogged (`TransportDelegate.backlogged`): frames
  /// already decoded from the last read wait here, in order, until it catches up.
  private var paused = false
  private var held: [Frame] = []

  @_spi(Testing) public init(
    localID: UInt64, options: TCPTransportOptions, delegate: TransportDelegate, logger: Logger,
    isRemoved: @escaping @Sendable (UInt64) -> Bool = { _ in false },
    isKnown: @escaping @Sendable (UInt64) -> Bool = { _ in true },
    identified: @escaping @Sendable (UInt64) -> Void = { _ in }
  ) {
    self.identified = identified
    self.isRemoved = isRemoved
    self.isKnown = isKnown
    self.localID = localID
    self.options = options
    self.delegate = delegate
    self.logger = logger
    limits = CodecLimits(maxBytesLength: options.frameBytesMax, maxResponsesDepth: 0)
  }

  public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = unwrapInboundIn(data)
    if paused { return held.append(frame) }
    do {
      try handle(frame, context: context)
    } catch {
      errorCaught(context: context, error: error)
    }
  }

  /// Stops reading from the socket until the node catches up.
  private func pause(_ context: ChannelHandlerContext) {
    guard !paused else { return }
    paused = true
    context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    scheduleResume(context)
  }

  private func scheduleResume(_ context: ChannelHandlerContext) {
    let loop = context.eventLoop
    let bound = NIOLoopBound((self, context), eventLoop: loop)
    loop.scheduleTask(in: .milliseconds(1)) { bound.value.0.resume(bound.value.1) }
  }

  /// Delivers the frames held while paused, then reads again (or stays paused while the node
  /// is still behind).
  private func resume(_ context: ChannelHandlerContext) {
    guard paused, context.channel.isActive else { return }
    if delegate.backlogged() { return scheduleResume(context) }
    paused = false
    while !held.isEmpty && !paused {
      let frame = held.removeFirst()
      do {
        try handle(frame, context: context)
      } catch {
        held.removeAll()
        return errorCaught(context: context, error: error)
      }
    }
    if paused { return }
    context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
    context.read()
  }

  public func errorCaught(context: ChannelHandlerContext, error: any Error) {
    logger.warning(
      "closing a connection from a peer: \(error)",
      metadata: [
        "peer": "\(remoteID.map(String.init) ?? "?")",
        "remote": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")",
      ])
    context.close(promise: nil)
  }

  private func handle(_ frame: Frame, context: ChannelHandlerContext) throws {
    var body = frame.body
    if frame.kind == .hello {
      guard remoteID == nil else { throw FrameError.protocolViolation("second hello") }
      let from = try body.readUInt64("sender id")
      let to = try body.readUInt64("receiver id")
      guard body.readableBytes == 0 else { throw FrameError.protocolViolation("hello longer than 16 bytes") }
      guard to == localID else {
        throw FrameError.protocolViolation("connection meant for node \(to) reached node \(localID)")
      }
      guard from != noNode, from != localID, from != localAppendThread, from != localApplyThread else {
        throw FrameError.protocolViolation("hello from invalid node id \(from)")
      }
      guard isKnown(from) else { throw FrameError.protocolViolation("hello from node \(from), which is not a peer") }
      if options.tls?.clientCertAuth == true {
        // The handshake verified the certificate against the trusted CA: it must also name the
        // member this hello speaks for.
        let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
        let ids = certificate.map(MemberTLS.memberIDs(of:)) ?? []
        guard ids.contains(from) else {
          throw FrameError.protocolViolation("hello as node \(from) with a certificate for members \(ids.sorted())")
        }
      }
      remoteID = from
      identified(from)
      return
    }
    guard let from = remoteID else { throw FrameError.protocolViolation("\(frame.kind) frame before hello") }
    guard !isRemoved(from) else { throw FrameError.protocolViolation("node \(from) was removed from the cluster") }
    switch frame.kind {
    case .hello:
      preconditionFailure("handled above")
    case .messages:
      // One copy of the frame; the entries' data are views into it (no copy or allocation per
      // entry).
      let frameBytes = body.readBytes(length: body.readableBytes) ?? []
      let messages = try RaftCodec.decodeMessages(frameBytes, limits: limits)
      for m in messages { try check(m, from: from) }
      if !messages.isEmpty {
        delegate.deliver(messages)
        if delegate.backlogged() { pause(context) }
      }
    case .snapshotBegin:
      guard assembling == nil else { throw FrameError.protocolViolation("snapshot stream started inside another") }
      let id = try body.readUInt64("stream id")
      let total = try body.readUInt64("snapshot length")
      guard total <= UInt64(options.snapshotBytesMax) else {
        throw FrameError.protocolViolation(
          "snapshot of \(total) bytes exceeds the limit of \(options.snapshotBytesMax)")
      }
      let m = try body.withUnsafeReadableBytes { raw in try RaftCodec.decodeMessage(raw, limits: limits) }
      guard m.type == .msgSnap, let snapshot = m.snapshot, snapshot.data.isEmpty else {
        throw FrameError.protocolViolation("snapshot stream header is not a MsgSnap without data")
      }
      guard m.to == localID, m.from == from else {
        throw FrameError.protocolViolation("snapshot from \(m.from) to \(m.to) on the stream from \(from)")
      }
      // The buffer grows with the chunks that arrive, not with what the header announces.
      assembling = (id, m, [], Int(total))
    case .snapshotChunk:
      let id = try body.readUInt64("stream id")
      guard var a = assembling, a.id == id else {
        throw FrameError.protocolViolation("chunk of snapshot stream \(id), which is not open")
      }
      guard a.data.count + body.readableBytes <= a.total else {
        throw FrameError.protocolViolation("snapshot stream \(id) longer than the \(a.total) bytes announced")
      }
      assembling = nil  // keep the data uniquely referenced while appending
      body.withUnsafeReadableBytes { a.data.append(contentsOf: $0) }
      assembling = a
    case .snapshotEnd:
      let id = try body.readUInt64("stream id")
      guard let a = assembling, a.id == id else {
        throw FrameError.protocolViolation("end of snapshot stream \(id), which is not open")
      }
      guard a.data.count == a.total else {
        throw FrameError.protocolViolation("snapshot stream \(id) ended at \(a.data.count) of \(a.total) bytes")
      }
      assembling = nil
      if let check = delegate.snapshotDataCheck, let why = check(a.data) {
        throw FrameError.protocolViolation("snapshot \(a.message.snapshot!.metadata.index) refused: \(why)")
      }
      var m = a.message
      m.snapshot!.data = a.data
      logger.info(
        "snapshot received",
        metadata: ["peer": "\(from)", "index": "\(m.snapshot!.metadata.index)", "bytes": "\(a.total)"])
      delegate.deliver([m])
      var ack = context.channel.allocator.buffer(capacity: frameHeaderBytes + 8)
      ack.writeFrame(.snapshotAck) { $0.writeInteger(id) }
      context.writeAndFlush(wrapOutboundOut(ack), promise: nil)
    case .snapshotAck:
      throw FrameError.protocolViolation("snapshot ack sent to a listening node")
    }
  }

  /// A peer's message must come from the peer that said hello (a forwarded proposal or read
  /// request names its originator instead), be addressed here, be one that travels between
  /// peers, and not be a snapshot (those come as streams).
  private func check(_ m: Message, from: UInt64) throws {
    // A forwarded proposal or read request keeps its originator (it may be forwarded twice).
    guard m.from == from || m.type.isForwardedRequest else {
      throw FrameError.protocolViolation("message from \(m.from) on the stream from \(from)")
    }
    guard m.to == localID else { throw FrameError.protocolViolation("message to \(m.to) delivered to \(localID)") }
    guard !m.type.isLocal else { throw FrameError.protocolViolation("local message \(m.type) from a peer") }
    guard m.type != .msgSnap else { throw FrameError.protocolViolation("MsgSnap outside a snapshot stream") }
  }
}
