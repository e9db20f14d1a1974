import Raft
import XCTest

/// The describe format must match etcd-raft's `util.go` character for character: the scenario
/// scripts compare these strings literally.
final class DescribeFormatTests: XCTestCase {
  // MARK: Go's %q

  func testQuotePlainASCII() {
    XCTAssertEqual(goQuote(Array("foo".utf8)), #""foo""#)
    XCTAssertEqual(goQuote([UInt8]()), #""""#)
    XCTAssertEqual(goQuote(Array("a b~".utf8)), #""a b~""#)
  }

  func testQuoteEscapesQuoteAndBackslash() {
    XCTAssertEqual(goQuote(Array(#"say "hi" \o/"#.utf8)), #""say \"hi\" \\o/""#)
  }

  func testQuoteControlCharacters() {
    let bytes: [UInt8] = [0x00, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B, 0x1F, 0x7F]
    XCTAssertEqual(goQuote(bytes), #""\x00\a\b\t\n\v\f\r\x1b\x1f\x7f""#)
  }

  func testQuoteKeepsPrintableNonASCII() {
    // Letters, symbols and emoji are printable and kept as UTF-8.
    XCTAssertEqual(goQuote(Array("héllo €😀 日本".utf8)), "\"héllo €😀 日本\"")
  }

  func testQuoteEscapesNonPrintableRunes() {
    // NO-BREAK SPACE and SOFT HYPHEN are not printable in Go's sense.
    XCTAssertEqual(goQuote(Array("a\u{00A0}b\u{00AD}".utf8)), #""a\u00a0b\u00ad""#)
    // Zero width space (Cf), a private use character (Co), a line separator (Zl).
    XCTAssertEqual(goQuote(Array("\u{200B}\u{E000}\u{2028}".utf8)), #""\u200b\ue000\u2028""#)
    // Outside the BMP: \U with 8 digits.
    XCTAssertEqual(goQuote(Array("\u{F0000}".utf8)), #""\U000f0000""#)
    // C1 control.
    XCTAssertEqual(goQuote(Array("\u{0085}".utf8)), #""\u0085""#)
  }

  func testQuoteInvalidUTF8ByteByByte() {
    XCTAssertEqual(goQuote([0xFF]), #""\xff""#)
    XCTAssertEqual(goQuote([0x61, 0x80, 0x62]), #""a\x80b""#)
    // Overlong encoding of NUL.
    XCTAssertEqual(goQuote([0xC0, 0x80]), #""\xc0\x80""#)
    // An encoded surrogate (U+D800) is invalid.
    XCTAssertEqual(goQuote([0xED, 0xA0, 0x80]), #""\xed\xa0\x80""#)
    // Truncated sequences, also followed by a valid rune.
    XCTAssertEqual(goQuote([0xE2, 0x82]), #""\xe2\x82""#)
    XCTAssertEqual(goQuote([0xE2, 0x82, 0x41]), #""\xe2\x82A""#)
    // Beyond U+10FFFF.
    XCTAssertEqual(goQuote([0xF4, 0x90, 0x80, 0x80]), #""\xf4\x90\x80\x80""#)
    // The replacement character itself is valid and printable.
    XCTAssertEqual(goQuote([0xEF, 0xBF, 0xBD]), "\"\u{FFFD}\"")
  }

  // MARK: Entries

  func testDescribeNormalEntry() {
    XCTAssertEqual(describeEntry(Entry(term: 1, index: 2, data: Array("foo".utf8))), #"1/2 EntryNormal "foo""#)
    XCTAssertEqual(describeEntry(Entry(term: 1, index: 11)), #"1/11 EntryNormal """#)
    XCTAssertEqual(describeEntry(Entry(term: 3, index: 4, data: [0x00, 0xFF])), #"3/4 EntryNormal "\x00\xff""#)
  }

  func testDescribeEntryWithFormatter() {
    let upper: EntryFormatter = { String(decoding: $0, as: UTF8.self).uppercased() }
    let foo = Entry(term: 1, index: 2, data: Array("foo".utf8))
    XCTAssertEqual(describeEntry(foo, formatter: upper), "1/2 EntryNormal FOO")
    // An empty rendering leaves no trailing space.
    XCTAssertEqual(describeEntry(Entry(term: 1, index: 2), formatter: { _ in "" }), "1/2 EntryNormal")
  }

  func testDescribeConfChangeEntries() {
    let (t1, d1) = AnyConfChange.v1(ConfChange(type: .addNode, nodeID: 2)).entryPayload()
    XCTAssertEqual(describeEntry(Entry(term: 1, index: 4, type: t1, data: d1)), "1/4 EntryConfChange v2")

    let (t2, d2) = AnyConfChange.v1(ConfChange(type: .removeNode, nodeID: 1, context: [1, 2])).entryPayload()
    XCTAssertEqual(describeEntry(Entry(term: 2, index: 7, type: t2, data: d2)), "2/7 EntryConfChange r1")

    let v2 = ConfChangeV2(
      transition: .jointExplicit,
      changes: [
        ConfChangeSingle(type: .addNode, nodeID: 2), ConfChangeSingle(type: .addLearnerNode, nodeID: 3),
        ConfChangeSingle(type: .removeNode, nodeID: 4), ConfChangeSingle(type: .updateNode, nodeID: 5),
      ])
    let (t3, d3) = AnyConfChange.v2(v2).entryPayload()
    XCTAssertEqual(describeEntry(Entry(term: 1, index: 3, type: t3, data: d3)), "1/3 EntryConfChangeV2 v2 l3 r4 u5")

    // The empty V2 change (leave joint) has no payload text and no trailing space.
    let (t4, d4) = AnyConfChange.v2(ConfChangeV2()).entryPayload()
    XCTAssertEqual(describeEntry(Entry(term: 1, index: 5, type: t4, data: d4)), "1/5 EntryConfChangeV2")
  }

  func testDescribeUndecodableConfChangeShowsTheError() {
    let d = describeEntry(Entry(term: 1, index: 5, type: .confChangeV2, data: [0x0A]))
    XCTAssertTrue(d.hasPrefix("1/5 EntryConfChangeV2 "), d)
    XCTAssertGreaterThan(d.count, "1/5 EntryConfChangeV2 ".count)
  }

  func testDescribeEntries() {
    let ents = [Entry(term: 1, index: 1), Entry(term: 1, index: 2, data: Array("x".utf8))]
    XCTAssertEqual(describeEntries(ents), "1/1 EntryNormal \"\"\n1/2 EntryNormal \"x\"\n")
    XCTAssertEqual(describeEntries([]), "")
  }

  // MARK: States

  func testDescribeHardState() {
    XCTAssertEqual(describeHardState(HardState(term: 1, vote: 1, commit: 10)), "Term:1 Vote:1 Commit:10")
    XCTAssertEqual(describeHardState(HardState(term: 1, vote: 0, commit: 4)), "Term:1 Commit:4")
    XCTAssertEqual(describeHardState(HardState()), "Term:0 Commit:0")
  }

  func testDescribeSoftState() {
    XCTAssertEqual(describeSoftState(SoftState(lead: 1, raftState: .leader)), "Lead:1 State:StateLeader")
    XCTAssertEqual(describeSoftState(SoftState(lead: 0, raftState: .preCandidate)), "Lead:0 State:StatePreCandidate")
  }

  func testDescribeSnapshotAndConfState() {
    let cs = ConfState(
      voters: [2, 3, 4], learners: [5], votersOutgoing: [1, 2, 3], learnersNext: [1], autoLeave: true)
    XCTAssertEqual(
      describeConfState(cs), "Voters:[2 3 4] VotersOutgoing:[1 2 3] Learners:[5] LearnersNext:[1] AutoLeave:true")
    let snap = Snapshot(data: [1], metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2]), index: 4, term: 1))
    XCTAssertEqual(
      describeSnapshot(snap),
      "Index:4 Term:1 ConfState:Voters:[1 2] VotersOutgoing:[] Learners:[] LearnersNext:[] AutoLeave:false")
  }

  // MARK: Messages

  func testDescribeSimpleMessages() {
    XCTAssertEqual(
      describeMessage(Message(type: .msgVote, to: 2, from: 1, term: 1, logTerm: 1, index: 10)),
      "1->2 MsgVote Term:1 Log:1/10")
    XCTAssertEqual(
      describeMessage(Message(type: .msgAppResp, to: 1, from: 2, term: 1, index: 3, reject: true, rejectHint: 0)),
      "2->1 MsgAppResp Term:1 Log:0/3 Rejected (Hint: 0)")
    XCTAssertEqual(
      describeMessage(Message(type: .msgHeartbeat, to: 3, from: 1, term: 1, commit: 11)),
      "1->3 MsgHeartbeat Term:1 Log:0/0 Commit:11")
    // Ids are printed in hex; 0 is None.
    XCTAssertEqual(
      describeMessage(Message(type: .msgProp, to: 0, from: 26, term: 2)),
      "1a->None MsgProp Term:2 Log:0/0")
  }

  func testDescribeMessageEntries() {
    let one = Message(
      type: .msgApp, to: 2, from: 1, term: 1, logTerm: 1, index: 10, entries: [Entry(term: 1, index: 11)], commit: 10)
    XCTAssertEqual(describeMessage(one), #"1->2 MsgApp Term:1 Log:1/10 Commit:10 Entries:[1/11 EntryNormal ""]"#)

    let two = Message(
      type: .msgApp, to: 2, from: 1, term: 1, logTerm: 1, index: 10,
      entries: [Entry(term: 1, index: 11), Entry(term: 1, index: 12, data: Array("a".utf8))])
    XCTAssertEqual(
      describeMessage(two),
      "1->2 MsgApp Term:1 Log:1/10 Entries:[\n  1/11 EntryNormal \"\"\n  1/12 EntryNormal \"a\"\n]")
  }

  func testDescribeMessageSnapshot() {
    let snap = Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2]), index: 4, term: 1))
    XCTAssertEqual(
      describeMessage(Message(type: .msgSnap, to: 2, from: 1, term: 1, snapshot: snap)),
      "1->2 MsgSnap Term:1 Log:0/0\n"
        + "  Snapshot: Index:4 Term:1 ConfState:Voters:[1 2] VotersOutgoing:[] Learners:[] LearnersNext:[] "
        + "AutoLeave:false")
    // An empty snapshot is not shown.
    XCTAssertEqual(
      describeMessage(Message(type: .msgSnap, to: 2, from: 1, term: 1, snapshot: Snapshot())),
      "1->2 MsgSnap Term:1 Log:0/0")
  }

  func testDescribeMessageResponsesNest() {
    let append = Message(
      type: .msgStorageAppend, to: localAppendThread, from: 1, entries: [Entry(term: 1, index: 11)],
      responses: [
        Message(type: .msgAppResp, to: 1, from: 1, term: 1, index: 11),
        Message(type: .msgStorageAppendResp, to: 1, from: localAppendThread, term: 1, logTerm: 1, index: 11),
      ])
    XCTAssertEqual(
      describeMessage(append),
      """
      1->AppendThread MsgStorageAppend Term:0 Log:0/0 Entries:[1/11 EntryNormal ""] Responses:[
        1->1 MsgAppResp Term:1 Log:0/11
        AppendThread->1 MsgStorageAppendResp Term:1 Log:1/11
      ]
      """)

    // Multi-entry responses and snapshots inside responses indent with their nesting level.
    let snap = Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1]), index: 3, term: 1))
    let nested = Message(
      type: .msgStorageApply, to: localApplyThread, from: 1, vote: 1,
      responses: [
        Message(
          type: .msgStorageApplyResp, to: 1, from: localApplyThread,
          entries: [Entry(term: 1, index: 2), Entry(term: 1, index: 3)], snapshot: snap)
      ])
    XCTAssertEqual(
      describeMessage(nested),
      """
      1->ApplyThread MsgStorageApply Term:0 Log:0/0 Vote:1 Responses:[
        ApplyThread->1 MsgStorageApplyResp Term:0 Log:0/0 Entries:[
          1/2 EntryNormal ""
          1/3 EntryNormal ""
        ]
          Snapshot: Index:3 Term:1 ConfState:Voters:[1] VotersOutgoing:[] Learners:[] LearnersNext:[] AutoLeave:false
      ]
      """)
  }

  // MARK: Ready

  func testDescribeEmptyReady() {
    XCTAssertEqual(describeReady(Ready()), "<empty Ready>")
    // MustSync alone does not make a Ready non-empty.
    XCTAssertEqual(describeReady(Ready(mustSync: true)), "<empty Ready>")
  }

  func testDescribeFullReady() {
    let rd = Ready(
      softState: SoftState(lead: 1, raftState: .leader),
      hardState: HardState(term: 1, vote: 1, commit: 11),
      readStates: [ReadState(index: 11, requestCtx: Array("ab".utf8)), ReadState(index: 12, requestCtx: [])],
      entries: [Entry(term: 1, index: 12, data: Array("p".utf8))],
      snapshot: Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1]), index: 10, term: 1)),
      committedEntries: [Entry(term: 1, index: 11)],
      messages: [
        Message(type: .msgApp, to: 2, from: 1, term: 1, logTerm: 1, index: 11, commit: 11),
        Message(
          type: .msgStorageAppend, to: localAppendThread, from: 1, term: 1, commit: 11, vote: 1,
          responses: [Message(type: .msgAppResp, to: 1, from: 1, term: 1, index: 12)]),
      ],
      mustSync: true)
    XCTAssertEqual(
      describeReady(rd),
      """
      Ready MustSync=true:
      Lead:1 State:StateLeader
      HardState Term:1 Vote:1 Commit:11
      ReadStates [{11 [97 98]} {12 []}]
      Entries:
      1/12 EntryNormal "p"
      Snapshot Index:10 Term:1 ConfState:Voters:[1] VotersOutgoing:[] Learners:[] LearnersNext:[] AutoLeave:false
      CommittedEntries:
      1/11 EntryNormal ""
      Messages:
      1->2 MsgApp Term:1 Log:1/11 Commit:11
      1->AppendThread MsgStorageAppend Term:1 Log:0/0 Commit:11 Vote:1 Responses:[
        1->1 MsgAppResp Term:1 Log:0/12
      ]

      """)
  }

  func testDescribeReadyWithOnlyHardState() {
    let rd = Ready(hardState: HardState(term: 1, commit: 4))
    XCTAssertEqual(describeReady(rd), "Ready MustSync=false:\nHardState Term:1 Commit:4\n")
  }
}
