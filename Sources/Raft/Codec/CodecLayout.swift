// The wire layout of format version 1, one writer and one reader method per type.
//
// Primitives: `byte`; `varint` = unsigned LEB128, minimal, at most 10 bytes; `bytes` = varint
// length + that many bytes; `list<T>` = varint count + that many T.
//
// Entry            header byte: bits 0-1 EntryType, bit 2 data non-empty, bits 3-7 zero
//                  varint term, varint index, [bytes data if bit 2, length >= 1]
// HardState        varint term, varint vote, varint commit
// ConfState        flags byte: bit 0 voters, 1 learners, 2 votersOutgoing, 3 learnersNext (each set
//                  iff the list is non-empty), bit 4 autoLeave, bits 5-7 zero;
//                  then for each set list bit in that order: list<varint id> (count >= 1)
// SnapshotMetadata varint index, varint term, ConfState
// Snapshot         SnapshotMetadata, bytes data
// Message          byte MessageType, varint flags (see `MessageFlags`, bits 13+ zero), then for
//                  each flag in bit order: to, from, term, logTerm, index, commit (varints, != 0),
//                  list<Entry> entries (count >= 1), reject (no payload), rejectHint, vote
//                  (varints, != 0), Snapshot, bytes context (length >= 1), list<Message>
//                  responses (count >= 1, nesting bounded by `CodecLimits.maxResponsesDepth`)
// ConfChange       byte ConfChangeType, varint id, varint nodeID, bytes context
// ConfChangeV2     byte ConfChangeTransition, list<(byte ConfChangeType, varint nodeID)>,
//                  bytes context
//
// Top-level encodings (a message, a message batch = list<Message>, a standalone record) start with
// the format version byte `RaftCodec.version`. Every value has exactly one encoding: the decoder
// rejects over-long varints, presence flags of zero/empty fields and undefined flag bits.

/// Bits of an entry's header byte.
enum EntryHeader {
  static let typeMask: UInt8 = 0x03
  static let hasData: UInt8 = 0x04
  static let reserved: UInt8 = 0xF8
}

/// Bits of a `ConfState`'s flags byte.
enum ConfStateFlags {
  static let voters: UInt8 = 1 << 0
  static let learners: UInt8 = 1 << 1
  static let votersOutgoing: UInt8 = 1 << 2
  static let learnersNext: UInt8 = 1 << 3
  static let autoLeave: UInt8 = 1 << 4
  static let reserved: UInt8 = 0xE0
}

/// Bits of a message's flags varint: which fields are non-zero / non-empty / present. The fields
/// set by the frequent messages (MsgApp, MsgAppResp, MsgHeartbeat(Resp), votes) are in the low 7
/// bits, so their flags take one byte.
enum MessageFlags {
  static let to: UInt64 = 1 << 0
  static let from: UInt64 = 1 << 1
  static let term: UInt64 = 1 << 2
  static let logTerm: UInt64 = 1 << 3
  static let index: UInt64 = 1 << 4
  static let commit: UInt64 = 1 << 5
  static let entries: UInt64 = 1 << 6
  static let reject: UInt64 = 1 << 7
  static let rejectHint: UInt64 = 1 << 8
  static let vote: UInt64 = 1 << 9
  static let snapshot: UInt64 = 1 << 10
  static let context: UInt64 = 1 << 11
  static let responses: UInt64 = 1 << 12
  static let defined: UInt64 = (1 << 13) - 1

  @inline(__always)
  static func of(_ m: Message) -> UInt64 {
    var f: UInt64 = 0
    if m.to != 0 { f |= to }
    if m.from != 0 { f |= from }
    if m.term != 0 { f |= term }
    if m.logTerm != 0 { f |= logTerm }
    if m.index != 0 { f |= index }
    if m.commit != 0 { f |= commit }
    if !m.entries.isEmpty { f |= entries }
    if m.reject { f |= reject }
    if m.rejectHint != 0 { f |= rejectHint }
    if m.vote != 0 { f |= vote }
    if codecHasSnapshot(m) { f |= snapshot }
    if !m.context.isEmpty { f |= context }
    if !m.responses.isEmpty { f |= responses }
    return f
  }
}

/// Whether `m` carries a snapshot. `Message.snapshot`'s getter copies the snapshot out of its box
/// (about 15 ns even when it is nil), so the encoder asks only here, once per message and pass.
@inline(__always)
func codecHasSnapshot(_ m: Message) -> Bool {
  m.hasSnapshot
}

/// Smallest encoded sizes of list elements, used to reject impossible counts before allocating.
enum MinEncodedSize {
  static let entry = 3
  static let message = 2
  static let nodeID = 1
  static let confChangeSingle = 2
}

// MARK: - Sizes

extension RaftCodec {
  /// Size of an `[UInt64]` list: count, then the ids.
  static func idListSize(_ ids: [UInt64]) -> Int {
    var n = codecVarintLength(UInt64(ids.count))
    for id in ids { n += codecVarintLength(id) }
    return n
  }

  /// Size of a list of bodies (entries, messages): count, then the bodies.
  static func listSize<T: RaftCodable>(_ values: [T]) -> Int {
    var n = codecVarintLength(UInt64(values.count))
    for v in values { n += encodedSize(v) }
    return n
  }
}

// MARK: - Writing

extension CodecWriter {
  @inline(__always)
  mutating func entry(_ e: Entry) {
    if e.data.isEmpty {
      byte(e.type.rawValue)
      varint(e.term)
      varint(e.index)
    } else {
      byte(e.type.rawValue | EntryHeader.hasData)
      varint(e.term)
      varint(e.index)
      bytes(e.data)
    }
  }

  mutating func entryList(_ es: [Entry]) {
    varint(UInt64(es.count))
    for e in es { entry(e) }
  }

  mutating func hardState(_ hs: HardState) {
    varint(hs.term)
    varint(hs.vote)
    varint(hs.commit)
  }

  mutating func idList(_ ids: [UInt64]) {
    varint(UInt64(ids.count))
    for id in ids { varint(id) }
  }

  mutating func confState(_ cs: ConfState) {
    var f: UInt8 = 0
    if !cs.voters.isEmpty { f |= ConfStateFlags.voters }
    if !cs.learners.isEmpty { f |= ConfStateFlags.learners }
    if !cs.votersOutgoing.isEmpty { f |= ConfStateFlags.votersOutgoing }
    if !cs.learnersNext.isEmpty { f |= ConfStateFlags.learnersNext }
    if cs.autoLeave { f |= ConfStateFlags.autoLeave }
    byte(f)
    if !cs.voters.isEmpty { idList(cs.voters) }
    if !cs.learners.isEmpty { idList(cs.learners) }
    if !cs.votersOutgoing.isEmpty { idList(cs.votersOutgoing) }
    if !cs.learnersNext.isEmpty { idList(cs.learnersNext) }
  }

  mutating func snapshotMetadata(_ md: SnapshotMetadata) {
    varint(md.index)
    varint(md.term)
    confState(md.confState)
  }

  mutating func snapshot(_ s: Snapshot) {
    snapshotMetadata(s.metadata)
    bytes(s.data)
  }

  mutating func message(_ m: Message) {
    let f = MessageFlags.of(m)
    byte(m.type.rawValue)
    varint(f)
    if f & MessageFlags.to != 0 { varint(m.to) }
    if f & MessageFlags.from != 0 { varint(m.from) }
    if f & MessageFlags.term != 0 { varint(m.term) }
    if f & MessageFlags.logTerm != 0 { varint(m.logTerm) }
    if f & MessageFlags.index != 0 { varint(m.index) }
    if f & MessageFlags.commit != 0 { varint(m.commit) }
    if f & MessageFlags.entries != 0 { entryList(m.entries) }
    if f & MessageFlags.rejectHint != 0 { varint(m.rejectHint) }
    if f & MessageFlags.vote != 0 { varint(m.vote) }
    if f & MessageFlags.snapshot != 0, let s = m.snapshot { snapshot(s) }
    if f & MessageFlags.context != 0 { bytes(m.context) }
    if f & MessageFlags.responses != 0 { messageList(m.responses) }
  }

  mutating func messageList(_ ms: [Message]) {
    varint(UInt64(ms.count))
    for m in ms { message(m) }
  }

  mutating func confChange(_ cc: ConfChange) {
    byte(cc.type.rawValue)
    varint(cc.id)
    varint(cc.nodeID)
    bytes(cc.context)
  }

  mutating func confChangeV2(_ cc: ConfChangeV2) {
    byte(cc.transition.rawValue)
    varint(UInt64(cc.changes.count))
    for c in cc.changes {
      byte(c.type.rawValue)
      varint(c.nodeID)
    }
    bytes(cc.context)
  }
}

// MARK: - Reading

extension CodecReader {
  @inline(__always)
  mutating func entry() throws(CodecError) -> Entry {
    let start = pos
    let h = try byte("entry header")
    guard h & EntryHeader.reserved == 0, let type = EntryType(rawValue: h & EntryHeader.typeMask) else {
      throw Self.badEntryHeader(h, at: start)
    }
    let term = try varint("entry term")
    let index = try varint("entry index")
    guard h & EntryHeader.hasData != 0 else {
      return Entry(term: term, index: index, type: type, data: Payload())
    }
    let lengthAt = pos
    let n = try count(
      "entry data length", limit: limits.maxBytesLength, limitName: "maxBytesLength", minElementSize: 1)
    guard n > 0 else { throw codecError(.nonCanonical, at: lengthAt, "entry data flagged present but empty") }
    return Entry(term: term, index: index, type: type, data: payload(count: n))
  }

  @inline(never)
  static func badEntryHeader(_ h: UInt8, at offset: Int) -> CodecError {
    if h & EntryHeader.reserved != 0 {
      return codecError(.reservedBits, at: offset, "entry header 0x\(String(h, radix: 16)) has reserved bits set")
    }
    return codecError(.unknownEntryType, at: offset, "entry type \(h & EntryHeader.typeMask)")
  }

  /// A list of entries; `nonEmpty` when a presence flag announced it.
  mutating func entryList(nonEmpty: Bool) throws(CodecError) -> [Entry] {
    let start = pos
    let n = try count(
      "entry count", limit: limits.maxEntries, limitName: "maxEntries", minElementSize: MinEncodedSize.entry)
    if nonEmpty, n == 0 { throw codecError(.nonCanonical, at: start, "entries flagged present but empty") }
    var es: [Entry] = []
    es.reserveCapacity(n)
    for _ in 0..<n { es.append(try entry()) }
    return es
  }

  mutating func hardState() throws(CodecError) -> HardState {
    let term = try varint("hard state term")
    let vote = try varint("hard state vote")
    let commit = try varint("hard state commit")
    return HardState(term: term, vote: vote, commit: commit)
  }

  mutating func idList(_ what: StaticString) throws(CodecError) -> [UInt64] {
    let start = pos
    let n = try count(what, limit: limits.maxNodes, limitName: "maxNodes", minElementSize: MinEncodedSize.nodeID)
    guard n > 0 else { throw codecError(.nonCanonical, at: start, "\(what): list flagged present but empty") }
    var ids: [UInt64] = []
    ids.reserveCapacity(n)
    for _ in 0..<n { ids.append(try varint(what)) }
    return ids
  }

  mutating func confState() throws(CodecError) -> ConfState {
    let start = pos
    let f = try byte("conf state flags")
    guard f & ConfStateFlags.reserved == 0 else {
      throw codecError(.reservedBits, at: start, "conf state flags 0x\(String(f, radix: 16)) have reserved bits set")
    }
    var cs = ConfState()
    if f & ConfStateFlags.voters != 0 { cs.voters = try idList("conf state voters") }
    if f & ConfStateFlags.learners != 0 { cs.learners = try idList("conf state learners") }
    if f & ConfStateFlags.votersOutgoing != 0 { cs.votersOutgoing = try idList("conf state outgoing voters") }
    if f & ConfStateFlags.learnersNext != 0 { cs.learnersNext = try idList("conf state next learners") }
    cs.autoLeave = f & ConfStateFlags.autoLeave != 0
    return cs
  }

  mutating func snapshotMetadata() throws(CodecError) -> SnapshotMetadata {
    let index = try varint("snapshot index")
    let term = try varint("snapshot term")
    let cs = try confState()
    return SnapshotMetadata(confState: cs, index: index, term: term)
  }

  mutating func snapshot() throws(CodecError) -> Snapshot {
    let md = try snapshotMetadata()
    let data = try bytes("snapshot data length")
    return Snapshot(data: data, metadata: md)
  }

  /// A message nested `depth` levels inside responses (0 for a top-level message).
  mutating func message(depth: Int) throws(CodecError) -> Message {
    let typeAt = pos
    let t = try byte("message type")
    guard let type = MessageType(rawValue: t) else {
      throw codecError(.unknownMessageType, at: typeAt, "message type \(t)")
    }
    let flagsAt = pos
    let f = try varint("message flags")
    guard f & ~MessageFlags.defined == 0 else {
      throw codecError(.reservedBits, at: flagsAt, "message flags 0x\(String(f, radix: 16)) have reserved bits set")
    }
    // Fields go to locals and the message is built once at the end: mutating a `var Message`
    // would make the optimizer copy the 168-byte struct on the way out.
    let to = try flaggedVarint(f, MessageFlags.to, "message to")
    let from = try flaggedVarint(f, MessageFlags.from, "message from")
    let term = try flaggedVarint(f, MessageFlags.term, "message term")
    let logTerm = try flaggedVarint(f, MessageFlags.logTerm, "message log term")
    let index = try flaggedVarint(f, MessageFlags.index, "message index")
    let commit = try flaggedVarint(f, MessageFlags.commit, "message commit")
    let entries = try f & MessageFlags.entries != 0 ? entryList(nonEmpty: true) : []
    let rejectHint = try flaggedVarint(f, MessageFlags.rejectHint, "message reject hint")
    let vote = try flaggedVarint(f, MessageFlags.vote, "message vote")
    let snapshot = try f & MessageFlags.snapshot != 0 ? self.snapshot() : nil
    var context: [UInt8] = []
    if f & MessageFlags.context != 0 {
      let at = pos
      context = try bytes("message context length")
      if context.isEmpty { throw codecError(.nonCanonical, at: at, "message context flagged present but empty") }
    }
    var responses: [Message] = []
    if f & MessageFlags.responses != 0 {
      let at = pos
      guard depth < limits.maxResponsesDepth else {
        throw Self.depthExceeded(depth + 1, limit: limits.maxResponsesDepth, at: at)
      }
      responses = try messageList("message responses", depth: depth + 1)
      if responses.isEmpty { throw codecError(.nonCanonical, at: at, "responses flagged present but empty") }
    }
    return Message(
      type: type, to: to, from: from, term: term, logTerm: logTerm, index: index, entries: entries,
      commit: commit, vote: vote, snapshot: snapshot, reject: f & MessageFlags.reject != 0,
      rejectHint: rejectHint, context: context, responses: responses)
  }

  @inline(never)
  static func depthExceeded(_ depth: Int, limit: Int, at offset: Int) -> CodecError {
    codecError(.limitExceeded, at: offset, "responses nested \(depth) deep, over maxResponsesDepth = \(limit)")
  }

  /// The varint of a message field when its presence bit is set in `flags`, else 0.
  @inline(__always)
  mutating func flaggedVarint(_ flags: UInt64, _ bit: UInt64, _ what: StaticString) throws(CodecError) -> UInt64 {
    guard flags & bit != 0 else { return 0 }
    return try nonZeroVarint(what)
  }

  /// A list of messages at nesting level `depth`.
  mutating func messageList(_ what: StaticString, depth: Int) throws(CodecError) -> [Message] {
    let n = try count(
      what, limit: limits.maxMessages, limitName: "maxMessages", minElementSize: MinEncodedSize.message)
    var ms: [Message] = []
    // A Message is far larger in memory than its smallest encoding: grow as elements arrive.
    ms.reserveCapacity(min(n, 64))
    for _ in 0..<n { ms.append(try message(depth: depth)) }
    return ms
  }

  mutating func confChangeType(_ what: StaticString) throws(CodecError) -> ConfChangeType {
    let at = pos
    let b = try byte(what)
    guard let t = ConfChangeType(rawValue: b) else {
      throw codecError(.unknownConfChangeType, at: at, "\(what) \(b)")
    }
    return t
  }

  mutating func confChange() throws(CodecError) -> ConfChange {
    let type = try confChangeType("conf change type")
    let id = try varint("conf change id")
    let nodeID = try varint("conf change node id")
    let context = try bytes("conf change context length")
    return ConfChange(id: id, type: type, nodeID: nodeID, context: context)
  }

  mutating func confChangeV2() throws(CodecError) -> ConfChangeV2 {
    let at = pos
    let b = try byte("conf change transition")
    guard let transition = ConfChangeTransition(rawValue: b) else {
      throw codecError(.unknownConfChangeTransition, at: at, "conf change transition \(b)")
    }
    let n = try count(
      "conf change count", limit: limits.maxNodes, limitName: "maxNodes",
      minElementSize: MinEncodedSize.confChangeSingle)
    var changes: [ConfChangeSingle] = []
    changes.reserveCapacity(n)
    for _ in 0..<n {
      let type = try confChangeType("conf change type")
      let nodeID = try varint("conf change node id")
      changes.append(ConfChangeSingle(type: type, nodeID: nodeID))
    }
    let context = try bytes("conf change context length")
    return ConfChangeV2(transition: transition, changes: changes, context: context)
  }
}
