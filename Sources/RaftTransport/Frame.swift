import NIOCore
import Raft

/// The transport's wire format. Every frame is
///
///     length u32 (big endian, of what follows) | version u8 | kind u8 | body
///
/// and a connection carries, from the dialing node to the listening one: one `hello`, then any
/// number of `messages` frames and snapshot streams (`snapshotBegin`, `snapshotChunk`...,
/// `snapshotEnd`); back from the listening node only `snapshotAck`s. Bodies:
///
/// - `hello`: from u64 | to u64 (the node ids at both ends);
/// - `messages`: `RaftCodec.encodeMessages` (its own codec version byte, then the batch);
/// - `snapshotBegin`: stream id u64 | data length u64 | `RaftCodec.encodeMessage` of the
///   MsgSnap with the snapshot's data left out;
/// - `snapshotChunk`: stream id u64 | the next bytes of the data;
/// - `snapshotEnd`: stream id u64;
/// - `snapshotAck`: stream id u64 (the receiver has the whole snapshot and stepped it).
@_spi(Testing) public enum FrameKind: UInt8, Sendable {
  case hello = 1
  case messages = 2
  case snapshotBegin = 3
  case snapshotChunk = 4
  case snapshotEnd = 5
  case snapshotAck = 6
}

/// One decoded frame: its kind and its body.
@_spi(Testing) public struct Frame: Sendable {
  public var kind: FrameKind
  public var body: ByteBuffer
}

/// Why a peer's bytes were refused (the connection is closed with a log line naming it).
public enum FrameError: Error, Equatable, CustomStringConvertible {
  case tooLarge(length: Int, max: Int)
  case tooShort(length: Int)
  case unsupportedVersion(UInt8)
  case unknownKind(UInt8)
  /// A frame that is well formed but not allowed here (the text says why).
  case protocolViolation(String)

  public var description: String {
    switch self {
    case .tooLarge(let length, let max): return "frame of \(length) bytes exceeds the limit of \(max)"
    case .tooShort(let length): return "frame length \(length) is shorter than its header"
    case .unsupportedVersion(let v): return "unsupported frame version \(v) (this node speaks \(wireVersion))"
    case .unknownKind(let k): return "unknown frame kind \(k)"
    case .protocolViolation(let why): return why
    }
  }
}

/// The version byte of every frame this transport writes and accepts.
let wireVersion: UInt8 = 1

/// Bytes of a frame's header (length, version, kind).
let frameHeaderBytes = 6

extension ByteBuffer {
  /// Writes a whole frame of `kind` whose body `writeBody` appends.
  @_spi(Testing) public mutating func writeFrame(_ kind: FrameKind, _ writeBody: (inout ByteBuffer) -> Void) {
    let start = writerIndex
    writeInteger(UInt32(0))
    writeInteger(wireVersion)
    writeInteger(kind.rawValue)
    writeBody(&self)
    let length = writerIndex - start - 4
    setInteger(UInt32(length), at: start)
  }
}

/// Splits the byte stream into frames, refusing any over `frameBytesMax` (so a peer cannot make
/// this node buffer without bound), of another version, or of an unknown kind.
@_spi(Testing) public struct FrameDecoder: ByteToMessageDecoder, Sendable {
  public typealias InboundOut = Frame

  /// The largest frame accepted (version, kind and body).
  let frameBytesMax: Int

  @_spi(Testing) public init(frameBytesMax: Int) { self.frameBytesMax = frameBytesMax }

  public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard buffer.readableBytes >= frameHeaderBytes else { return .needMoreData }
    let start = buffer.readerIndex
    let length = Int(buffer.getInteger(at: start, as: UInt32.self)!)
    guard length >= 2 else { throw FrameError.tooShort(length: length) }
    guard length <= frameBytesMax else { throw FrameError.tooLarge(length: length, max: frameBytesMax) }
    let version = buffer.getInteger(at: start + 4, as: UInt8.self)!
    guard version == wireVersion else { throw FrameError.unsupportedVersion(version) }
    let rawKind = buffer.getInteger(at: start + 5, as: UInt8.self)!
    guard let kind = FrameKind(rawValue: rawKind) else { throw FrameError.unknownKind(rawKind) }
    guard buffer.readableBytes >= 4 + length else { return .needMoreData }
    buffer.moveReaderIndex(forwardBy: frameHeaderBytes)
    let body = buffer.readSlice(length: length - 2)!
    context.fireChannelRead(wrapInboundOut(Frame(kind: kind, body: body)))
    return .continue
  }

  public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
    -> DecodingState
  {
    // A frame cut short by the end of the stream is dropped: the peer went away mid-write.
    while try decode(context: context, buffer: &buffer) == .continue {}
    return .needMoreData
  }
}

extension ByteBuffer {
  /// Reads a big-endian u64 or throws a protocol violation naming `field`.
  mutating func readUInt64(_ field: String) throws -> UInt64 {
    guard let v = readInteger(as: UInt64.self) else {
      throw FrameError.protocolViolation("frame too short for its \(field)")
    }
    return v
  }
}
