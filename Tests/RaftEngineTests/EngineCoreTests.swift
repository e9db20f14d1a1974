import Raft
import Synchronization
import XCTest

@testable import RaftEngine

/// The engine core on its own: events in, actions out, each scenario read as a transcript of
/// what the core asks its driver to do. No threads, no disk: the test is the driver.
final class EngineCoreTests: XCTestCase {
  /// Outcomes the completions saw, in the order they ran.
  final class Outcomes: @unchecked Sendable {
    let seen = Mutex<[String]>([])
    func record(_ name: String) -> ProposalCompletion {
      { result in
        let text: String
        switch result {
        case .success(let r): text = "\(name) ok \(r.lowerBound)...\(r.upperBound)"
        case .failure(let e): text = "\(name) \(e)"
        }
        self.seen.withLock { $0.append(text) }
      }
    }
    var all: [String] { seen.withLock { $0 } }
  }

  /// The test's driver: a core over a fresh `MemoryStorage` holding a snapshot of `voters` at
  /// index 1 (node 1 is this node).
  final class Harness {
    var core: EngineCore
    let storage = MemoryStorage()

    init(
      _ mode: NodeConfiguration.ReadyHandling, voters: [UInt64] = [1], snapshotEntries: UInt64 = 0,
      retain: UInt64 = 0, snapshotBytes: UInt64 = 0, retainBytes: UInt64 = 0, faults: EngineFaults = EngineFaults(),
      forwardTagBytes: Int = 0
    ) throws {
      try storage.applySnapshot(
        Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: voters), index: 1, term: 1)))
      var config = Config(id: 1, electionTick: 10, heartbeatTick: 1, storage: storage)
      config.applied = 1
      config.asyncStorageWrites = mode == .async
      config.randomSeed = 1
      var configuration = EngineCore.Configuration(
        id: 1, readyHandling: mode, snapshotEntries: snapshotEntries, compactionRetainEntries: retain, faults: faults)
      configuration.snapshotBytes = snapshotBytes
      configuration.compactionRetainBytes = retainBytes
      configuration.forwardTagBytes = forwardTagBytes
      core = EngineCore(
        configuration: configuration,
        rawNode: try RawNode(config: config), hardState: HardState(), confState: ConfState(voters: voters),
        snapshotIndex: 1)
    }

    /// Takes the core's pending actions.
    func take() -> [EngineCore.Action] {
      var out: [EngineCore.Action] = []
      core.takeActions(into: &out)
      return out
    }
  }

  /// One line per action, as the driver sees it.
  func describe(_ actions: [EngineCore.Action]) -> [String] {
    actions.map { a in
      switch a {
      case .write(let w):
        var s = "write"
        if let f = w.entries.first, let l = w.entries.last { s += " \(f.index)...\(l.index)" }
        if let hs = w.hardState { s += " " + describeHardState(hs) }
        if let snap = w.snapshot { s += " snapshot \(snap.metadata.index)" }
        s += " \(w.durability)"
        if !w.responses.isEmpty {
          s += " then [" + w.responses.map { "\($0.to):\($0.type)" }.joined(separator: " ") + "]"
        }
        return s
      case .send(let ms): return "send [" + ms.map { "\($0.to):\($0.type)" }.joined(separator: " ") + "]"
      case .apply(let job):
        var s = "apply \(job.entries.first!.index)...\(job.lastIndex)"
        if !job.completions.isEmpty { s += " completing \(job.completions.count)" }
        if job.snapshotConfState != nil { s += " then snapshot" }
        return s
      case .restore(let job): return "restore \(job.snapshot.metadata.index) failing \(job.completions.count)"
      case .saveSnapshot(let s): return "save snapshot \(s.index) compact \(s.compactThrough.map(String.init) ?? "-")"
      case .complete(let os): return "complete \(os.count)"
      case .answerRead(_, let r): return "answer read \(r)"
      case .answerCompaction(_, let r): return "answer compaction \(r)"
      case .answerDroppedForward(let to, let es): return "answer dropped forward to \(to) (\(es.count) entries)"
      case .forwardDropped(let tags): return "forward dropped \(tags.map { Array($0) })"
      case .handOff(_, let e): return "hand off \(e.map { "\($0)" } ?? "ok")"
      case .reportStatus: return "status"
      case .leaderChanged(let l, let st): return "leader \(l.map(String.init) ?? "none") \(st)"
      case .forwardTargetChanged(let t): return "forward to \(t.map(String.init) ?? "none")"
      case .refusePeer(let p, let t, let r): return "refuse \(t) from \(p) (\(r.kind.rawValue))"
      }
    }
  }

  /// A driver step of async mode: the writes become durable at once (their content goes to
  /// `storage`, their local responses are stepped), the apply jobs are applied at once (their
  /// completions run, their outcomes are fed back). Returns what the core asked, in order.
  @discardableResult
  func runAsync(_ h: Harness, applied: (ApplyJob) -> Void = { _ in }) throws -> [String] {
    var transcript: [String] = []
    let storage = h.storage
    while true {
      if h.core.hasReady() { h.core.processReady(nowNanoseconds: 0) }
      let actions = h.take()
      if actions.isEmpty { return transcript }
      transcript += describe(actions)
      for a in actions {
        switch a {
        case .write(let w):
          if let s = w.snapshot { try storage.applySnapshot(s) }
          try storage.append(w.entries)
          if let hs = w.hardState { try storage.setHardState(hs) }
          for r in w.responses where r.to == 1 { h.core.step(r) }
        case .apply(let job):
          applied(job)
          for o in job.completions { o.deliver() }
          h.core.applied(ApplyOutcome(appliedIndex: job.lastIndex, responses: job.responses))
        case .restore(let job):
          for o in job.completions { o.deliver() }
          h.core.applied(ApplyOutcome(appliedIndex: job.snapshot.metadata.index))
        case .complete(let os):
          for o in os { o.deliver() }
        default:
          break
        }
      }
    }
  }

  /// Node 1 of three voters (async), elected with node 2's vote (and pre-vote).
  func leaderOfThree(forwardTagBytes: Int = 0) throws -> Harness {
    let h = try Harness(.async, voters: [1, 2, 3], forwardTagBytes: forwardTagBytes)
    h.core.campaign()
    try runAsync(h)
    for _ in 0..<2 where !h.core.rawNode.isLeader {
      // Node 2 grants whichever vote node 1 asks for.
      let st = h.core.rawNode.basicStatus()
      let pre = st.softState.raftState == .preCandidate
      h.core.step(
        Message(
          type: pre ? .msgPreVoteResp : .msgVoteResp, to: 1, from: 2, term: st.hardState.term + (pre ? 1 : 0)))
      try runAsync(h)
    }
    return h
  }

  /// A single voter that leads (its election and first entry handled).
  func leader(
    _ mode: NodeConfiguration.ReadyHandling, snapshotEntries: UInt64 = 0, retain: UInt64 = 0,
    snapshotBytes: UInt64 = 0, retainBytes: UInt64 = 0
  ) throws -> Harness {
    let h = try Harness(
      mode, snapshotEntries: snapshotEntries, retain: retain, snapshotBytes: snapshotBytes, retainBytes: retainBytes)
    h.core.campaign()
    if mode == .async {
      try runAsync(h)
    } else {
      while h.core.hasReady() {
        h.core.processReady(nowNanoseconds: 0)
        for a in h.take() {
          if case .write(let w) = a { try AppendStage.writeNow(w, to: InMemoryLog(storage: h.storage)) }
          if case .apply(let job) = a { h.core.applied(ApplyOutcome(appliedIndex: job.lastIndex)) }
        }
        h.core.advance()
      }
    }
    XCTAssertTrue(h.core.rawNode.isLeader)
    return h
  }

  func testAsyncABatchIsWrittenAcknowledgedCommittedAppliedAndCompletedOnce() throws {
    let h = try leader(.async)
    let outcomes = Outcomes()
    h.core.propose([[1], [2], [3]].map(Payload.init), completion: outcomes.record("a"))
    h.core.propose([[4]].map(Payload.init), completion: outcomes.record("b"))
    let transcript = try runAsync(h)
    XCTAssertEqual(
      transcript,
      [
        // Both batches in one message: one write for the four entries (with the commit index
        // of the election's entry, held since), the leader's own acknowledgement and the append
        // response released once it is durable.
        "write 3...6 Term:1 Vote:1 Commit:2 sync then [1:MsgAppResp 1:MsgStorageAppendResp]",
        // Committed by the quorum of one: the entries go to the apply side with the two
        // completions; the commit index alone is not written now (nobody waits for it).
        "apply 3...6 completing 2",
      ])
    XCTAssertEqual(outcomes.all, ["a ok 3...5", "b ok 6...6"])
    XCTAssertEqual(h.core.appliedIndex, 6)
    XCTAssertFalse(h.core.hasReady())
    // It rides with the next write.
    h.core.propose([Payload([5])], completion: { _ in })
    XCTAssertEqual(
      try runAsync(h),
      [
        "write 7...7 Term:1 Vote:1 Commit:6 sync then [1:MsgAppResp 1:MsgStorageAppendResp]",
        "apply 7...7 completing 1",
      ])
  }

  func testAHeldCommitIndexIsReplacedByANewerHardState() throws {
    // Node 1 leads term 1 of three voters, and its commit index moves with a follower's ack.
    let h = try leaderOfThree()
    let term = h.core.rawNode.term
    let last = h.core.rawNode.lastIndex
    let acked =
      try runAsync(h)
      + {
        h.core.step(Message(type: .msgAppResp, to: 1, from: 2, term: term, index: last)); return try runAsync(h)
      }()
    XCTAssertFalse(acked.contains { $0.hasPrefix("write") }, "a commit-only hard state is held: \(acked)")
    // A new term's hard state (a higher term and no vote) replaces it: written, and synced.
    h.core.step(Message(type: .msgHeartbeat, to: 1, from: 3, term: term + 1))
    let next = try runAsync(h)
    XCTAssertTrue(next.contains { $0.hasPrefix("write Term:\(term + 1) Commit:\(last) sync") }, "\(next)")
  }

  func testSyncAReadyIsWrittenThenSentThenAppliedThenAdvanced() throws {
    let h = try leader(.sync)
    let outcomes = Outcomes()
    h.core.propose([Payload([7])], completion: outcomes.record("a"))
    h.core.processReady(nowNanoseconds: 0)
    let first = h.take()
    XCTAssertEqual(describe(first), ["write 3...3 Term:1 Vote:1 Commit:2 sync"])
    XCTAssertTrue(h.core.awaitsAdvance)
    for a in first { if case .write(let w) = a { try AppendStage.writeNow(w, to: InMemoryLog(storage: h.storage)) } }
    h.core.advance()
    h.core.processReady(nowNanoseconds: 0)
    let second = h.take()
    XCTAssertEqual(describe(second), ["apply 3...3 completing 1"], "the commit index alone waits for the next write")
    for a in second {
      if case .apply(let job) = a {
        for o in job.completions { o.deliver() }
        h.core.applied(ApplyOutcome(appliedIndex: job.lastIndex))
      }
    }
    h.core.advance()
    XCTAssertEqual(outcomes.all, ["a ok 3...3"])
    XCTAssertFalse(h.core.hasReady())
  }

  func testAFollowerRefusesProposalsAtOnce() throws {
    let h = try Harness(.async, voters: [1, 2, 3])
    let outcomes = Outcomes()
    h.core.propose([Payload([1])], completion: outcomes.record("a"))
    h.core.processReady(nowNanoseconds: 0)
    for a in h.take() { if case .complete(let os) = a { os.forEach { $0.deliver() } } }
    XCTAssertEqual(outcomes.all, ["a not the leader (no leader is known)"])
  }

  func testBatchesOfAnEarlierTermFailWhenALaterLeaderCommitsBelowThem() throws {
    // Node 1 leads term 2 and appends a batch that never reaches a quorum; node 2 then leads
    // term 3 and its entry is committed at the same index: the batch fails, at the hand-out.
    let h = try leaderOfThree()
    XCTAssertTrue(h.core.rawNode.isLeader)
    let outcomes = Outcomes()
    h.core.propose([Payload([9])], completion: outcomes.record("lost"))
    try runAsync(h)
    let lastIndex = h.core.rawNode.lastIndex
    let term = h.core.rawNode.term
    // Node 2 wins the next term with its own entry at that index, committed through nodes 2
    // and 3 (the entry before it, node 1's empty entry of its term, is kept).
    let overwrite = Entry(term: term + 1, index: lastIndex, data: [7])
    h.core.step(
      Message(
        type: .msgApp, to: 1, from: 2, term: term + 1, logTerm: term, index: lastIndex - 1, entries: [overwrite],
        commit: lastIndex))
    try runAsync(h)
    XCTAssertEqual(outcomes.all, ["lost proposal dropped (not committed)"])
  }

  func testAFollowerPublishesItsLeaderAsWhereProposalsGoAndRaftSendsThemThatWay() throws {
    let h = try Harness(.async, voters: [1, 2, 3])
    func turn() -> [EngineCore.Action] {
      var all: [EngineCore.Action] = []
      while h.core.hasReady() {
        h.core.processReady(nowNanoseconds: 0)
        all += h.take()
      }
      return all + h.take()
    }
    // Node 2 leads term 2: node 1 follows it, and forwards there.
    h.core.step(Message(type: .msgHeartbeat, to: 1, from: 2, term: 2))
    XCTAssertEqual(
      describe(turn()).filter { $0.hasPrefix("forward to") || $0.hasPrefix("leader") },
      [
        "forward to 2", "leader 2 StateFollower",
      ])
    // Raft's own forwarding sends the very message a caller builds with `forwardedProposal`.
    h.core.forward(.data([5, 6])) { _ in }
    let sent = turn().flatMap { a -> [Message] in if case .send(let ms) = a { return ms } else { return [] } }
    XCTAssertEqual(sent.filter { $0.type == .msgProp }, [RawNode.forwardedProposal([5, 6], from: 1, to: 2)])
    // Campaigning, it forwards nowhere; as the leader, still nowhere (it appends).
    h.core.campaign()
    XCTAssertEqual(describe(turn()).filter { $0.hasPrefix("forward to") }, ["forward to none"])
    let leader = try leaderOfThree()
    XCTAssertTrue(leader.core.rawNode.isLeader)
    XCTAssertNil(leader.core.rawNode.proposalForwardTarget)
  }

  func testAProposalForwardedToALeaderThatDropsItIsAnsweredWithItsTags() throws {
    // Node 1 leads and is transferring its leadership (it drops proposals meanwhile): a
    // proposal node 2 forwarded is answered, not dropped silently.
    let h = try leaderOfThree(forwardTagBytes: 3)
    h.core.transferLeadership(to: 3)
    try runAsync(h)
    let forwarded = Message(
      type: .msgProp, to: 1, from: 2, entries: [Entry(data: [1, 2, 3, 4, 5]), Entry(data: [9])])
    h.core.stepFromPeer(forwarded)
    let answer = h.take()
    XCTAssertEqual(describe(answer), ["answer dropped forward to 2 (2 entries)"])

    // On node 2, the answer (its tags) reaches the application, never Raft.
    let follower = try Harness(.async, voters: [1, 2, 3])
    follower.core.stepFromPeer(
      Message(type: .msgProp, to: 1, from: 2, entries: [Entry(data: [1, 2, 3]), Entry(data: [9])], reject: true))
    XCTAssertEqual(describe(follower.take()), ["forward dropped [[1, 2, 3], [9]]"])
    // Misaddressed, it is refused like any malformed message.
    follower.core.stepFromPeer(Message(type: .msgProp, to: 7, from: 2, entries: [Entry(data: [1])], reject: true))
    XCTAssertEqual(describe(follower.take()).count, 1)
    XCTAssertEqual(follower.core.peerMessagesRefused, 1)

    // Without tags configured, the leader drops it silently (etcd-raft's behaviour).
    let silent = try leaderOfThree()
    silent.core.transferLeadership(to: 3)
    try runAsync(silent)
    silent.core.stepFromPeer(forwarded)
    XCTAssertEqual(describe(silent.take()), [])
  }

  func testAppendedBatchesFailAsOutcomeUnknownWhenTheNodeStopsAndWaitingOnesAsStopped() throws {
    // A batch appended (no quorum yet) may still be committed by the next leader: its outcome
    // is unknown. A batch still waiting for the next Ready was never proposed.
    let h = try leaderOfThree()
    let outcomes = Outcomes()
    h.core.propose([Payload([1]), Payload([2])], completion: outcomes.record("appended"))
    try runAsync(h)
    XCTAssertEqual(outcomes.all, [])
    h.core.propose([Payload([3])], completion: outcomes.record("waiting"))
    h.core.stop(.stopped)
    try runAsync(h)
    XCTAssertEqual(
      outcomes.all,
      [
        "waiting node stopped",
        "appended outcome unknown (the entry may still commit): the node stopped after appending it (node stopped)",
      ])
  }

  func testACompactionRequestWaitsForItsIndexThenSavesThereWithTheConfigurationThere() throws {
    let h = try leader(.async, retain: 2)
    let first = h.core.appliedIndex
    var answers: [String] = []
    let record: @Sendable (Result<UInt64, EngineError>) -> Void = { _ in }
    // Ahead of what is applied: nothing happens yet.
    h.core.compact(through: first + 3, data: [0xCD], completion: record)
    XCTAssertEqual(describe(h.take()), [])
    h.core.propose([[1], [2], [3], [4], [5]].map(Payload.init), completion: { _ in })
    let transcript = try runAsync(h)
    XCTAssertTrue(transcript.contains("save snapshot \(first + 3) compact \(first + 1)"), "\(transcript)")
    // An older request is answered at once with the snapshot saved.
    h.core.compact(through: first + 1, data: [], completion: record)
    for a in h.take() {
      if case .answerCompaction(_, let r) = a { answers.append("\(r)") }
    }
    XCTAssertEqual(answers, ["success(\(first + 3))"])
    // The configuration at the snapshot's index is the one before a later change.
    let cc = AnyConfChange.v2(ConfChangeV2(changes: [ConfChangeSingle(type: .addLearnerNode, nodeID: 9)]))
    h.core.proposeConfChange(cc, completion: { _ in }, nowNanoseconds: 0)
    try runAsync(h)
    XCTAssertEqual(h.core.confState.learners, [9])
    h.core.compact(through: first + 5, data: [], completion: record)
    var saved: SnapshotSave?
    for a in h.take() {
      if case .saveSnapshot(let s) = a { saved = s }
    }
    XCTAssertEqual(saved?.index, first + 5)
    XCTAssertEqual(saved?.confState.learners, [], "the learner was added after index \(first + 5)")
  }

  func testALeadersSnapshotOvertakesWaitingBatchesAndRestoresTheStateMachine() throws {
    let h = try Harness(.async, voters: [1, 2, 3])
    let snapshot = Snapshot(
      data: [42], metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2, 3]), index: 50, term: 4))
    h.core.step(Message(type: .msgSnap, to: 1, from: 2, term: 4, snapshot: snapshot))
    let transcript = try runAsync(h)
    XCTAssertTrue(
      transcript.contains("write Term:4 Commit:50 snapshot 50 sync then [2:MsgAppResp 1:MsgStorageAppendResp]"),
      "\(transcript)")
    XCTAssertTrue(transcript.contains("restore 50 failing 0"), "\(transcript)")
    XCTAssertEqual(h.core.appliedIndex, 50)
    XCTAssertEqual(try h.storage.firstIndex(), 51)
  }

  func testASnapshotIsTakenOnCadenceAndTheLogCompactedBehindIt() throws {
    let h = try leader(.async, snapshotEntries: 4, retain: 2)
    var asked: [UInt64] = []
    h.core.propose([[1], [2], [3], [4], [5]].map(Payload.init), completion: { _ in })
    let transcript = try runAsync(h) { job in
      if job.snapshotConfState != nil { asked.append(job.lastIndex) }
    }
    XCTAssertEqual(asked, [7], "\(transcript)")
    // The apply side hands the snapshot's data back; the WAL's owner saves it and compacts.
    h.core.applied(ApplyOutcome(appliedIndex: 7, snapshot: (7, ConfState(voters: [1]), [0xAB])))
    XCTAssertEqual(describe(h.take()), ["save snapshot 7 compact 5"])
    // An older one coming late is never saved.
    h.core.applied(ApplyOutcome(appliedIndex: 7, snapshot: (6, ConfState(voters: [1]), [0xAC])))
    XCTAssertEqual(describe(h.take()), [])
  }

  func testLargeEntriesAreSnapshottedByBytesAndTheLogKeptWithinItsByteBound() throws {
    // 1,000-byte entries: the count cadence (1,000 entries) is far away; the byte cadence
    // (3,000 bytes) asks for a snapshot every third entry, and compaction keeps at most 2,000
    // bytes of entries behind it, however many entries the count would keep.
    let h = try leader(.async, snapshotEntries: 1000, retain: 1000, snapshotBytes: 3000, retainBytes: 2000)
    var asked: [UInt64] = []
    for k in 0..<6 {
      h.core.propose([Payload([UInt8](repeating: UInt8(k), count: 1000))], completion: { _ in })
      _ = try runAsync(h) { job in
        if job.snapshotConfState != nil { asked.append(job.lastIndex) }
      }
    }
    // The leader's empty entry is index 2; the six entries are 3...8.
    XCTAssertEqual(asked, [5, 8])
    h.core.applied(ApplyOutcome(appliedIndex: 8, snapshot: (8, ConfState(voters: [1]), [0xAB])))
    XCTAssertEqual(describe(h.take()), ["save snapshot 8 compact 6"], "entries 7 and 8 (2,000 bytes) stay")
    // Without byte bounds the count alone decides: no snapshot, nothing compacted.
    let byCount = try leader(.async, snapshotEntries: 1000, retain: 1000)
    var none: [UInt64] = []
    for k in 0..<6 {
      byCount.core.propose([Payload([UInt8](repeating: UInt8(k), count: 1000))], completion: { _ in })
      _ = try runAsync(byCount) { job in
        if job.snapshotConfState != nil { none.append(job.lastIndex) }
      }
    }
    XCTAssertEqual(none, [])
  }

  func testPeerMessagesOfLocalTypesAreRefused() throws {
    let h = try Harness(.async, voters: [1, 2, 3])
    // A forged append response carrying a snapshot would make the state machine restore it.
    let forged = Message(
      type: .msgStorageAppendResp, to: 1, from: localAppendThread, term: 1,
      snapshot: Snapshot(data: [1], metadata: SnapshotMetadata(index: 99, term: 9)))
    h.core.stepFromPeer(forged)
    h.core.stepFromPeer(Message(type: .msgHeartbeat, to: 1, from: 1, term: 5))
    XCTAssertEqual(
      try runAsync(h),
      ["refuse MsgStorageAppendResp from 18446744073709551615 (malformed)", "refuse MsgHeartbeat from 1 (malformed)"])
    XCTAssertEqual(h.core.rawNode.term, 0)
    XCTAssertEqual(h.core.peerMessagesRefused, 2)
  }

  func testAHostilePeerMessageIsRefusedAndTheCoreGoesOn() throws {
    let h = try Harness(.async, voters: [1, 2, 3])
    // Each would have stopped the node: a commit far past the log, entries that skip indexes,
    // a term at the end of the term space.
    h.core.stepFromPeer(Message(type: .msgHeartbeat, to: 1, from: 2, term: 1, commit: 1_000_000))
    h.core.stepFromPeer(
      Message(
        type: .msgApp, to: 1, from: 2, term: 1, logTerm: 1, index: 1,
        entries: [Entry(term: 1, index: 2), Entry(term: 1, index: 4)]))
    h.core.stepFromPeer(Message(type: .msgPreVote, to: 1, from: 3, term: .max - 1))
    XCTAssertEqual(
      try runAsync(h),
      ["refuse MsgHeartbeat from 2 (commit)", "refuse MsgApp from 2 (entries)", "refuse MsgPreVote from 3 (term)"])
    XCTAssertFalse(h.core.isStopped)
    XCTAssertEqual(h.core.rawNode.term, 0)
    XCTAssertEqual(h.core.peerMessagesRefused, 3)
    // The honest leader's append goes through.
    h.core.stepFromPeer(
      Message(
        type: .msgApp, to: 1, from: 2, term: 1, logTerm: 1, index: 1, entries: [Entry(term: 1, index: 2)], commit: 2))
    XCTAssertTrue(try runAsync(h).contains { $0.hasPrefix("write 2...2") }, "the honest append was not written")
  }

  func testAConfChangeTheConfigurationCannotTakeIsRefusedBeforeItIsProposed() throws {
    let h = try leader(.async)
    let outcomes = Outcomes()
    let removeAll = AnyConfChange.v2(ConfChangeV2(changes: [ConfChangeSingle(type: .removeNode, nodeID: 1)]))
    h.core.proposeConfChange(removeAll, completion: outcomes.record("cc"), nowNanoseconds: 0)
    try runAsync(h)
    XCTAssertEqual(outcomes.all.count, 1)
    XCTAssertTrue(outcomes.all[0].hasPrefix("cc invalid conf change:"), outcomes.all[0])
    XCTAssertEqual(h.core.rawNode.lastIndex, 2, "nothing was appended")
  }

  func testPlantedFaultsAreDecidedInTheCore() throws {
    let h = try Harness(.async, faults: EngineFaults(acknowledgeBeforeSync: true, staleReads: true))
    h.core.campaign()
    let transcript = try runAsync(h)
    XCTAssertTrue(transcript.contains { $0.hasPrefix("write") && $0.contains("unsynced") }, "\(transcript)")
    XCTAssertFalse(transcript.contains { $0.hasPrefix("write") && $0.contains(" sync") }, "\(transcript)")
    h.core.readIndex(context: [1], completion: { _ in })
    XCTAssertEqual(describe(h.take()), ["answer read success(\(h.core.appliedIndex))"])
  }

  func testStopFailsEverythingStillWaiting() throws {
    let h = try leader(.async)
    let outcomes = Outcomes()
    h.core.propose([Payload([1])], completion: outcomes.record("queued"))
    h.core.readIndex(context: [5], completion: { r in outcomes.seen.withLock { $0.append("read \(r)") } })
    h.core.stop(.stopped)
    for a in h.take() {
      switch a {
      case .complete(let os): os.forEach { $0.deliver() }
      case .answerRead(let c, let r): c(r)
      default: break
      }
    }
    XCTAssertEqual(outcomes.all, ["queued node stopped", "read failure(node stopped)"])
    XCTAssertFalse(h.core.hasReady())
  }
}
