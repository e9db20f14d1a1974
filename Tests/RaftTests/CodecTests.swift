import Raft
import XCTest

/// Deterministic generator for the randomized codec tests.
private typealias CodecTestRNG = SplitMix64

/// Values at the varint boundaries plus a random one.
private func codecTestValue(_ rng: inout CodecTestRNG) -> UInt64 {
  let edges: [UInt64] = [0, 1, 127, 128, 16383, 16384, UInt64(UInt32.max), 1 << 63, UInt64.max - 1, UInt64.max]
  if Bool.random(using: &rng) { return edges.randomElement(using: &rng)! }
  return rng.next() >> UInt64.random(in: 0..<64, using: &rng)
}

private func codecTestBytes(_ rng: inout CodecTestRNG, max: Int) -> [UInt8] {
  (0..<Int.random(in: 0...max, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

private func codecTestIDs(_ rng: inout CodecTestRNG) -> [UInt64] {
  (0..<Int.random(in: 0...3, using: &rng)).map { _ in codecTestValue(&rng) }
}

private func codecTestEntry(_ rng: inout CodecTestRNG) -> Entry {
  Entry(
    term: codecTestValue(&rng), index: codecTestValue(&rng),
    type: [EntryType.normal, .confChange, .confChangeV2].randomElement(using: &rng)!,
    data: codecTestBytes(&rng, max: 8))
}

private func codecTestConfState(_ rng: inout CodecTestRNG) -> ConfState {
  ConfState(
    voters: codecTestIDs(&rng), learners: codecTestIDs(&rng), votersOutgoing: codecTestIDs(&rng),
    learnersNext: codecTestIDs(&rng), autoLeave: Bool.random(using: &rng))
}

private func codecTestSnapshot(_ rng: inout CodecTestRNG) -> Snapshot {
  Snapshot(
    data: codecTestBytes(&rng, max: 6),
    metadata: SnapshotMetadata(
      confState: codecTestConfState(&rng), index: codecTestValue(&rng), term: codecTestValue(&rng)))
}

private func codecTestMessage(_ rng: inout CodecTestRNG, depth: Int) -> Message {
  // Each field is zero half of the time so that all presence flag combinations occur.
  func maybe(_ rng: inout CodecTestRNG) -> UInt64 { Bool.random(using: &rng) ? 0 : codecTestValue(&rng) }
  var m = Message(type: MessageType.allCases.randomElement(using: &rng)!)
  m.to = maybe(&rng)
  m.from = maybe(&rng)
  m.term = maybe(&rng)
  m.logTerm = maybe(&rng)
  m.index = maybe(&rng)
  m.commit = maybe(&rng)
  m.vote = maybe(&rng)
  m.rejectHint = maybe(&rng)
  m.reject = Bool.random(using: &rng)
  m.entries = (0..<Int.random(in: 0...3, using: &rng)).map { _ in codecTestEntry(&rng) }
  m.snapshot = Bool.random(using: &rng) ? codecTestSnapshot(&rng) : nil
  m.context = codecTestBytes(&rng, max: 4)
  if depth > 0 {
    m.responses = (0..<Int.random(in: 0...2, using: &rng)).map { _ in codecTestMessage(&rng, depth: depth - 1) }
  }
  return m
}

/// Asserts that `body` throws a `CodecError` of kind `kind` (and at `offset` when given).
private func assertCodecError<T>(
  _ kind: CodecError.Kind, offset: Int? = nil, _ body: () throws -> T,
  file: StaticString = #filePath, line: UInt = #line
) {
  do {
    let v = try body()
    XCTFail("expected \(kind), decoded \(v)", file: file, line: line)
  } catch let e as CodecError {
    XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
    if let offset { XCTAssertEqual(e.offset, offset, "\(e)", file: file, line: line) }
  } catch {
    XCTFail("unexpected error type \(error)", file: file, line: line)
  }
}

/// Checks the body API of `value`: appended after existing bytes it takes exactly `encodedSize`,
/// matches its record minus the version byte, decodes back through both buffer forms with the
/// cursor ending at the end, and every truncation throws without moving the cursor.
private func assertBodyRoundTrip<T: RaftCodable & Equatable>(
  _ value: T, file: StaticString = #filePath, line: UInt = #line
) throws {
  var buf: [UInt8] = [0xEE]
  RaftCodec.encode(value, into: &buf)
  XCTAssertEqual(buf[0], 0xEE, file: file, line: line)
  XCTAssertEqual(buf.count - 1, RaftCodec.encodedSize(value), file: file, line: line)
  XCTAssertEqual(RaftCodec.encodeRecord(value), [RaftCodec.version] + buf.dropFirst(), file: file, line: line)
  var off = 1
  XCTAssertEqual(try RaftCodec.decode(T.self, from: buf, offset: &off), value, file: file, line: line)
  XCTAssertEqual(off, buf.count, file: file, line: line)
  try buf.withUnsafeBytes { raw in
    var rawOff = 1
    XCTAssertEqual(try RaftCodec.decode(T.self, from: raw, offset: &rawOff), value, file: file, line: line)
    XCTAssertEqual(rawOff, raw.count, file: file, line: line)
  }
  for n in 1..<buf.count {
    var cut = 1
    XCTAssertThrowsError(
      try RaftCodec.decode(T.self, from: Array(buf[0..<n]), offset: &cut), "prefix \(n)", file: file, line: line)
    XCTAssertEqual(cut, 1, file: file, line: line)
  }
}

final class CodecTests: XCTestCase {
  // MARK: Round trips

  func testEntryRoundTrips() throws {
    let big = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    let entries = [
      Entry(),
      Entry(term: 1, index: 1),
      Entry(term: UInt64.max, index: UInt64.max, type: .confChangeV2, data: [0]),
      Entry(term: 127, index: 128, type: .confChange, data: [1, 2, 3]),
      Entry(term: 5, index: 1 << 40, data: big),
    ]
    var buf: [UInt8] = [0xEE]  // bodies are appended after existing content
    for e in entries {
      let before = buf.count
      RaftCodec.encode(e, into: &buf)
      XCTAssertEqual(buf.count - before, RaftCodec.encodedSize(e))
    }
    XCTAssertEqual(buf[0], 0xEE)
    var offset = 1
    for e in entries {
      XCTAssertEqual(try RaftCodec.decode(Entry.self, from: buf, offset: &offset), e)
    }
    XCTAssertEqual(offset, buf.count)
    // The same through the raw buffer API.
    try buf.withUnsafeBytes { raw in
      var off = 1
      for e in entries { XCTAssertEqual(try RaftCodec.decode(Entry.self, from: raw, offset: &off), e) }
      XCTAssertEqual(off, raw.count)
    }
    for e in entries {
      XCTAssertEqual(try RaftCodec.decodeRecord(Entry.self, from: RaftCodec.encodeRecord(e)), e)
    }
    // A list of entries, empty and not.
    for list in [[], entries] {
      var out: [UInt8] = []
      RaftCodec.encode(entries: list, into: &out)
      XCTAssertEqual(out.count, RaftCodec.encodedSize(entries: list))
      var off = 0
      XCTAssertEqual(try RaftCodec.decodeEntries(out, offset: &off), list)
      XCTAssertEqual(off, out.count)
    }
  }

  func testStateRoundTrips() throws {
    for hs in [HardState(), HardState(term: 1, vote: 2, commit: 3), HardState(term: .max, vote: .max, commit: .max)] {
      let rec = RaftCodec.encodeRecord(hs)
      XCTAssertEqual(rec.count, RaftCodec.encodedRecordSize(hs))
      XCTAssertEqual(try RaftCodec.decodeRecord(HardState.self, from: rec), hs)
    }
    let confStates = [
      ConfState(),
      ConfState(voters: [1, 2, 3]),
      ConfState(voters: [1], learners: [UInt64.max], votersOutgoing: [1, 2], learnersNext: [2], autoLeave: true),
      ConfState(autoLeave: true),
    ]
    for cs in confStates {
      var out: [UInt8] = []
      RaftCodec.encode(cs, into: &out)
      XCTAssertEqual(out.count, RaftCodec.encodedSize(cs))
      var off = 0
      XCTAssertEqual(try RaftCodec.decode(ConfState.self, from: out, offset: &off), cs)
      XCTAssertEqual(try RaftCodec.decodeRecord(ConfState.self, from: RaftCodec.encodeRecord(cs)), cs)
      let md = SnapshotMetadata(confState: cs, index: UInt64.max, term: 0)
      XCTAssertEqual(try RaftCodec.decodeRecord(SnapshotMetadata.self, from: RaftCodec.encodeRecord(md)), md)
      for data in [[], [UInt8](repeating: 7, count: 70_000)] {
        let snap = Snapshot(data: data, metadata: md)
        var sout: [UInt8] = []
        RaftCodec.encode(snap, into: &sout)
        XCTAssertEqual(sout.count, RaftCodec.encodedSize(snap))
        var soff = 0
        XCTAssertEqual(try RaftCodec.decode(Snapshot.self, from: sout, offset: &soff), snap)
        XCTAssertEqual(soff, sout.count)
      }
    }
  }

  func testConfChangeRoundTrips() throws {
    let v1s = [ConfChange(), ConfChange(id: .max, type: .addLearnerNode, nodeID: .max, context: [1, 2])]
    for cc in v1s {
      XCTAssertEqual(try RaftCodec.decodeRecord(ConfChange.self, from: RaftCodec.encodeRecord(cc)), cc)
    }
    let v2s = [
      ConfChangeV2(),
      ConfChangeV2(
        transition: .jointExplicit,
        changes: [ConfChangeSingle(type: .removeNode, nodeID: 3), ConfChangeSingle(type: .updateNode, nodeID: .max)],
        context: [9]),
    ]
    for cc in v2s {
      let rec = RaftCodec.encodeRecord(cc)
      XCTAssertEqual(rec.count, RaftCodec.encodedRecordSize(cc))
      XCTAssertEqual(try RaftCodec.decodeRecord(ConfChangeV2.self, from: rec), cc)
    }
  }

  func testEveryTypeThroughTheBodyAPI() throws {
    let cs = ConfState(voters: [1, 300], learners: [4], votersOutgoing: [1], learnersNext: [2], autoLeave: true)
    let snap = Snapshot(data: [1, 2], metadata: SnapshotMetadata(confState: cs, index: 9, term: 2))
    try assertBodyRoundTrip(Entry(term: 3, index: 4, type: .confChange, data: [1, 2, 3]))
    try assertBodyRoundTrip(Entry(term: 70000, index: 5))
    try assertBodyRoundTrip(HardState(term: .max, vote: 1, commit: 300))
    try assertBodyRoundTrip(ConfState())
    try assertBodyRoundTrip(cs)
    try assertBodyRoundTrip(snap.metadata)
    try assertBodyRoundTrip(snap)
    try assertBodyRoundTrip(Message(type: .msgHup))
    try assertBodyRoundTrip(
      Message(
        type: .msgStorageAppend, to: 2, from: 1, term: 3, logTerm: 2, index: 300,
        entries: [Entry(term: 3, index: 301, data: [9])], commit: 1, vote: 2, snapshot: snap, reject: true,
        rejectHint: 5, context: [7], responses: [Message(type: .msgStorageAppendResp, to: 1, index: 3)]))
    try assertBodyRoundTrip(ConfChange(id: 1, type: .addLearnerNode, nodeID: 2, context: [3]))
    try assertBodyRoundTrip(ConfChangeV2())
    try assertBodyRoundTrip(
      ConfChangeV2(
        transition: .jointImplicit,
        changes: [ConfChangeSingle(type: .addNode, nodeID: 1), ConfChangeSingle(type: .removeNode, nodeID: 300)],
        context: [4]))
  }

  func testMessageRoundTrips() throws {
    let snap = Snapshot(
      data: [1, 2, 3], metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2]), index: 10, term: 2))
    var messages: [Message] = MessageType.allCases.map { Message(type: $0) }
    messages.append(
      Message(
        type: .msgStorageAppend, to: .max, from: .max, term: .max, logTerm: .max, index: .max,
        entries: [Entry(term: .max, index: .max, data: [UInt8](repeating: 1, count: 300))], commit: .max,
        vote: .max, snapshot: snap, reject: true, rejectHint: .max, context: [UInt8](repeating: 2, count: 200),
        responses: [
          Message(type: .msgStorageAppendResp, to: localAppendThread, index: 9, snapshot: snap),
          Message(
            type: .msgStorageApply, responses: [Message(type: .msgStorageApplyResp, entries: [Entry(index: 3)])]),
        ]))
    messages.append(Message(type: .msgSnap, to: 2, from: 1, term: 3, snapshot: Snapshot()))  // empty but present
    messages.append(Message(type: .msgSnap, to: 2, from: 1, term: 3, snapshot: nil))
    for m in messages {
      let bytes = RaftCodec.encodeMessage(m)
      XCTAssertEqual(bytes.count, RaftCodec.encodedMessageSize(m))
      XCTAssertEqual(try RaftCodec.decodeMessage(bytes), m)
      XCTAssertEqual(try RaftCodec.decodeRecord(Message.self, from: bytes), m)
      var appended: [UInt8] = [42]
      RaftCodec.encodeMessage(m, into: &appended)
      XCTAssertEqual(Array(appended.dropFirst()), bytes)
    }
    // Presence matters: an empty snapshot and no snapshot decode differently.
    XCTAssertNotNil(try RaftCodec.decodeMessage(RaftCodec.encodeMessage(messages[messages.count - 2])).snapshot)
    XCTAssertNil(try RaftCodec.decodeMessage(RaftCodec.encodeMessage(messages[messages.count - 1])).snapshot)

    for batch in [[], messages] {
      let bytes = RaftCodec.encodeMessages(batch)
      XCTAssertEqual(bytes.count, RaftCodec.encodedMessagesSize(batch))
      XCTAssertEqual(try RaftCodec.decodeMessages(bytes), batch)
      var appended: [UInt8] = [1, 2]
      RaftCodec.encodeMessages(batch, into: &appended)
      XCTAssertEqual(Array(appended.dropFirst(2)), bytes)
      try bytes.withUnsafeBytes { raw in XCTAssertEqual(try RaftCodec.decodeMessages(raw), batch) }
    }
  }

  func testRandomMessagesRoundTrip() throws {
    var rng = CodecTestRNG(seed: 1)
    for _ in 0..<1000 {
      let m = codecTestMessage(&rng, depth: 2)
      let bytes = RaftCodec.encodeMessage(m)
      XCTAssertEqual(bytes.count, RaftCodec.encodedMessageSize(m))
      XCTAssertEqual(try RaftCodec.decodeMessage(bytes), m)
    }
  }

  // MARK: Golden bytes

  func testGoldenBytes() throws {
    // version 1, MsgHeartbeat, flags to|from|term|commit, to 2, from 1, term 5, commit 3
    let hb = Message(type: .msgHeartbeat, to: 2, from: 1, term: 5, commit: 3)
    XCTAssertEqual(RaftCodec.encodeMessage(hb), [0x01, 0x08, 0x27, 0x02, 0x01, 0x05, 0x03])

    // MsgApp, flags to..entries (0x7f), to 2, from 1, term 3, logTerm 3, index 10, commit 9,
    // 1 entry: header (normal, has data), term 3, index 11, data [aa bb]
    let app = Message(
      type: .msgApp, to: 2, from: 1, term: 3, logTerm: 3, index: 10,
      entries: [Entry(term: 3, index: 11, data: [0xAA, 0xBB])], commit: 9)
    XCTAssertEqual(
      RaftCodec.encodeMessage(app),
      [0x01, 0x03, 0x7F, 0x02, 0x01, 0x03, 0x03, 0x0A, 0x09, 0x01, 0x04, 0x03, 0x0B, 0x02, 0xAA, 0xBB])

    // A rejecting MsgAppResp needs the second flags byte: 0x19f = to|from|term|logTerm|index|reject|rejectHint.
    let resp = Message(
      type: .msgAppResp, to: 1, from: 2, term: 3, logTerm: 2, index: 10, reject: true, rejectHint: 7)
    XCTAssertEqual(
      RaftCodec.encodeMessage(resp), [0x01, 0x04, 0x9F, 0x03, 0x01, 0x02, 0x03, 0x02, 0x0A, 0x07])

    // Batch: version, count 2, MsgHup with no fields, MsgVoteResp to 300 (2-byte varint).
    XCTAssertEqual(
      RaftCodec.encodeMessages([Message(type: .msgHup), Message(type: .msgVoteResp, to: 300)]),
      [0x01, 0x02, 0x00, 0x00, 0x06, 0x01, 0xAC, 0x02])

    // Entry bodies: header, term, index [, length, data].
    var e: [UInt8] = []
    RaftCodec.encode(Entry(term: 1, index: 2, type: .confChangeV2), into: &e)
    XCTAssertEqual(e, [0x02, 0x01, 0x02])
    e = []
    RaftCodec.encode(Entry(term: UInt64.max, index: 0, data: [7]), into: &e)
    XCTAssertEqual(e, [0x04] + [UInt8](repeating: 0xFF, count: 9) + [0x01, 0x00, 0x01, 0x07])

    XCTAssertEqual(RaftCodec.encodeRecord(HardState(term: 2, vote: 1, commit: 128)), [0x01, 0x02, 0x01, 0x80, 0x01])
    XCTAssertEqual(
      RaftCodec.encodeRecord(ConfState(voters: [1, 2], learnersNext: [3], autoLeave: true)),
      [0x01, 0x19, 0x02, 0x01, 0x02, 0x01, 0x03])
  }

  func testSmallMessagesAreSmall() {
    let big: UInt64 = 1 << 20  // realistic ids/terms/indexes take 3 varint bytes
    let hb = Message(type: .msgHeartbeat, to: 2, from: 1, term: big, commit: big)
    XCTAssertLessThanOrEqual(RaftCodec.encodeMessage(hb).count, 11)
    let hbResp = Message(type: .msgHeartbeatResp, to: 1, from: 2, term: 7)
    XCTAssertEqual(RaftCodec.encodeMessage(hbResp).count, 6)
    let appResp = Message(type: .msgAppResp, to: 1, from: 2, term: big, index: big)
    XCTAssertLessThanOrEqual(RaftCodec.encodeMessage(appResp).count, 11)
    // MsgApp overhead over its entries' bodies stays small.
    let entries = (0..<10).map { Entry(term: big, index: big + UInt64($0), data: [UInt8](repeating: 0, count: 100)) }
    let app = Message(type: .msgApp, to: 2, from: 1, term: big, logTerm: big, index: big, entries: entries, commit: big)
    let bodies = entries.reduce(0) { $0 + RaftCodec.encodedSize($1) }
    XCTAssertLessThanOrEqual(RaftCodec.encodeMessage(app).count - bodies, 20)
    // An entry costs header + term + index + length + data.
    XCTAssertEqual(RaftCodec.encodedSize(entries[0]), 1 + 3 + 3 + 1 + 100)
  }

  // MARK: Malformed input

  func testEveryTruncationThrows() throws {
    let snap = Snapshot(data: [1, 2], metadata: SnapshotMetadata(confState: ConfState(voters: [1, 300]), index: 9))
    let m = Message(
      type: .msgStorageAppend, to: 1 << 40, from: 2, term: 3, logTerm: 300, index: 4,
      entries: [Entry(term: 3, index: 4, data: [1, 2, 3]), Entry(term: 70000, index: 5)], commit: 1,
      vote: 2, snapshot: snap, reject: true, rejectHint: 1, context: [5, 6],
      responses: [Message(type: .msgAppResp, to: 2, context: [1]), Message(type: .msgStorageAppendResp, index: 3)])
    let encodings: [(String, [UInt8], ([UInt8]) throws -> Any)] = [
      ("message", RaftCodec.encodeMessage(m), { try RaftCodec.decodeMessage($0) }),
      ("batch", RaftCodec.encodeMessages([m, m]), { try RaftCodec.decodeMessages($0) }),
      ("entry", RaftCodec.encodeRecord(m.entries[0]), { try RaftCodec.decodeRecord(Entry.self, from: $0) }),
      (
        "hardState", RaftCodec.encodeRecord(HardState(term: .max, vote: 1, commit: 300)),
        {
          try RaftCodec.decodeRecord(HardState.self, from: $0)
        }
      ),
      ("snapshot", RaftCodec.encodeRecord(snap), { try RaftCodec.decodeRecord(Snapshot.self, from: $0) }),
      (
        "confChangeV2", RaftCodec.encodeRecord(ConfChangeV2(changes: [ConfChangeSingle(type: .addNode, nodeID: 1)])),
        {
          try RaftCodec.decodeRecord(ConfChangeV2.self, from: $0)
        }
      ),
      (
        "confChange", RaftCodec.encodeRecord(ConfChange(id: 1, nodeID: 2, context: [3])),
        {
          try RaftCodec.decodeRecord(ConfChange.self, from: $0)
        }
      ),
    ]
    for (name, full, decode) in encodings {
      XCTAssertNoThrow(try decode(full), name)
      for n in 0..<full.count {
        do {
          _ = try decode(Array(full[0..<n]))
          XCTFail("\(name): prefix of \(n) of \(full.count) bytes decoded")
        } catch let e as CodecError {
          XCTAssert([.truncated, .lengthTooLarge].contains(e.kind), "\(name) prefix \(n): \(e)")
          XCTAssertLessThanOrEqual(e.offset, n, "\(name) prefix \(n): \(e)")
        }
      }
    }
  }

  func testRandomBytesNeverCrash() {
    var rng = CodecTestRNG(seed: 42)
    var decoded = 0
    for i in 0..<4000 {
      var bytes = codecTestBytes(&rng, max: 48)
      // A small alphabet makes valid encodings (and their near misses) far more likely.
      if i % 3 == 0 { bytes = bytes.map { $0 % 5 } }
      if i % 2 == 0, !bytes.isEmpty { bytes[0] = RaftCodec.version }
      // Whatever decodes must re-encode to exactly the same bytes (one encoding per value).
      if let m = try? RaftCodec.decodeMessage(bytes) {
        decoded += 1
        XCTAssertEqual(RaftCodec.encodeMessage(m), bytes)
      }
      if let ms = try? RaftCodec.decodeMessages(bytes) {
        decoded += 1
        XCTAssertEqual(RaftCodec.encodeMessages(ms), bytes)
      }
      if let e = try? RaftCodec.decodeRecord(Entry.self, from: bytes) {
        decoded += 1
        XCTAssertEqual(RaftCodec.encodeRecord(e), bytes)
      }
      if let s = try? RaftCodec.decodeRecord(Snapshot.self, from: bytes) {
        XCTAssertEqual(RaftCodec.encodeRecord(s), bytes)
      }
      if let c = try? RaftCodec.decodeRecord(ConfState.self, from: bytes) {
        XCTAssertEqual(RaftCodec.encodeRecord(c), bytes)
      }
      if let c = try? RaftCodec.decodeRecord(ConfChangeV2.self, from: bytes) {
        XCTAssertEqual(RaftCodec.encodeRecord(c), bytes)
      }
      if let h = try? RaftCodec.decodeRecord(HardState.self, from: bytes) {
        XCTAssertEqual(RaftCodec.encodeRecord(h), bytes)
      }
      // Cursor decoding from arbitrary offsets, including out-of-range ones.
      var off = Int.random(in: -2...(bytes.count + 2), using: &rng)
      let start = off
      if (try? RaftCodec.decode(Entry.self, from: bytes, offset: &off)) == nil { XCTAssertEqual(off, start) }
    }
    XCTAssertGreaterThan(decoded, 0)
  }

  func testMutatedEncodingsNeverCrash() {
    var rng = CodecTestRNG(seed: 7)
    for _ in 0..<3000 {
      let m = codecTestMessage(&rng, depth: 2)
      var bytes = RaftCodec.encodeMessages([m])
      for _ in 0..<Int.random(in: 1...3, using: &rng) {
        bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
      }
      if let ms = try? RaftCodec.decodeMessages(bytes) {
        XCTAssertEqual(RaftCodec.encodeMessages(ms), bytes)
      }
    }
  }

  func testUnknownVersionRejected() {
    let body = RaftCodec.encodeMessage(Message(type: .msgHeartbeat, to: 1)).dropFirst()
    for v: UInt8 in [0, 2, 0xFF] {
      assertCodecError(.unknownVersion, offset: 0) { try RaftCodec.decodeMessage([v] + body) }
      assertCodecError(.unknownVersion, offset: 0) { try RaftCodec.decodeMessages([v, 0]) }
      assertCodecError(.unknownVersion, offset: 0) { try RaftCodec.decodeRecord(HardState.self, from: [v, 0, 0, 0]) }
    }
    assertCodecError(.truncated, offset: 0) { try RaftCodec.decodeMessage([]) }
  }

  func testUnknownEnumValuesRejected() {
    assertCodecError(.unknownMessageType, offset: 1) { try RaftCodec.decodeMessage([1, 24, 0]) }
    assertCodecError(.unknownMessageType, offset: 4) { try RaftCodec.decodeMessages([1, 2, 0, 0, 0xFF, 0]) }
    // Entry header type 3.
    assertCodecError(.unknownEntryType, offset: 1) { try RaftCodec.decodeRecord(Entry.self, from: [1, 3, 0, 0]) }
    // ... and inside a message: MsgApp, flags entries, 1 entry with type 3.
    assertCodecError(.unknownEntryType, offset: 4) { try RaftCodec.decodeMessage([1, 3, 0x40, 1, 3, 1, 1]) }
    assertCodecError(.unknownConfChangeType, offset: 1) {
      try RaftCodec.decodeRecord(ConfChange.self, from: [1, 4, 0, 0, 0])
    }
    assertCodecError(.unknownConfChangeType, offset: 3) {
      try RaftCodec.decodeRecord(ConfChangeV2.self, from: [1, 0, 1, 9, 1, 0])
    }
    assertCodecError(.unknownConfChangeTransition, offset: 1) {
      try RaftCodec.decodeRecord(ConfChangeV2.self, from: [1, 3, 0, 0])
    }
  }

  func testReservedBitsAndNonCanonicalRejected() {
    assertCodecError(.reservedBits, offset: 0) {
      var off = 0
      return try RaftCodec.decode(Entry.self, from: [0x08, 1, 1], offset: &off)
    }
    assertCodecError(.reservedBits, offset: 1) { try RaftCodec.decodeRecord(ConfState.self, from: [1, 0x20]) }
    // Message flags bit 13.
    assertCodecError(.reservedBits, offset: 2) { try RaftCodec.decodeMessage([1, 0, 0x80, 0x40]) }
    // `to` flagged but zero.
    assertCodecError(.nonCanonical, offset: 3) { try RaftCodec.decodeMessage([1, 8, 0x01, 0x00]) }
    // Entry data flagged but empty.
    assertCodecError(.nonCanonical, offset: 4) { try RaftCodec.decodeRecord(Entry.self, from: [1, 0x04, 1, 1, 0]) }
    // Entries / context / responses flagged but empty.
    assertCodecError(.nonCanonical, offset: 3) { try RaftCodec.decodeMessage([1, 3, 0x40, 0]) }
    assertCodecError(.nonCanonical, offset: 4) { try RaftCodec.decodeMessage([1, 3, 0x80, 0x10, 0]) }
    assertCodecError(.nonCanonical, offset: 4) { try RaftCodec.decodeMessage([1, 19, 0x80, 0x20, 0]) }
    // A ConfState list flagged but empty.
    assertCodecError(.nonCanonical, offset: 2) { try RaftCodec.decodeRecord(ConfState.self, from: [1, 0x01, 0]) }
    // Over-long varint (0 written in two bytes) for HardState.term.
    assertCodecError(.nonCanonical, offset: 1) { try RaftCodec.decodeRecord(HardState.self, from: [1, 0x80, 0, 0, 0]) }
  }

  func testVarints() throws {
    for v: UInt64 in [0, 1, 127, 128, 300, 1 << 35, UInt64.max - 1, UInt64.max] {
      var out: [UInt8] = []
      RaftCodec.appendVarint(v, into: &out)
      XCTAssertEqual(out.count, RaftCodec.varintLength(v))
      try out.withUnsafeBytes { raw in
        var off = 0
        XCTAssertEqual(try RaftCodec.readVarint(raw, offset: &off), v)
        XCTAssertEqual(off, out.count)
      }
    }
    func read(_ bytes: [UInt8]) throws -> UInt64 {
      try bytes.withUnsafeBytes { raw in
        var off = 0
        return try RaftCodec.readVarint(raw, offset: &off)
      }
    }
    XCTAssertEqual(try read([UInt8](repeating: 0xFF, count: 9) + [0x01]), UInt64.max)
    assertCodecError(.varintOverflow, offset: 0) { try read([UInt8](repeating: 0xFF, count: 9) + [0x02]) }
    assertCodecError(.varintOverflow, offset: 0) { try read([UInt8](repeating: 0x80, count: 11) + [0x00]) }
    assertCodecError(.nonCanonical, offset: 0) { try read([0x80, 0x00]) }
    assertCodecError(.nonCanonical, offset: 0) { try read([UInt8](repeating: 0x80, count: 9) + [0x00]) }
    assertCodecError(.truncated, offset: 0) { try read([0x80]) }
    assertCodecError(.truncated, offset: 0) { try read([]) }
    // Overflow inside a message field.
    assertCodecError(.varintOverflow, offset: 3) {
      try RaftCodec.decodeMessage([1, 8, 0x01] + [UInt8](repeating: 0xFF, count: 10) + [0x01])
    }
  }

  func testLengthsBeyondInputRejected() {
    // Entry data length 5 with 2 bytes left.
    assertCodecError(.lengthTooLarge, offset: 4) {
      try RaftCodec.decodeRecord(Entry.self, from: [1, 0x04, 1, 1, 5, 9, 9])
    }
    // 100 messages in a batch of 4 bytes.
    assertCodecError(.lengthTooLarge, offset: 1) { try RaftCodec.decodeMessages([1, 100, 0, 0]) }
    // A count of 2^60 is over the limit before it is over the input.
    assertCodecError(.limitExceeded, offset: 1) {
      try RaftCodec.decodeMessages([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10])
    }
    // Message claims 3 entries but only 6 bytes follow (each entry takes at least 3).
    assertCodecError(.lengthTooLarge, offset: 3) { try RaftCodec.decodeMessage([1, 3, 0x40, 3, 0, 1, 1, 0, 1, 1]) }
    // A huge varint length is not accepted as a negative Int.
    assertCodecError(.limitExceeded, offset: 4) {
      try RaftCodec.decodeRecord(ConfChange.self, from: [1, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 9) + [1])
    }
  }

  func testTrailingBytesRejected() {
    let bytes = RaftCodec.encodeMessage(Message(type: .msgHeartbeat, to: 1, from: 2))
    assertCodecError(.trailingBytes, offset: bytes.count) { try RaftCodec.decodeMessage(bytes + [0]) }
    let batch = RaftCodec.encodeMessages([Message(type: .msgHup)])
    assertCodecError(.trailingBytes, offset: batch.count) { try RaftCodec.decodeMessages(batch + [1, 2]) }
    let rec = RaftCodec.encodeRecord(HardState(term: 1))
    assertCodecError(.trailingBytes, offset: rec.count) { try RaftCodec.decodeRecord(HardState.self, from: rec + [0]) }
    // Cursor decoding does not care what follows.
    var off = 0
    XCTAssertEqual(try RaftCodec.decode(Message.self, from: Array(bytes.dropFirst()) + [0xFF], offset: &off).to, 1)
    XCTAssertEqual(off, bytes.count - 1)
  }

  func testLimitsEnforced() throws {
    let entries = (1...3).map { Entry(term: 1, index: UInt64($0), data: [UInt8](repeating: 1, count: 10)) }
    let app = RaftCodec.encodeMessage(Message(type: .msgApp, to: 2, entries: entries))
    XCTAssertNoThrow(try RaftCodec.decodeMessage(app, limits: CodecLimits(maxEntries: 3)))
    assertCodecError(.limitExceeded) { try RaftCodec.decodeMessage(app, limits: CodecLimits(maxEntries: 2)) }
    XCTAssertNoThrow(try RaftCodec.decodeMessage(app, limits: CodecLimits(maxBytesLength: 10)))
    assertCodecError(.limitExceeded) { try RaftCodec.decodeMessage(app, limits: CodecLimits(maxBytesLength: 9)) }

    let ctx = RaftCodec.encodeMessage(Message(type: .msgReadIndex, context: [UInt8](repeating: 0, count: 64)))
    assertCodecError(.limitExceeded, offset: 4) {
      try RaftCodec.decodeMessage(ctx, limits: CodecLimits(maxBytesLength: 63))
    }

    let snap = RaftCodec.encodeRecord(Snapshot(data: [UInt8](repeating: 0, count: 32)))
    assertCodecError(.limitExceeded) {
      try RaftCodec.decodeRecord(Snapshot.self, from: snap, limits: CodecLimits(maxBytesLength: 31))
    }
    let cs = RaftCodec.encodeRecord(ConfState(voters: [1, 2, 3], learners: [4]))
    XCTAssertNoThrow(try RaftCodec.decodeRecord(ConfState.self, from: cs, limits: CodecLimits(maxNodes: 3)))
    assertCodecError(.limitExceeded) {
      try RaftCodec.decodeRecord(ConfState.self, from: cs, limits: CodecLimits(maxNodes: 2))
    }

    let batch = RaftCodec.encodeMessages([Message(type: .msgHup), Message(type: .msgBeat)])
    XCTAssertNoThrow(try RaftCodec.decodeMessages(batch, limits: CodecLimits(maxMessages: 2)))
    assertCodecError(.limitExceeded, offset: 1) {
      try RaftCodec.decodeMessages(batch, limits: CodecLimits(maxMessages: 1))
    }

    // Responses nested two deep.
    let nested = RaftCodec.encodeMessage(
      Message(
        type: .msgStorageAppend,
        responses: [Message(type: .msgStorageApply, responses: [Message(type: .msgStorageApplyResp)])]))
    XCTAssertNoThrow(try RaftCodec.decodeMessage(nested, limits: CodecLimits(maxResponsesDepth: 2)))
    assertCodecError(.limitExceeded) { try RaftCodec.decodeMessage(nested, limits: CodecLimits(maxResponsesDepth: 1)) }
    assertCodecError(.limitExceeded) { try RaftCodec.decodeMessage(nested, limits: CodecLimits(maxResponsesDepth: 0)) }
    do throws(CodecError) {
      _ = try RaftCodec.decodeMessage(nested, limits: CodecLimits(maxResponsesDepth: 1))
    } catch {
      XCTAssert(error.description.contains("maxResponsesDepth"), error.description)
    }
    // Without a limit, a hostile deeply nested chain is still refused by the default limits.
    var chain: [UInt8] = [1]
    for _ in 0..<1000 { chain += [19, 0x80, 0x20, 1] }  // MsgStorageAppend, flags responses, 1 response
    chain += [0, 0]
    assertCodecError(.limitExceeded) { try RaftCodec.decodeMessage(chain) }
  }

  func testErrorsDescribeTheProblem() {
    do throws(CodecError) {
      _ = try RaftCodec.decodeRecord(Entry.self, from: [1, 0x04, 1, 1, 5, 9])
      XCTFail("decoded")
    } catch {
      XCTAssertEqual(error.kind, .lengthTooLarge)
      XCTAssertEqual(error.offset, 4)
      XCTAssert(error.description.contains("entry data"), error.description)
      XCTAssert(error.description.contains("at byte 4"), error.description)
    }
    do throws(CodecError) {
      _ = try RaftCodec.decodeMessage([1, 8])
      XCTFail("decoded")
    } catch {
      XCTAssertEqual(error.kind, .truncated)
      XCTAssert(error.description.contains("message flags"), error.description)
    }
  }

  func testFailedCursorDecodeLeavesOffset() {
    let bytes: [UInt8] = [0x00, 0x01, 0x02, 0x04, 0x01]
    var off = 0
    XCTAssertEqual(try RaftCodec.decode(Entry.self, from: bytes, offset: &off), Entry(term: 1, index: 2))
    XCTAssertEqual(off, 3)
    XCTAssertThrowsError(try RaftCodec.decode(Entry.self, from: bytes, offset: &off))
    XCTAssertEqual(off, 3)
    var bad = -1
    XCTAssertThrowsError(try RaftCodec.decode(Entry.self, from: bytes, offset: &bad))
    bad = 99
    XCTAssertThrowsError(try RaftCodec.decode(Entry.self, from: bytes, offset: &bad))
    XCTAssertEqual(bad, 99)
  }
}
