import XCTest

@testable import Raft

/// RawNode behaviour that the scenario scripts cannot express: configuration validation,
/// bootstrap, step filtering, the asynchronous storage writes contract, and a randomized
/// cluster run checking Raft's safety properties.
final class RawNodeTests: XCTestCase {
  func makeStorage(voters: [UInt64], index: UInt64 = 1) throws -> MemoryStorage {
    let s = MemoryStorage()
    try s.applySnapshot(
      Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: voters), index: index, term: 1)))
    return s
  }

  func testConfigValidationNamesTheProblem() throws {
    let s = MemoryStorage()
    func invalid(_ mutate: (inout Config) -> Void, _ needle: String, line: UInt = #line) {
      var c = Config(id: 1, storage: s)
      mutate(&c)
      XCTAssertThrowsError(try c.validate(), line: line) { error in
        guard case RaftError.invalidConfig(let text) = error else {
          return XCTFail("unexpected error \(error)", line: line)
        }
        XCTAssertTrue(text.contains(needle), "\(text) does not mention \(needle)", line: line)
      }
    }
    invalid({ $0.id = 0 }, "none")
    invalid({ $0.id = localAppendThread }, "local thread")
    invalid({ $0.heartbeatTick = 0 }, "heartbeat tick")
    invalid({ $0.electionTick = 1 }, "election tick")
    invalid({ $0.maxInflightMsgs = 0 }, "max inflight messages")
    invalid(
      {
        $0.maxSizePerMsg = 1024
        $0.maxInflightBytes = 10
      }, "max inflight bytes")
    invalid({ $0.readOnlyOption = .leaseBased }, "CheckQuorum")

    var c = Config(id: 1, storage: s)
    c.maxSizePerMsg = 4096
    try c.validate()
    XCTAssertEqual(c.maxCommittedSizePerReady, 4096, "defaults to maxSizePerMsg")
    XCTAssertEqual(c.maxUncommittedEntriesSize, noLimit)
    XCTAssertEqual(c.maxInflightBytes, noLimit)
    XCTAssertThrowsError(try RawNode(config: Config(id: 0, storage: s)))
  }

  func testBootstrapCommitsTheConfChangesAndCanCampaign() throws {
    let s = MemoryStorage()
    let node = try RawNode(config: Config(id: 1, storage: s))
    try node.bootstrap([Peer(id: 1), Peer(id: 2, context: [7])])
    XCTAssertThrowsError(try node.bootstrap([]))
    let rd = node.ready()
    XCTAssertEqual(rd.hardState, HardState(term: 1, vote: 0, commit: 2))
    XCTAssertEqual(rd.entries.map(\.index), [1, 2])
    XCTAssertEqual(rd.committedEntries.count, 2)
    let cc = try rd.committedEntries[1].decodedConfChange()
    XCTAssertEqual(cc, .v1(ConfChange(type: .addNode, nodeID: 2, context: [7])))
    try s.append(rd.entries)
    try s.setHardState(rd.hardState)
    node.advance(rd)
    XCTAssertEqual(Set(node.status().config.voters.ids), [1, 2])

    // A storage that already has entries cannot be bootstrapped.
    let other = try RawNode(config: Config(id: 1, storage: s))
    XCTAssertThrowsError(try other.bootstrap([Peer(id: 1)])) { error in
      XCTAssertEqual(error as? RaftError, .bootstrap("can't bootstrap a nonempty Storage"))
    }
  }

  func testStepRejectsLocalMessagesFromPeersAndResponsesFromStrangers() throws {
    let node = try RawNode(config: Config(id: 1, storage: makeStorage(voters: [1, 2])))
    XCTAssertThrowsError(try node.step(Message(type: .msgHup, from: 2))) {
      XCTAssertEqual($0 as? RaftError, .stepLocalMessage)
    }
    XCTAssertThrowsError(try node.step(Message(type: .msgStorageAppendResp, from: 2))) {
      XCTAssertEqual($0 as? RaftError, .stepLocalMessage)
    }
    XCTAssertThrowsError(try node.step(Message(type: .msgAppResp, from: 9, term: 1))) {
      XCTAssertEqual($0 as? RaftError, .stepPeerNotFound)
    }
    XCTAssertThrowsError(try node.propose([1])) { XCTAssertEqual($0 as? RaftError, .proposalDropped) }
  }

  func testSingleNodeSynchronousProposeCommitsAndApplies() throws {
    let s = try makeStorage(voters: [1])
    var cfg = Config(id: 1, storage: s)
    cfg.randomSeed = 7
    let node = try RawNode(config: cfg)
    try node.campaign()
    var applied: [[UInt8]] = []
    func drain() throws {
      while node.hasReady() {
        let rd = node.ready()
        if !rd.hardState.isEmpty { try s.setHardState(rd.hardState) }
        try s.append(rd.entries)
        applied += rd.committedEntries.filter { !$0.data.isEmpty }.map { Array($0.data) }
        XCTAssertTrue(rd.messages.isEmpty, "a single node sends nothing")
        node.advance(rd)
      }
    }
    try drain()
    XCTAssertEqual(node.basicStatus().softState, SoftState(lead: 1, raftState: .leader))
    try node.propose(batch: [[1], [2], [3]])
    try node.propose([4])
    try drain()
    XCTAssertEqual(applied, [[1], [2], [3], [4]])
    XCTAssertEqual(node.basicStatus().applied, 6)
    XCTAssertTrue(node.status().description.contains("\"raftState\":\"StateLeader\""))
  }

  /// In asynchronous mode every Ready carries at most one MsgStorageAppend and one
  /// MsgStorageApply; committed entries are handed out for application only once they are
  /// locally durable; the append's responses are the held-back votes/acks, then the append ack.
  func testAsyncStorageWritesContract() throws {
    let s = try makeStorage(voters: [1])
    var cfg = Config(id: 1, storage: s)
    cfg.asyncStorageWrites = true
    cfg.randomSeed = 3
    let node = try RawNode(config: cfg)
    try node.campaign()
    var pendingAppends: [Message] = []
    var pendingApplies: [Message] = []
    var durable: UInt64 = 1
    var appliedIndex: UInt64 = 1
    for round in 0..<40 {
      if round % 3 == 0 { try? node.propose([UInt8(round)]) }
      if node.hasReady() {
        let rd = node.ready()
        let appends = rd.messages.filter { $0.type == .msgStorageAppend }
        let applies = rd.messages.filter { $0.type == .msgStorageApply }
        XCTAssertLessThanOrEqual(appends.count, 1)
        XCTAssertLessThanOrEqual(applies.count, 1)
        for m in appends {
          XCTAssertEqual(m.to, localAppendThread)
          if let last = m.responses.last, m.responses.contains(where: { $0.type == .msgStorageAppendResp }) {
            XCTAssertEqual(last.type, .msgStorageAppendResp, "the append ack comes last")
          }
        }
        for m in applies {
          XCTAssertEqual(m.to, localApplyThread)
          XCTAssertLessThanOrEqual(m.entries.last!.index, durable, "apply only what is durable")
        }
        pendingAppends += appends
        pendingApplies += applies
      }
      // The storage threads work in order, one message every other round.
      if round % 2 == 0, !pendingAppends.isEmpty {
        let m = pendingAppends.removeFirst()
        if !(m.term == 0 && m.vote == 0 && m.commit == 0) {
          try s.setHardState(HardState(term: m.term, vote: m.vote, commit: m.commit))
        }
        try s.append(m.entries)
        if let last = m.entries.last { durable = last.index }
        for r in m.responses where r.to == 1 { try node.step(r) }
      }
      if round % 2 == 1, !pendingApplies.isEmpty {
        let m = pendingApplies.removeFirst()
        XCTAssertEqual(m.entries.first!.index, appliedIndex + 1, "applies arrive in order, without gaps")
        appliedIndex = m.entries.last!.index
        for r in m.responses { try node.step(r) }
      }
    }
    XCTAssertGreaterThan(appliedIndex, 5)
  }

  /// Messages no correct peer sends are refused or ignored, never trapped on: term 0 (which
  /// would bypass the term checks), term UInt64.max, and indexes at UInt64.max.
  func testMalformedPeerMessagesAreRefusedWithoutCrashing() throws {
    let s = try makeStorage(voters: [1, 2, 3])
    var cfg = Config(id: 1, storage: s)
    cfg.randomSeed = 5
    let node = try RawNode(config: cfg)
    XCTAssertThrowsError(try node.step(Message(type: .msgHeartbeat, to: 1, from: 2, commit: 1))) {
      guard case RaftError.invalidMessage = $0 else { return XCTFail("\($0)") }
    }
    XCTAssertThrowsError(try node.step(Message(type: .msgVote, to: 1, from: 2, term: .max))) {
      guard case RaftError.invalidMessage = $0 else { return XCTFail("\($0)") }
    }
    // A MsgApp anchored at UInt64.max is rejected like any mismatching append.
    try node.step(Message(type: .msgApp, to: 1, from: 2, term: 2, logTerm: 2, index: .max, commit: 1))
    var rd = node.ready()
    let rejection = rd.messages.first { $0.type == .msgAppResp }
    XCTAssertEqual(rejection?.reject, true)
    node.advance(rd)
    // A snapshot at UInt64.max is ignored.
    let bad = Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2, 3]), index: .max, term: 2))
    try node.step(Message(type: .msgSnap, to: 1, from: 2, term: 2, snapshot: bad))
    rd = node.ready()
    XCTAssertTrue(rd.snapshot.isEmpty)
    node.advance(rd)

    // A leader ignores an acknowledgement past its last index.
    let leaderStorage = try makeStorage(voters: [1, 2])
    var lcfg = Config(id: 1, storage: leaderStorage)
    lcfg.randomSeed = 9
    let leader = try RawNode(config: lcfg)
    try leader.campaign()
    _ = leader.ready()
    leader.advance()
    try leader.step(Message(type: .msgVoteResp, to: 1, from: 2, term: 1))
    XCTAssertEqual(leader.basicStatus().softState.raftState, .leader)
    try leader.step(Message(type: .msgAppResp, to: 1, from: 2, term: 1, index: .max))
    XCTAssertEqual(leader.status().progress[2]?.match, 0)
    // A rejection hinting at UInt64.max does not trap either.
    try leader.step(
      Message(type: .msgAppResp, to: 1, from: 2, term: 1, logTerm: 1, index: 1, reject: true, rejectHint: .max))
  }
}
