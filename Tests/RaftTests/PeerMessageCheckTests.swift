import XCTest

@testable import Raft

/// `RawNode.refusal(ofPeerMessage:limits:)`: what an honest peer sends passes; what would make
/// Raft panic, the storage refuse a write, or the cluster stop electing is refused, with its kind.
final class PeerMessageCheckTests: XCTestCase {
  /// Node 1 of voters 1, 2, 3 at term 2: a snapshot at 1, entries 2...5 of term 2, commit 3.
  func makeFollower() throws -> RawNode {
    let s = MemoryStorage()
    try s.applySnapshot(
      Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2, 3]), index: 1, term: 1)))
    try s.append((2...5).map { Entry(term: 2, index: $0, data: [UInt8($0)]) })
    try s.setHardState(HardState(term: 2, vote: 2, commit: 3))
    var cfg = Config(id: 1, storage: s)
    cfg.randomSeed = 3
    return try RawNode(config: cfg)
  }

  func kind(_ node: RawNode, _ m: Message, limits: PeerMessageLimits = PeerMessageLimits()) -> String {
    node.refusal(ofPeerMessage: m, limits: limits).map { $0.kind.rawValue } ?? "ok"
  }

  func testHonestMessagesPass() throws {
    let n = try makeFollower()
    let honest: [Message] = [
      Message(type: .msgHeartbeat, to: 1, from: 2, term: 2, commit: 5),
      Message(type: .msgHeartbeat, to: 1, from: 2, term: 1, commit: 0),
      Message(
        type: .msgApp, to: 1, from: 2, term: 3, logTerm: 2, index: 5,
        entries: [Entry(term: 2, index: 6, data: [6]), Entry(term: 3, index: 7, data: [7])], commit: 5),
      // Stale, below the commit index: Raft answers it; nothing to refuse.
      Message(type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: 2, entries: [Entry(term: 2, index: 3)]),
      Message(type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: 9),
      Message(type: .msgAppResp, to: 1, from: 2, term: 2, index: 5),
      Message(type: .msgVote, to: 1, from: 3, term: 3, logTerm: 2, index: 5),
      Message(type: .msgPreVote, to: 1, from: 3, term: 3, logTerm: 2, index: 5),
      Message(type: .msgVoteResp, to: 1, from: 3, term: 2),
      Message(type: .msgProp, to: 1, from: 3, entries: [Entry(data: [1])]),
      Message(type: .msgReadIndex, to: 1, from: 3, entries: [Entry(data: [9])]),
      Message(type: .msgReadIndexResp, to: 1, from: 2, term: 2, index: 4, entries: [Entry(data: [9])]),
      Message(type: .msgTimeoutNow, to: 1, from: 2, term: 2),
      Message(type: .msgTransferLeader, to: 1, from: 3, term: 2),
      Message(
        type: .msgSnap, to: 1, from: 2, term: 2,
        snapshot: Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2, 3]), index: 9, term: 2))),
      // Terms jump freely below the bound, and by up to the step above it.
      Message(type: .msgVote, to: 1, from: 3, term: PeerMessageLimits.termFreeMax, logTerm: 2, index: 5),
    ]
    for m in honest { XCTAssertEqual(kind(n, m), "ok", "\(m.type) term \(m.term) index \(m.index)") }
  }

  func testEachAttackIsRefusedWithItsKind() throws {
    let n = try makeFollower()
    let term = PeerMessageLimits.termFreeMax + 1
    let cases: [(Message, String)] = [
      (Message(type: .msgHeartbeat, to: 1, from: 2, term: 2, commit: 1_000_005), "commit"),
      (
        Message(
          type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: 5, entries: [Entry(term: 2, index: 105)]),
        "entries"
      ),
      (
        Message(
          type: .msgApp, to: 1, from: 2, term: 3, logTerm: 2, index: 3, entries: [Entry(term: 3, index: 3)]),
        "entries"
      ),
      (
        Message(
          type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: 5,
          entries: [Entry(term: 2, index: 6), Entry(term: 2, index: 8)]),
        "entries"
      ),
      (
        Message(
          type: .msgApp, to: 1, from: 2, term: 3, logTerm: 2, index: 5,
          entries: [Entry(term: 3, index: 6), Entry(term: 2, index: 7)]),
        "entries"
      ),
      (
        Message(type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: 5, entries: [Entry(term: 4, index: 6)]),
        "entries"
      ),
      (
        Message(
          type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: .max - 1,
          entries: [Entry(term: 2, index: .max), Entry(term: 2, index: 0)]),
        "entries"
      ),
      (
        Message(
          type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: 5,
          entries: [Entry(term: 2, index: 6, type: .confChangeV2, data: [0xFF, 0xFF])]),
        "confChange"
      ),
      (Message(type: .msgProp, to: 1, from: 3), "entries"),
      (Message(type: .msgProp, to: 1, from: 3, term: 2, entries: [Entry(data: [1])]), "term"),
      (Message(type: .msgProp, to: 1, from: 3, entries: [Entry(type: .confChange, data: [0xFF])]), "confChange"),
      (Message(type: .msgVote, to: 1, from: 3, term: .max - 1, context: Array("CampaignTransfer".utf8)), "term"),
      (Message(type: .msgHeartbeat, to: 1, from: 2, term: term + PeerMessageLimits.termStepMax), "term"),
      (Message(type: .msgApp, to: 1, from: 2, index: 5), "term"),
      (Message(type: .msgVote, to: 1, from: 3, term: 3, logTerm: 4, index: 5), "term"),
      (Message(type: .msgReadIndex, to: 1, from: 3), "malformed"),
      (Message(type: .msgReadIndexResp, to: 1, from: 2, term: 2, entries: [Entry(), Entry()]), "malformed"),
      (Message(type: .msgForgetLeader, to: 1, from: 2, term: 2), "malformed"),
      (Message(type: .msgHup, to: 1, from: 2, term: 2), "malformed"),
      (Message(type: .msgHeartbeat, to: 1, from: 0, term: 2), "malformed"),
      (
        Message(
          type: .msgHeartbeat, to: 1, from: 2, term: 2, responses: [Message(type: .msgAppResp, to: 2, from: 1)]),
        "malformed"
      ),
      (Message(type: .msgSnap, to: 1, from: 2, term: 2), "snapshot"),
      (snap(ConfState(voters: []), term: 2), "snapshot"),
      (snap(ConfState(voters: [1, 2], learners: [2]), term: 2), "snapshot"),
      (snap(ConfState(voters: [1, 1, 2]), term: 2), "snapshot"),
      (snap(ConfState(voters: [1, 2, 3]), term: 3), "snapshot"),
    ]
    for (m, expected) in cases {
      XCTAssertEqual(kind(n, m), expected, "\(m.type) term \(m.term) index \(m.index) entries \(m.entries)")
    }
  }

  func testAMemberLeftFarBehindCatchesUpOneStepAtATime() throws {
    let n = try makeFollower()
    let (free, step) = (PeerMessageLimits.termFreeMax, PeerMessageLimits.termStepMax)
    // From term 2, a term up to one step above the free bound is taken as it is.
    XCTAssertEqual(kind(n, Message(type: .msgHeartbeat, to: 1, from: 2, term: free + step, commit: 3)), "ok")
    // Further is refused; where Raft would take the term, the term moves up by a step instead
    // (not for a pre-vote, which never changes a term).
    let far = Message(type: .msgHeartbeat, to: 1, from: 2, term: free + 5 * step, commit: 3)
    let preVote = Message(type: .msgPreVote, to: 1, from: 3, term: free + 5 * step, logTerm: 2, index: 5)
    let refusal = try XCTUnwrap(n.refusal(ofPeerMessage: preVote, limits: PeerMessageLimits()))
    XCTAssertEqual(refusal.catchUpTerm, free + step)
    n.catchUpTerm(after: refusal, of: preVote)
    XCTAssertEqual(n.term, 2, "a pre-vote does not move the term")
    for k in UInt64(1)...4 {
      let r = try XCTUnwrap(n.refusal(ofPeerMessage: far, limits: PeerMessageLimits()), "step \(k)")
      n.catchUpTerm(after: r, of: far)
      XCTAssertEqual(n.term, free + k * step)
      XCTAssertEqual(n.basicStatus().softState.raftState, .follower)
    }
    XCTAssertEqual(kind(n, far), "ok")
  }

  func testAboveTheFreeBoundATermMayLeadOursOnlyByTheStep() throws {
    let n = try makeFollower()
    // Push the node's term above the bound the way a peer may (one message up to it, then
    // steps), and check the step is measured from its term.
    try n.step(Message(type: .msgHeartbeat, to: 1, from: 2, term: PeerMessageLimits.termFreeMax, commit: 3))
    let t = n.term
    XCTAssertEqual(t, PeerMessageLimits.termFreeMax)
    XCTAssertEqual(kind(n, Message(type: .msgHeartbeat, to: 1, from: 2, term: t + PeerMessageLimits.termStepMax)), "ok")
    XCTAssertEqual(
      kind(n, Message(type: .msgHeartbeat, to: 1, from: 2, term: t + PeerMessageLimits.termStepMax + 1)), "term")
  }

  func testEntriesTheLogCannotStoreAreRefused() throws {
    let n = try makeFollower()
    let limits = PeerMessageLimits(entryBytesMax: 1024)
    let big = Entry(term: 2, index: 6, data: [UInt8](repeating: 7, count: 2048))
    XCTAssertEqual(
      kind(n, Message(type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: 5, entries: [big]), limits: limits),
      "entries")
    XCTAssertEqual(kind(n, Message(type: .msgProp, to: 1, from: 3, entries: [big]), limits: limits), "entries")
  }

  func testALeaderRefusesAConfChangeItsConfigurationCannotTake() throws {
    let s = MemoryStorage()
    try s.applySnapshot(Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1]), index: 1, term: 1)))
    var cfg = Config(id: 1, storage: s)
    cfg.randomSeed = 3
    let n = try RawNode(config: cfg)
    try n.campaign()
    while n.hasReady() {
      let rd = n.ready()
      try s.append(rd.entries)
      n.advance(rd)
    }
    XCTAssertTrue(n.isLeader)
    let removeAll = ConfChangeV2(changes: [ConfChangeSingle(type: .removeNode, nodeID: 1)])
    let addTwo = ConfChangeV2(changes: [ConfChangeSingle(type: .addNode, nodeID: 2)])
    func prop(_ cc: ConfChangeV2) -> Message {
      Message(type: .msgProp, to: 1, from: 2, entries: [Entry(type: .confChangeV2, data: cc.encoded())])
    }
    XCTAssertEqual(kind(n, prop(removeAll)), "confChange")
    XCTAssertNotNil(n.confChangeRefusal(.v2(removeAll)))
    XCTAssertEqual(kind(n, prop(addTwo)), "ok")
    XCTAssertNil(n.confChangeRefusal(.v2(addTwo)))
  }

  private func snap(_ cs: ConfState, term: UInt64) -> Message {
    Message(
      type: .msgSnap, to: 1, from: 2, term: 2,
      snapshot: Snapshot(metadata: SnapshotMetadata(confState: cs, index: 9, term: term)))
  }
}
