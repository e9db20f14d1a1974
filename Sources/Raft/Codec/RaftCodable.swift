/// A type with a `RaftCodec` body encoding: the one place where a type says how big its body is,
/// how it is written and how it is read (the layout itself is in `CodecLayout.swift`).
///
/// Use it through `RaftCodec`: `encodedSize(_:)`, `encode(_:into:)` and `decode(_:from:offset:limits:)`
/// for bodies, `encodeRecord` / `decodeRecord` for versioned standalone records.
public protocol RaftCodable: Sendable {
  /// The size of the body encoding of `value`.
  static func codecEncodedSize(_ value: Self) -> Int
  /// Appends the body encoding of `value`, exactly `codecEncodedSize(value)` bytes.
  static func codecEncode(_ value: Self, into out: inout [UInt8])
  /// Writes the body encoding of `value` at the start of `buffer`, which must hold at least
  /// `codecEncodedSize(value)` bytes; returns the number of bytes written.
  static func codecEncode(_ value: Self, to buffer: UnsafeMutableRawBufferPointer) -> Int
  /// Decodes a body at `offset`, advancing it past the body; leaves `offset` untouched when it throws.
  static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> Self
}

extension RaftCodable {
  /// Encodes into a temporary array and copies it: types on a hot path write directly instead.
  public static func codecEncode(_ value: Self, to buffer: UnsafeMutableRawBufferPointer) -> Int {
    var out: [UInt8] = []
    codecEncode(value, into: &out)
    precondition(out.count <= buffer.count, "RaftCodec: the buffer is smaller than the encoding")
    out.withUnsafeBytes { src in buffer.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: src.count) }
    return out.count
  }
}

extension RaftCodec {
  /// Runs `body` with a writer bounded by `buffer` (a store past its end traps); returns the
  /// number of bytes written. Callers size `buffer` with `encodedSize`, so the size is not
  /// computed twice.
  @inline(__always)
  static func write(to buffer: UnsafeMutableRawBufferPointer, _ body: (inout CodecWriter) -> Void) -> Int {
    guard let start = buffer.baseAddress, buffer.count > 0 else { return 0 }
    var w = CodecWriter(start: start, count: buffer.count)
    body(&w)
    return w.cursor - start
  }
}

extension Entry: RaftCodable {
  /// 1 header byte + term + index [+ data length + data].
  public static func codecEncodedSize(_ e: Entry) -> Int {
    let n = 1 + codecVarintLength(e.term) + codecVarintLength(e.index)
    return e.data.isEmpty ? n : n + codecBytesLength(e.data)
  }

  /// Appends the header byte, term, index and (when non-empty) data.
  public static func codecEncode(_ e: Entry, into out: inout [UInt8]) {
    RaftCodec.append(into: &out, size: codecEncodedSize(e)) { w in w.entry(e) }
  }

  /// Writes the entry body straight into `buffer` (the WAL's hot path).
  public static func codecEncode(_ e: Entry, to buffer: UnsafeMutableRawBufferPointer) -> Int {
    RaftCodec.write(to: buffer) { w in w.entry(e) }
  }

  /// Decodes an entry body at `offset`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> Entry {
    // Written out rather than through `decodeBody`: this is the WAL's hot path, and keeping the
    // reader out of closures lets the optimizer hold it in registers.
    var r = CodecReader(bytes, offset: offset, limits: limits)
    try r.checkStart()
    let e = try r.entry()
    offset = r.pos
    return e
  }
}

extension HardState: RaftCodable {
  /// Three varints: term, vote, commit.
  public static func codecEncodedSize(_ hs: HardState) -> Int {
    codecVarintLength(hs.term) + codecVarintLength(hs.vote) + codecVarintLength(hs.commit)
  }

  /// Appends term, vote and commit.
  public static func codecEncode(_ hs: HardState, into out: inout [UInt8]) {
    RaftCodec.append(into: &out, size: codecEncodedSize(hs)) { w in w.hardState(hs) }
  }

  /// Writes term, vote and commit straight into `buffer`.
  public static func codecEncode(_ hs: HardState, to buffer: UnsafeMutableRawBufferPointer) -> Int {
    RaftCodec.write(to: buffer) { w in w.hardState(hs) }
  }

  /// Decodes a hard state body at `offset`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> HardState {
    try RaftCodec.decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.hardState() }
  }
}

extension ConfState: RaftCodable {
  /// The flags byte, then the non-empty id lists.
  public static func codecEncodedSize(_ cs: ConfState) -> Int {
    var n = 1
    if !cs.voters.isEmpty { n += RaftCodec.idListSize(cs.voters) }
    if !cs.learners.isEmpty { n += RaftCodec.idListSize(cs.learners) }
    if !cs.votersOutgoing.isEmpty { n += RaftCodec.idListSize(cs.votersOutgoing) }
    if !cs.learnersNext.isEmpty { n += RaftCodec.idListSize(cs.learnersNext) }
    return n
  }

  /// Appends the flags byte and the non-empty id lists.
  public static func codecEncode(_ cs: ConfState, into out: inout [UInt8]) {
    RaftCodec.append(into: &out, size: codecEncodedSize(cs)) { w in w.confState(cs) }
  }

  /// Decodes a conf state body at `offset`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> ConfState {
    try RaftCodec.decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.confState() }
  }
}

extension SnapshotMetadata: RaftCodable {
  /// Index, term, then the conf state body.
  public static func codecEncodedSize(_ md: SnapshotMetadata) -> Int {
    codecVarintLength(md.index) + codecVarintLength(md.term) + RaftCodec.encodedSize(md.confState)
  }

  /// Appends index, term and the conf state body.
  public static func codecEncode(_ md: SnapshotMetadata, into out: inout [UInt8]) {
    RaftCodec.append(into: &out, size: codecEncodedSize(md)) { w in w.snapshotMetadata(md) }
  }

  /// Decodes a snapshot metadata body at `offset`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> SnapshotMetadata {
    try RaftCodec.decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in
      try r.snapshotMetadata()
    }
  }
}

extension Snapshot: RaftCodable {
  /// The metadata body, then data length + data.
  public static func codecEncodedSize(_ s: Snapshot) -> Int {
    RaftCodec.encodedSize(s.metadata) + codecBytesLength(s.data)
  }

  /// Appends the metadata body and the data.
  public static func codecEncode(_ s: Snapshot, into out: inout [UInt8]) {
    RaftCodec.append(into: &out, size: codecEncodedSize(s)) { w in w.snapshot(s) }
  }

  /// Decodes a snapshot body at `offset`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> Snapshot {
    try RaftCodec.decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.snapshot() }
  }
}

extension Message: RaftCodable {
  /// Type byte, flags varint, then the present fields, responses included (no version byte; see
  /// `RaftCodec.encodeMessage` for the versioned form).
  public static func codecEncodedSize(_ m: Message) -> Int {
    let f = MessageFlags.of(m)
    var n = 1 + codecVarintLength(f)
    if f & MessageFlags.to != 0 { n += codecVarintLength(m.to) }
    if f & MessageFlags.from != 0 { n += codecVarintLength(m.from) }
    if f & MessageFlags.term != 0 { n += codecVarintLength(m.term) }
    if f & MessageFlags.logTerm != 0 { n += codecVarintLength(m.logTerm) }
    if f & MessageFlags.index != 0 { n += codecVarintLength(m.index) }
    if f & MessageFlags.commit != 0 { n += codecVarintLength(m.commit) }
    if f & MessageFlags.entries != 0 { n += RaftCodec.listSize(m.entries) }
    if f & MessageFlags.rejectHint != 0 { n += codecVarintLength(m.rejectHint) }
    if f & MessageFlags.vote != 0 { n += codecVarintLength(m.vote) }
    if f & MessageFlags.snapshot != 0, let s = m.snapshot { n += RaftCodec.encodedSize(s) }
    if f & MessageFlags.context != 0 { n += codecBytesLength(m.context) }
    if f & MessageFlags.responses != 0 { n += RaftCodec.listSize(m.responses) }
    return n
  }

  /// Appends the message body (no version byte).
  public static func codecEncode(_ m: Message, into out: inout [UInt8]) {
    RaftCodec.append(into: &out, size: codecEncodedSize(m)) { w in w.message(m) }
  }

  /// Decodes a top-level message body at `offset`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> Message {
    try RaftCodec.decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in
      try r.message(depth: 0)
    }
  }
}

extension ConfChange: RaftCodable {
  /// Type byte, id, node id, context length + context.
  ///
  /// This compact form is for the codec's own records; log entries keep carrying the protobuf
  /// form (`ConfChange.encoded()`) so that entry sizes match etcd-raft.
  public static func codecEncodedSize(_ cc: ConfChange) -> Int {
    1 + codecVarintLength(cc.id) + codecVarintLength(cc.nodeID) + codecBytesLength(cc.context)
  }

  /// Appends the compact body encoding.
  public static func codecEncode(_ cc: ConfChange, into out: inout [UInt8]) {
    RaftCodec.append(into: &out, size: codecEncodedSize(cc)) { w in w.confChange(cc) }
  }

  /// Decodes a compact v1 conf change body at `offset`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> ConfChange {
    try RaftCodec.decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.confChange() }
  }
}

extension ConfChangeV2: RaftCodable {
  /// Transition byte, change count, (type byte, node id) per change, context length + context.
  ///
  /// Like `ConfChange`'s, a compact form for the codec's own records, not for log entries.
  public static func codecEncodedSize(_ cc: ConfChangeV2) -> Int {
    var n = 1 + codecVarintLength(UInt64(cc.changes.count)) + codecBytesLength(cc.context)
    for c in cc.changes { n += 1 + codecVarintLength(c.nodeID) }
    return n
  }

  /// Appends the compact body encoding.
  public static func codecEncode(_ cc: ConfChangeV2, into out: inout [UInt8]) {
    RaftCodec.append(into: &out, size: codecEncodedSize(cc)) { w in w.confChangeV2(cc) }
  }

  /// Decodes a compact v2 conf change body at `offset`.
  public static func codecDecode(
    _ bytes: UnsafeRawBufferPointer, offset: inout Int, limits: CodecLimits
  ) throws(CodecError) -> ConfChangeV2 {
    try RaftCodec.decodeBody(bytes, offset: &offset, limits: limits) { (r) throws(CodecError) in try r.confChangeV2() }
  }
}
