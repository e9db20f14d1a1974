/// The compact binary encoding of the Raft types, shared by the write-ahead log and the network
/// transport. The layout is described at the top of `CodecLayout.swift`.
///
/// Three levels of API:
/// - bodies: `encodedSize(_:)` / `encode(_:into:)` / `decode(_:from:offset:limits:)` for any
///   `RaftCodable` type (and `encode(entries:into:)` / `decodeEntries` for entry lists), without a
///   version byte, for embedding in an enclosing format (the WAL stores one entry body per record
///   and versions its files itself);
/// - messages: `encodeMessage` / `decodeMessage` and the batch forms `encodeMessages` /
///   `decodeMessages`, prefixed with the format version byte;
/// - records: `encodeRecord` / `decodeRecord` for any `RaftCodable` type, prefixed with the
///   format version byte.
///
/// Encoders append to a caller-provided buffer, sized once up front. Decoders read from an
/// `UnsafeRawBufferPointer` or `[UInt8]`; the `offset:` forms advance a cursor (left untouched when
/// they throw), the whole-buffer forms reject trailing bytes. Malformed input always ends in a
/// `CodecError`, never in a trap.
public enum RaftCodec {
  /// The format version written in front of top-level encodings. Decoders reject any other.
  public static let version: UInt8 = 1

  // MARK: - Varints

  /// The number of bytes of `v` as a LEB128 varint (1...10).
  public static func varintLength(_ v: UInt64) -> Int { codecVarintLength(v) }

  /// Appends `v` as a LEB128 varint.
  public static func appendVarint(_ v: UInt64, into out: inout [UInt8]) {
    append(into: &out, size: codecVarintLength(v)) { w in w.varint(v) }
  }

  /// Reads a LEB128 varint at `offset` and advances it. Rejects truncated, over-long (non-minimal)
  /// and more-than-64-bit varints.
  public static func readVarint(_ bytes: UnsafeRawBufferPointer, offset: inout Int) throws(CodecError) -> UInt64 {
    try decodeBody(bytes, offset: &offset, limits: .default) { (r) throws(CodecError) in try r.varint("varint") }
  }

  // MARK: - Bodies

  /// The size of the body encoding of `value` (no version byte).
  @inlinable
  public static func encodedSize<T: RaftCodable>(_ value: T) -> Int { T.codecEncodedSize(value) }

  /// Appends the body encoding of `value` (no version byte), sized exactly up front.
  @inlinable
  public static func encode<T: RaftCodable>(_ value: T, into out: inout [UInt8]) { T.codecEncode(value, into: &out) }

  /// Writes the body encoding of `value` (no version byte) at the start of `buffer`, which must
  /// hold at least `encodedSize(value)` bytes (checked); returns the number of bytes written.
  @inlinable
  public static func encode<T: RaftCodable>(_ value: T, to buffer: UnsafeMutableRawBufferPointer) -> Int {
    T.codecEncode(value, to: buffer)
  }

  /// Decodes a `T` body at `offset` and advances `offset` past it (left untouched when it throws).
  @inlinable
  public static func decode<T: RaftCodable>(
    _ type: T.Type, from bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> T {
    try T.codecDecode(bytes, offset: &offset, limits: limits)
  }

  /// Decodes a `T` body at `offset` and advances `offset` past it (left untouched when it throws).
  @inlinable
  public static func decode<T: RaftCodable>(
    _ type: T.Type, from bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> T {
    try withRaw(bytes) { (raw) throws(CodecError) in try T.codecDecode(raw, offset: &offset, limits: limits) }
  }

  // MARK: - Entry lists

  /// The encoded size of a list of entries (count + entry bodies).
  public static func encodedSize(entries: [Entry]) -> Int { listSize(entries) }

  /// Appends a list of entries: a varint count, then each entry body (no version byte).
  public static func encode(entries: [Entry], into out: inout [UInt8]) {
    append(into: &out, size: listSize(entries)) { w in w.entryList(entries) }
  }

  /// Decodes a list of entries written by `encode(entries:into:)`, at most `limits.maxEntries`.
  public static func decodeEntries(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> [Entry] {
    try decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in
      try r.entryList(nonEmpty: false)
    }
  }

  /// Decodes a list of entries written by `encode(entries:into:)`, at most `limits.maxEntries`.
  /// The entries' data are views into `bytes` (no copy).
  public static func decodeEntries(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> [Entry] {
    try withRaw(bytes) { (raw) throws(CodecError) in
      try decodeBody(raw, offset: &offset, limits: limits, owner: bytes) { (r) throws(CodecError) in
        try r.entryList(nonEmpty: false)
      }
    }
  }

  // MARK: - Versioned messages

  /// The size of `encodeMessage(m)`: version byte + body.
  public static func encodedMessageSize(_ m: Message) -> Int { 1 + encodedSize(m) }

  /// The versioned encoding of one message.
  public static func encodeMessage(_ m: Message) -> [UInt8] {
    makeBytes(size: 1 + encodedSize(m)) { w in
      w.byte(version)
      w.message(m)
    }
  }

  /// Appends the versioned encoding of one message.
  public static func encodeMessage(_ m: Message, into out: inout [UInt8]) {
    append(into: &out, size: 1 + encodedSize(m)) { w in
      w.byte(version)
      w.message(m)
    }
  }

  /// Decodes a whole buffer holding `encodeMessage`'s output (no trailing bytes allowed).
  public static func decodeMessage(_ bytes: UnsafeRawBufferPointer, limits: CodecLimits = .default) throws(CodecError)
    -> Message
  {
    try decodeWhole(bytes, limits: limits) { (r) throws(CodecError) in try r.message(depth: 0) }
  }

  /// Decodes a whole buffer holding `encodeMessage`'s output (no trailing bytes allowed). The
  /// entries' data are views into `bytes` (no copy).
  public static func decodeMessage(_ bytes: [UInt8], limits: CodecLimits = .default) throws(CodecError) -> Message {
    try withRaw(bytes) { (raw) throws(CodecError) in
      try decodeWhole(raw, limits: limits, owner: bytes) { (r) throws(CodecError) in try r.message(depth: 0) }
    }
  }

  /// The size of `encodeMessages(ms)`: version byte + count + bodies.
  public static func encodedMessagesSize(_ ms: [Message]) -> Int { 1 + listSize(ms) }

  /// The versioned encoding of a batch of messages.
  public static func encodeMessages(_ ms: [Message]) -> [UInt8] {
    makeBytes(size: 1 + listSize(ms)) { w in
      w.byte(version)
      w.messageList(ms)
    }
  }

  /// Appends the versioned encoding of a batch of messages: version byte, count, message bodies.
  public static func encodeMessages(_ ms: [Message], into out: inout [UInt8]) {
    append(into: &out, size: 1 + listSize(ms)) { w in
      w.byte(version)
      w.messageList(ms)
    }
  }

  /// Decodes a whole buffer holding `encodeMessages`'s output (at most `limits.maxMessages`).
  public static func decodeMessages(
    _ bytes: UnsafeRawBufferPointer, limits: CodecLimits = .default
  ) throws(CodecError) -> [Message] {
    try decodeWhole(bytes, limits: limits) { (r) throws(CodecError) in try r.messageList("message count", depth: 0) }
  }

  /// Decodes a whole buffer holding `encodeMessages`'s output (at most `limits.maxMessages`).
  /// The entries' data are views into `bytes` (no copy): one buffer for every entry of a frame.
  public static func decodeMessages(_ bytes: [UInt8], limits: CodecLimits = .default) throws(CodecError) -> [Message] {
    try withRaw(bytes) { (raw) throws(CodecError) in
      try decodeWhole(raw, limits: limits, owner: bytes) { (r) throws(CodecError) in
        try r.messageList("message count", depth: 0)
      }
    }
  }

  // MARK: - Versioned records

  /// The size of `encodeRecord(v)`: version byte + body.
  public static func encodedRecordSize<T: RaftCodable>(_ v: T) -> Int { 1 + encodedSize(v) }

  /// The versioned standalone encoding of `v`: the version byte, then its body.
  public static func encodeRecord<T: RaftCodable>(_ v: T) -> [UInt8] {
    var out: [UInt8] = []
    encodeRecord(v, into: &out)
    return out
  }

  /// Appends the versioned standalone encoding of `v`: the version byte, then its body.
  public static func encodeRecord<T: RaftCodable>(_ v: T, into out: inout [UInt8]) {
    let size = encodedRecordSize(v)
    if out.capacity - out.count < size { out.reserveCapacity(max(out.count + size, out.capacity * 2)) }
    out.append(version)
    encode(v, into: &out)
  }

  /// Decodes a whole buffer holding `encodeRecord`'s output for a `T` (no trailing bytes allowed).
  public static func decodeRecord<T: RaftCodable>(
    _ type: T.Type, from bytes: UnsafeRawBufferPointer, limits: CodecLimits = .default
  ) throws(CodecError) -> T {
    try decodeWhole(bytes, limits: limits) { (r) throws(CodecError) in
      try decode(type, from: bytes, offset: &r.pos, limits: limits)
    }
  }

  /// Decodes a whole buffer holding `encodeRecord`'s output for a `T` (no trailing bytes allowed).
  public static func decodeRecord<T: RaftCodable>(
    _ type: T.Type, from bytes: [UInt8], limits: CodecLimits = .default
  ) throws(CodecError) -> T {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeRecord(type, from: raw, limits: limits) }
  }

  // MARK: - Plumbing

  /// Runs `read` on a reader positioned at `offset`; advances `offset` only on success.
  @inline(__always)
  static func decodeBody<T>(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits, owner: [UInt8]? = nil,
    _ read: (inout CodecReader) throws(CodecError) -> T
  ) throws(CodecError) -> T {
    var r = CodecReader(bytes, offset: offset, limits: limits, owner: owner)
    try r.checkStart()
    let v = try read(&r)
    offset = r.pos
    return v
  }

  /// Reads a version byte, then `read`, then requires the end of the buffer.
  @inline(__always)
  static func decodeWhole<T>(
    _ bytes: UnsafeRawBufferPointer, limits: CodecLimits, owner: [UInt8]? = nil,
    _ read: (inout CodecReader) throws(CodecError) -> T
  ) throws(CodecError) -> T {
    var r = CodecReader(bytes, offset: 0, limits: limits, owner: owner)
    try r.version()
    let v = try read(&r)
    try r.expectEnd()
    return v
  }

  /// `[UInt8].withUnsafeBytes` keeping the typed error. (Inlinable for the generic `decode`.)
  @inlinable @inline(__always)
  static func withRaw<T>(
    _ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(CodecError) -> T
  ) throws(CodecError) -> T {
    // `withUnsafeBytes` is `rethrows`, which widens the error to `any Error`; narrow it back.
    // (Going through a `Result` instead costs a copy of the decoded value on the happy path.)
    do {
      return try bytes.withUnsafeBytes { raw in try body(raw) }
    } catch let error as CodecError {
      throw error
    } catch {
      preconditionFailure("RaftCodec: unexpected error \(error)")
    }
  }
}
