/// The compact binary encoding of the Raft types, shared by the write-ahead log and the network
/// transport. The layout is described at the top of `CodecLayout.swift`.
///
/// Three levels of API:
/// - bodies: `encode(_:into:)` / `decodeX(_:offset:limits:)` / `encodedSize(_:)` for each type,
///   without a version byte, for embedding in an enclosing format (the WAL stores one entry body
///   per record and versions its files itself);
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

  // MARK: - Entry

  /// The encoded size of an entry body: 1 header byte + term + index [+ data length + data].
  public static func encodedSize(_ e: Entry) -> Int {
    let n = 1 + codecVarintLength(e.term) + codecVarintLength(e.index)
    return e.data.isEmpty ? n : n + codecBytesLength(e.data)
  }

  /// Appends the body encoding of `e` (no version byte).
  public static func encode(_ e: Entry, into out: inout [UInt8]) {
    append(into: &out, size: encodedSize(e)) { w in w.entry(e) }
  }

  /// Decodes an entry body at `offset` and advances `offset` past it.
  public static func decodeEntry(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> Entry {
    // Written out rather than through `decodeBody`: this is the WAL's hot path, and keeping the
    // reader out of closures lets the optimizer hold it in registers.
    var r = CodecReader(bytes, offset: offset, limits: limits)
    try r.checkStart()
    let e = try r.entry()
    offset = r.pos
    return e
  }

  /// Decodes an entry body at `offset` and advances `offset` past it.
  public static func decodeEntry(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> Entry {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeEntry(raw, offset: &offset, limits: limits) }
  }

  // MARK: - Entry lists

  /// The encoded size of a list of entries (count + entry bodies).
  public static func encodedSize(entries: [Entry]) -> Int { entryListSize(entries) }

  /// Appends a list of entries: a varint count, then each entry body (no version byte).
  public static func encode(entries: [Entry], into out: inout [UInt8]) {
    append(into: &out, size: entryListSize(entries)) { w in w.entryList(entries) }
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
  public static func decodeEntries(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> [Entry] {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeEntries(raw, offset: &offset, limits: limits) }
  }

  // MARK: - HardState

  /// The encoded size of a hard state body (three varints).
  public static func encodedSize(_ hs: HardState) -> Int {
    codecVarintLength(hs.term) + codecVarintLength(hs.vote) + codecVarintLength(hs.commit)
  }

  /// Appends the body encoding of `hs` (no version byte).
  public static func encode(_ hs: HardState, into out: inout [UInt8]) {
    append(into: &out, size: encodedSize(hs)) { w in w.hardState(hs) }
  }

  /// Decodes a hard state body at `offset` and advances `offset` past it.
  public static func decodeHardState(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> HardState {
    try decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.hardState() }
  }

  /// Decodes a hard state body at `offset` and advances `offset` past it.
  public static func decodeHardState(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> HardState {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeHardState(raw, offset: &offset, limits: limits) }
  }

  // MARK: - ConfState

  /// The encoded size of a conf state body.
  public static func encodedSize(_ cs: ConfState) -> Int {
    var n = 1
    if !cs.voters.isEmpty { n += idListSize(cs.voters) }
    if !cs.learners.isEmpty { n += idListSize(cs.learners) }
    if !cs.votersOutgoing.isEmpty { n += idListSize(cs.votersOutgoing) }
    if !cs.learnersNext.isEmpty { n += idListSize(cs.learnersNext) }
    return n
  }

  /// Appends the body encoding of `cs` (no version byte).
  public static func encode(_ cs: ConfState, into out: inout [UInt8]) {
    append(into: &out, size: encodedSize(cs)) { w in w.confState(cs) }
  }

  /// Decodes a conf state body at `offset` and advances `offset` past it.
  public static func decodeConfState(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> ConfState {
    try decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.confState() }
  }

  /// Decodes a conf state body at `offset` and advances `offset` past it.
  public static func decodeConfState(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> ConfState {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeConfState(raw, offset: &offset, limits: limits) }
  }

  // MARK: - SnapshotMetadata

  /// The encoded size of a snapshot metadata body.
  public static func encodedSize(_ md: SnapshotMetadata) -> Int {
    codecVarintLength(md.index) + codecVarintLength(md.term) + encodedSize(md.confState)
  }

  /// Appends the body encoding of `md` (no version byte).
  public static func encode(_ md: SnapshotMetadata, into out: inout [UInt8]) {
    append(into: &out, size: encodedSize(md)) { w in w.snapshotMetadata(md) }
  }

  /// Decodes a snapshot metadata body at `offset` and advances `offset` past it.
  public static func decodeSnapshotMetadata(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> SnapshotMetadata {
    try decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.snapshotMetadata() }
  }

  /// Decodes a snapshot metadata body at `offset` and advances `offset` past it.
  public static func decodeSnapshotMetadata(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> SnapshotMetadata {
    try withRaw(bytes) { (raw) throws(CodecError) in
      try decodeSnapshotMetadata(raw, offset: &offset, limits: limits)
    }
  }

  // MARK: - Snapshot

  /// The encoded size of a snapshot body (metadata + data length + data).
  public static func encodedSize(_ s: Snapshot) -> Int {
    encodedSize(s.metadata) + codecBytesLength(s.data)
  }

  /// Appends the body encoding of `s` (no version byte).
  public static func encode(_ s: Snapshot, into out: inout [UInt8]) {
    append(into: &out, size: encodedSize(s)) { w in w.snapshot(s) }
  }

  /// Decodes a snapshot body at `offset` and advances `offset` past it.
  public static func decodeSnapshot(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> Snapshot {
    try decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.snapshot() }
  }

  /// Decodes a snapshot body at `offset` and advances `offset` past it.
  public static func decodeSnapshot(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> Snapshot {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeSnapshot(raw, offset: &offset, limits: limits) }
  }

  // MARK: - Message bodies

  /// The encoded size of a message body (no version byte), responses included.
  public static func encodedSize(_ m: Message) -> Int {
    let f = MessageFlags.of(m)
    var n = 1 + codecVarintLength(f)
    if f & MessageFlags.to != 0 { n += codecVarintLength(m.to) }
    if f & MessageFlags.from != 0 { n += codecVarintLength(m.from) }
    if f & MessageFlags.term != 0 { n += codecVarintLength(m.term) }
    if f & MessageFlags.logTerm != 0 { n += codecVarintLength(m.logTerm) }
    if f & MessageFlags.index != 0 { n += codecVarintLength(m.index) }
    if f & MessageFlags.commit != 0 { n += codecVarintLength(m.commit) }
    if f & MessageFlags.entries != 0 { n += entryListSize(m.entries) }
    if f & MessageFlags.rejectHint != 0 { n += codecVarintLength(m.rejectHint) }
    if f & MessageFlags.vote != 0 { n += codecVarintLength(m.vote) }
    if f & MessageFlags.snapshot != 0, let s = m.snapshot { n += encodedSize(s) }
    if f & MessageFlags.context != 0 { n += codecBytesLength(m.context) }
    if f & MessageFlags.responses != 0 { n += messageListSize(m.responses) }
    return n
  }

  /// Appends the body encoding of `m` (no version byte; see `encodeMessage` for the versioned one).
  public static func encode(_ m: Message, into out: inout [UInt8]) {
    append(into: &out, size: encodedSize(m)) { w in w.message(m) }
  }

  /// Decodes a message body at `offset` and advances `offset` past it.
  public static func decodeMessage(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> Message {
    try decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.message(depth: 0) }
  }

  /// Decodes a message body at `offset` and advances `offset` past it.
  public static func decodeMessage(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> Message {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeMessage(raw, offset: &offset, limits: limits) }
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

  /// Decodes a whole buffer holding `encodeMessage`'s output (no trailing bytes allowed).
  public static func decodeMessage(_ bytes: [UInt8], limits: CodecLimits = .default) throws(CodecError) -> Message {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeMessage(raw, limits: limits) }
  }

  /// The size of `encodeMessages(ms)`: version byte + count + bodies.
  public static func encodedMessagesSize(_ ms: [Message]) -> Int { 1 + messageListSize(ms) }

  /// The versioned encoding of a batch of messages.
  public static func encodeMessages(_ ms: [Message]) -> [UInt8] {
    makeBytes(size: 1 + messageListSize(ms)) { w in
      w.byte(version)
      w.messageList(ms)
    }
  }

  /// Appends the versioned encoding of a batch of messages: version byte, count, message bodies.
  public static func encodeMessages(_ ms: [Message], into out: inout [UInt8]) {
    append(into: &out, size: 1 + messageListSize(ms)) { w in
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
  public static func decodeMessages(_ bytes: [UInt8], limits: CodecLimits = .default) throws(CodecError) -> [Message] {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeMessages(raw, limits: limits) }
  }

  // MARK: - ConfChange / ConfChangeV2

  /// The encoded size of a v1 conf change body.
  ///
  /// This compact form is for the codec's own records; log entries keep carrying the protobuf
  /// form (`ConfChange.encoded()`) so that entry sizes match etcd-raft.
  public static func encodedSize(_ cc: ConfChange) -> Int {
    1 + codecVarintLength(cc.id) + codecVarintLength(cc.nodeID) + codecBytesLength(cc.context)
  }

  /// Appends the compact body encoding of `cc` (no version byte).
  public static func encode(_ cc: ConfChange, into out: inout [UInt8]) {
    append(into: &out, size: encodedSize(cc)) { w in w.confChange(cc) }
  }

  /// Decodes a compact v1 conf change body at `offset` and advances `offset` past it.
  public static func decodeConfChange(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> ConfChange {
    try decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.confChange() }
  }

  /// Decodes a compact v1 conf change body at `offset` and advances `offset` past it.
  public static func decodeConfChange(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> ConfChange {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeConfChange(raw, offset: &offset, limits: limits) }
  }

  /// The encoded size of a v2 conf change body.
  public static func encodedSize(_ cc: ConfChangeV2) -> Int {
    var n = 1 + codecVarintLength(UInt64(cc.changes.count)) + codecBytesLength(cc.context)
    for c in cc.changes { n += 1 + codecVarintLength(c.nodeID) }
    return n
  }

  /// Appends the compact body encoding of `cc` (no version byte).
  public static func encode(_ cc: ConfChangeV2, into out: inout [UInt8]) {
    append(into: &out, size: encodedSize(cc)) { w in w.confChangeV2(cc) }
  }

  /// Decodes a compact v2 conf change body at `offset` and advances `offset` past it.
  public static func decodeConfChangeV2(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> ConfChangeV2 {
    try decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.confChangeV2() }
  }

  /// Decodes a compact v2 conf change body at `offset` and advances `offset` past it.
  public static func decodeConfChangeV2(
    _ bytes: [UInt8], offset: inout Int, limits: CodecLimits = .default
  ) throws(CodecError) -> ConfChangeV2 {
    try withRaw(bytes) { (raw) throws(CodecError) in try decodeConfChangeV2(raw, offset: &offset, limits: limits) }
  }

  // MARK: - Versioned records

  /// The size of `encodeRecord(v)`: version byte + body.
  public static func encodedRecordSize<T: RaftCodable>(_ v: T) -> Int { 1 + T.codecEncodedSize(v) }

  /// The versioned standalone encoding of `v`: the version byte, then its body.
  public static func encodeRecord<T: RaftCodable>(_ v: T) -> [UInt8] {
    var out: [UInt8] = []
    encodeRecord(v, into: &out)
    return out
  }

  /// Appends the versioned standalone encoding of `v`: the version byte, then its body.
  public static func encodeRecord<T: RaftCodable>(_ v: T, into out: inout [UInt8]) {
    let size = 1 + T.codecEncodedSize(v)
    if out.capacity - out.count < size { out.reserveCapacity(max(out.count + size, out.capacity * 2)) }
    out.append(version)
    T.codecEncode(v, into: &out)
  }

  /// Decodes a whole buffer holding `encodeRecord`'s output for a `T` (no trailing bytes allowed).
  public static func decodeRecord<T: RaftCodable>(
    _ type: T.Type, from bytes: UnsafeRawBufferPointer, limits: CodecLimits = .default
  ) throws(CodecError) -> T {
    var r = CodecReader(bytes, offset: 0, limits: limits)
    try r.version()
    var offset = r.pos
    let v = try T.codecDecode(bytes, offset: &offset, limits: limits)
    r.pos = offset
    try r.expectEnd()
    return v
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
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits,
    _ read: (inout CodecReader) throws(CodecError) -> T
  ) throws(CodecError) -> T {
    var r = CodecReader(bytes, offset: offset, limits: limits)
    try r.checkStart()
    let v = try read(&r)
    offset = r.pos
    return v
  }

  /// Reads a version byte, then `read`, then requires the end of the buffer.
  @inline(__always)
  static func decodeWhole<T>(
    _ bytes: UnsafeRawBufferPointer, limits: CodecLimits,
    _ read: (inout CodecReader) throws(CodecError) -> T
  ) throws(CodecError) -> T {
    var r = CodecReader(bytes, offset: 0, limits: limits)
    try r.version()
    let v = try read(&r)
    try r.expectEnd()
    return v
  }

  /// `[UInt8].withUnsafeBytes` keeping the typed error.
  @inline(__always)
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

/// A type with a `RaftCodec` body encoding, so that it can be written as a versioned standalone
/// record with `RaftCodec.encodeRecord` / `RaftCodec.decodeRecord`.
public protocol RaftCodable: Sendable {
  /// The size of the body encoding of `value`.
  static func codecEncodedSize(_ value: Self) -> Int
  /// Appends the body encoding of `value`.
  static func codecEncode(_ value: Self, into out: inout [UInt8])
  /// Decodes a body at `offset`, advancing it past the body.
  static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> Self
}

extension Entry: RaftCodable {
  /// `RaftCodec.encodedSize(_:)`.
  public static func codecEncodedSize(_ value: Entry) -> Int { RaftCodec.encodedSize(value) }
  /// `RaftCodec.encode(_:into:)`.
  public static func codecEncode(_ value: Entry, into out: inout [UInt8]) { RaftCodec.encode(value, into: &out) }
  /// `RaftCodec.decodeEntry(_:offset:limits:)`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> Entry {
    try RaftCodec.decodeEntry(bytes, offset: &offset, limits: limits)
  }
}

extension HardState: RaftCodable {
  /// `RaftCodec.encodedSize(_:)`.
  public static func codecEncodedSize(_ value: HardState) -> Int { RaftCodec.encodedSize(value) }
  /// `RaftCodec.encode(_:into:)`.
  public static func codecEncode(_ value: HardState, into out: inout [UInt8]) { RaftCodec.encode(value, into: &out) }
  /// `RaftCodec.decodeHardState(_:offset:limits:)`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> HardState {
    try RaftCodec.decodeHardState(bytes, offset: &offset, limits: limits)
  }
}

extension ConfState: RaftCodable {
  /// `RaftCodec.encodedSize(_:)`.
  public static func codecEncodedSize(_ value: ConfState) -> Int { RaftCodec.encodedSize(value) }
  /// `RaftCodec.encode(_:into:)`.
  public static func codecEncode(_ value: ConfState, into out: inout [UInt8]) { RaftCodec.encode(value, into: &out) }
  /// `RaftCodec.decodeConfState(_:offset:limits:)`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> ConfState {
    try RaftCodec.decodeConfState(bytes, offset: &offset, limits: limits)
  }
}

extension SnapshotMetadata: RaftCodable {
  /// `RaftCodec.encodedSize(_:)`.
  public static func codecEncodedSize(_ value: SnapshotMetadata) -> Int { RaftCodec.encodedSize(value) }
  /// `RaftCodec.encode(_:into:)`.
  public static func codecEncode(_ value: SnapshotMetadata, into out: inout [UInt8]) {
    RaftCodec.encode(value, into: &out)
  }
  /// `RaftCodec.decodeSnapshotMetadata(_:offset:limits:)`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> SnapshotMetadata {
    try RaftCodec.decodeSnapshotMetadata(bytes, offset: &offset, limits: limits)
  }
}

extension Snapshot: RaftCodable {
  /// `RaftCodec.encodedSize(_:)`.
  public static func codecEncodedSize(_ value: Snapshot) -> Int { RaftCodec.encodedSize(value) }
  /// `RaftCodec.encode(_:into:)`.
  public static func codecEncode(_ value: Snapshot, into out: inout [UInt8]) { RaftCodec.encode(value, into: &out) }
  /// `RaftCodec.decodeSnapshot(_:offset:limits:)`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> Snapshot {
    try RaftCodec.decodeSnapshot(bytes, offset: &offset, limits: limits)
  }
}

extension Message: RaftCodable {
  /// `RaftCodec.encodedSize(_:)`.
  public static func codecEncodedSize(_ value: Message) -> Int { RaftCodec.encodedSize(value) }
  /// `RaftCodec.encode(_:into:)`.
  public static func codecEncode(_ value: Message, into out: inout [UInt8]) { RaftCodec.encode(value, into: &out) }
  /// `RaftCodec.decodeMessage(_:offset:limits:)`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> Message {
    try RaftCodec.decodeMessage(bytes, offset: &offset, limits: limits)
  }
}

extension ConfChange: RaftCodable {
  /// `RaftCodec.encodedSize(_:)`.
  public static func codecEncodedSize(_ value: ConfChange) -> Int { RaftCodec.encodedSize(value) }
  /// `RaftCodec.encode(_:into:)`.
  public static func codecEncode(_ value: ConfChange, into out: inout [UInt8]) { RaftCodec.encode(value, into: &out) }
  /// `RaftCodec.decodeConfChange(_:offset:limits:)`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> ConfChange {
    try RaftCodec.decodeConfChange(bytes, offset: &offset, limits: limits)
  }
}

extension ConfChangeV2: RaftCodable {
  /// `RaftCodec.encodedSize(_:)`.
  public static func codecEncodedSize(_ value: ConfChangeV2) -> Int { RaftCodec.encodedSize(value) }
  /// `RaftCodec.encode(_:into:)`.
  public static func codecEncode(_ value: ConfChangeV2, into out: inout [UInt8]) {
    RaftCodec.encode(value, into: &out)
  }
  /// `RaftCodec.decodeConfChangeV2(_:offset:limits:)`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> ConfChangeV2 {
    try RaftCodec.decodeConfChangeV2(bytes, offset: &offset, limits: limits)
  }
}
