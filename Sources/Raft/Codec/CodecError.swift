/// A malformed or unacceptable encoding met by `RaftCodec` while decoding.
///
/// Decoding never traps on bad input: every problem is reported as a `CodecError` that says what
/// went wrong (`kind`), where (`offset`, the byte position in the buffer handed to the decoder at
/// which the offending item starts) and a human readable `detail`.
public struct CodecError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The class of problem.
  public enum Kind: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The input ended in the middle of an item.
    case truncated
    /// A varint has more than 10 bytes or a value beyond `UInt64.max`.
    case varintOverflow
    /// A declared length or element count is larger than the bytes left in the input.
    case lengthTooLarge
    /// A length, count or nesting depth is over a `CodecLimits` limit.
    case limitExceeded
    /// The leading format version byte is not one this decoder understands.
    case unknownVersion
    /// A `MessageType` raw value that does not exist.
    case unknownMessageType
    /// An `EntryType` raw value that does not exist.
    case unknownEntryType
    /// A `ConfChangeType` raw value that does not exist.
    case unknownConfChangeType
    /// A `ConfChangeTransition` raw value that does not exist.
    case unknownConfChangeTransition
    /// A flags byte has bits set that this format version does not define.
    case reservedBits
    /// A well-formed value written in a way our encoder never produces (an over-long varint, a
    /// presence flag for a zero or empty field, ...). Rejected so that every value has exactly one
    /// encoding.
    case nonCanonical
    /// Bytes are left over after a whole-buffer decode.
    case trailingBytes

    /// A short lowercase name of the kind.
    public var description: String {
      switch self {
      case .truncated: return "truncated input"
      case .varintOverflow: return "varint overflow"
      case .lengthTooLarge: return "length larger than the input"
      case .limitExceeded: return "limit exceeded"
      case .unknownVersion: return "unknown format version"
      case .unknownMessageType: return "unknown message type"
      case .unknownEntryType: return "unknown entry type"
      case .unknownConfChangeType: return "unknown conf change type"
      case .unknownConfChangeTransition: return "unknown conf change transition"
      case .reservedBits: return "reserved bits set"
      case .nonCanonical: return "non-canonical encoding"
      case .trailingBytes: return "trailing bytes"
      }
    }
  }

  /// The class of problem.
  public var kind: Kind
  /// Byte position (in the buffer given to the decoder) of the item that could not be decoded.
  public var offset: Int
  /// What exactly is wrong, e.g. "entry data of 12 bytes needs more than the 3 bytes left".
  public var detail: String

  /// Creates an error; decoders build these, tests may compare against them.
  public init(_ kind: Kind, offset: Int, detail: String) {
    self.kind = kind
    self.offset = offset
    self.detail = detail
  }

  /// `"<kind> at byte <offset>: <detail>"`.
  public var description: String { "\(kind) at byte \(offset): \(detail)" }
}

/// Upper bounds a decoder enforces on untrusted input, on top of the input's own size.
///
/// Lengths are always checked against the bytes actually left, so a hostile length can never make
/// the decoder allocate much more than the input; these limits bound what legitimate peers may
/// send and how deep the decoder recurses.
public struct CodecLimits: Sendable, Equatable, Hashable {
  /// Maximum length of one byte string (entry data, message context, snapshot data, conf change
  /// context).
  public var maxBytesLength: Int
  /// Maximum number of entries in one message (or one `decodeEntries` list).
  public var maxEntries: Int
  /// Maximum number of messages in one batch, and of responses of one message.
  public var maxMessages: Int
  /// Maximum number of node ids in one `ConfState` list, and of changes in one `ConfChangeV2`.
  public var maxNodes: Int
  /// Maximum nesting level of `Message.responses`: 0 forbids responses, 1 allows responses that
  /// have no responses of their own, and so on. Bounds the decoder's recursion.
  public var maxResponsesDepth: Int

  /// Creates limits; every parameter defaults to the value of `CodecLimits.default`.
  public init(
    maxBytesLength: Int = 256 << 20, maxEntries: Int = 1 << 20, maxMessages: Int = 1 << 16,
    maxNodes: Int = 1 << 16, maxResponsesDepth: Int = 4
  ) {
    self.maxBytesLength = maxBytesLength
    self.maxEntries = maxEntries
    self.maxMessages = maxMessages
    self.maxNodes = maxNodes
    self.maxResponsesDepth = maxResponsesDepth
  }

  /// 256 MiB byte strings, 2^20 entries per message, 2^16 messages per batch or responses per
  /// message, 2^16 node ids per list, responses nested at most 4 deep.
  public static let `default` = CodecLimits()
}
