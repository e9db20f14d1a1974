import Raft

/// One write to the key-value store, as it travels in a log entry:
///
///     version u8 (1) | op u8 (1 put, 2 delete) | request id varint | key length varint | key | value
///
/// The request id lets the node that took the HTTP request recognize its entry when it is
/// applied, wherever it was proposed (the leader, or a follower that forwarded it).
struct KVCommand: Equatable, Sendable {
  enum Op: UInt8, Sendable {
    case put = 1
    case delete = 2
  }

  var op: Op
  var requestID: UInt64
  var key: [UInt8]
  /// Empty for a delete.
  var value: [UInt8]

  static let version: UInt8 = 1

  func encoded() -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(2 + 10 + 5 + key.count + value.count)
    out.append(Self.version)
    out.append(op.rawValue)
    RaftCodec.appendVarint(requestID, into: &out)
    RaftCodec.appendVarint(UInt64(key.count), into: &out)
    out += key
    out += value
    return out
  }

  /// Decodes an entry's data, or throws `KVFormatError` saying what is wrong.
  init(decoding data: [UInt8]) throws(KVFormatError) { try self.init(decoding: Payload(data)) }

  /// Decodes an entry's data in place, or throws `KVFormatError` saying what is wrong.
  init(decoding data: Payload) throws(KVFormatError) {
    var r = ByteReader(data)
    guard try r.byte("version") == Self.version else { throw KVFormatError("unknown command version") }
    guard let op = Op(rawValue: try r.byte("op")) else { throw KVFormatError("unknown command op") }
    self.op = op
    requestID = try r.varint("request id")
    key = try r.bytes(Int(clamping: try r.varint("key length")), "key")
    value = r.rest()
    if op == .delete && !value.isEmpty { throw KVFormatError("delete with a value") }
  }

  /// The bytes of an encoded command up to its request id, at most (version, op, varint).
  static let headBytesMax = 2 + 10

  /// The request id in the first bytes of an encoded command (`headBytesMax` of them, or
  /// fewer for a short command); nil when they are not a command's.
  static func requestID(inHead head: Payload) -> UInt64? {
    var r = ByteReader(head)
    guard (try? r.byte("version")) == Self.version, let opByte = try? r.byte("op"), Op(rawValue: opByte) != nil
    else { return nil }
    return try? r.varint("request id")
  }

  init(op: Op, requestID: UInt64, key: [UInt8], value: [UInt8] = []) {
    self.op = op
    self.requestID = requestID
    self.key = key
    self.value = value
  }
}

/// The context of a membership change proposed through the HTTP API:
///
///     version u8 (1) | request id varint | the new member's URL (UTF-8, may be empty)
struct MemberContext: Equatable, Sendable {
  var requestID: UInt64
  var url: String

  func encoded() -> [UInt8] {
    var out: [UInt8] = [KVCommand.version]
    RaftCodec.appendVarint(requestID, into: &out)
    out += Array(url.utf8)
    return out
  }

  init(requestID: UInt64, url: String) {
    self.requestID = requestID
    self.url = url
  }

  init(decoding data: [UInt8]) throws(KVFormatError) {
    var r = ByteReader(data)
    guard try r.byte("version") == KVCommand.version else { throw KVFormatError("unknown member context version") }
    requestID = try r.varint("request id")
    url = String(decoding: r.rest(), as: UTF8.self)
  }
}

/// Bytes that are not a command, a member context or a snapshot of this store.
struct KVFormatError: Error, Equatable, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// A cursor over bytes that throws instead of trapping.
struct ByteReader {
  private let bytes: Payload
  private(set) var offset = 0

  init(_ bytes: [UInt8]) { self.bytes = Payload(bytes) }

  /// Reads an entry's data in place.
  init(_ bytes: Payload) { self.bytes = bytes }

  var isAtEnd: Bool { offset == bytes.count }

  mutating func byte(_ what: String) throws(KVFormatError) -> UInt8 {
    guard offset < bytes.count else { throw KVFormatError("truncated at \(what)") }
    offset += 1
    return bytes[offset - 1]
  }

  mutating func varint(_ what: String) throws(KVFormatError) -> UInt64 {
    do {
      return try bytes.withUnsafeBytes { raw in try RaftCodec.readVarint(raw, offset: &offset) }
    } catch {
      throw KVFormatError("bad \(what): \(error)")
    }
  }

  mutating func bytes(_ count: Int, _ what: String) throws(KVFormatError) -> [UInt8] {
    guard count <= bytes.count - offset else { throw KVFormatError("truncated \(what)") }
    offset += count
    return Array(bytes.payload((offset - count)..<offset))
  }

  mutating func rest() -> [UInt8] {
    defer { offset = bytes.count }
    return Array(bytes.payload(offset..<bytes.count))
  }
}

/// The store's decoders of log entries and snapshots, for the fuzz targets.
@_spi(Testing) public enum KVFormats {
  /// Decodes `bytes` as an entry's command, a member context and a store snapshot. Errors are
  /// expected; a trap is a bug. A command that decodes re-encodes to the same bytes (one encoding
  /// per command).
  public static func decodeAll(_ bytes: [UInt8]) {
    if let c = try? KVCommand(decoding: bytes) {
      precondition(c.encoded() == bytes, "a command's encoding is not canonical")
    }
    _ = try? MemberContext(decoding: bytes)
    _ = try? KVStore.decodeSnapshot(bytes)
  }
}
