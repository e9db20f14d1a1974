import Raft
import XCTest

import class Raft.Progress

final class TrackerInflightsTests: XCTestCase {
  func testCountLimitAndFreeLE() {
    let inf = Inflights(size: 10, maxBytes: 0)
    for i in 0..<5 { inf.add(UInt64(i), bytes: 100) }
    XCTAssertEqual(inf.count, 5)
    XCTAssertFalse(inf.full)
    for i in 5..<10 { inf.add(UInt64(i), bytes: 100) }
    XCTAssertEqual(inf.count, 10)
    XCTAssertTrue(inf.full)

    inf.freeLE(0)
    XCTAssertEqual(inf.count, 9)
    // Freeing below the oldest index does nothing.
    inf.freeLE(0)
    XCTAssertEqual(inf.count, 9)
    inf.freeLE(4)
    XCTAssertEqual(inf.count, 5)
    XCTAssertFalse(inf.full)
    XCTAssertEqual(inf.bytes, 500)
    inf.freeLE(100)
    XCTAssertEqual(inf.count, 0)
    XCTAssertEqual(inf.bytes, 0)
  }

  func testWrapAround() {
    let inf = Inflights(size: 10, maxBytes: 0)
    for i in 0..<10 { inf.add(UInt64(i), bytes: 1) }
    inf.freeLE(4)  // frees 0...4, the window now starts in the middle of the ring
    XCTAssertEqual(inf.count, 5)
    for i in 10..<15 { inf.add(UInt64(i), bytes: 1) }  // these wrap to the front of the ring
    XCTAssertTrue(inf.full)
    XCTAssertEqual(inf.count, 10)

    inf.freeLE(8)  // 5...8
    XCTAssertEqual(inf.count, 6)
    inf.freeLE(12)  // 9...12, across the wrap
    XCTAssertEqual(inf.count, 2)
    XCTAssertEqual(inf.bytes, 2)
    for i in 15..<23 { inf.add(UInt64(i), bytes: 1) }
    XCTAssertTrue(inf.full)
    inf.freeLE(22)
    XCTAssertEqual(inf.count, 0)
    XCTAssertFalse(inf.full)
    inf.add(23, bytes: 1)
    XCTAssertEqual(inf.count, 1)
  }

  func testByteLimit() {
    let inf = Inflights(size: 10, maxBytes: 1000)
    inf.add(1, bytes: 400)
    inf.add(2, bytes: 500)
    XCTAssertFalse(inf.full)
    inf.add(3, bytes: 100)  // exactly at the limit
    XCTAssertTrue(inf.full)
    XCTAssertEqual(inf.count, 3)
    inf.freeLE(1)
    XCTAssertFalse(inf.full)
    XCTAssertEqual(inf.bytes, 600)
    // A single message may overshoot the limit; the window is then full.
    inf.add(4, bytes: 5000)
    XCTAssertTrue(inf.full)
    inf.freeLE(4)
    XCTAssertEqual(inf.bytes, 0)
    XCTAssertFalse(inf.full)
  }

  func testResetAndClone() {
    let inf = Inflights(size: 3, maxBytes: 0)
    inf.add(1, bytes: 10)
    inf.add(2, bytes: 10)
    let copy = inf.clone()
    inf.add(3, bytes: 10)
    XCTAssertTrue(inf.full)
    XCTAssertEqual(copy.count, 2)
    XCTAssertFalse(copy.full)
    copy.freeLE(1)
    XCTAssertEqual(copy.count, 1)
    XCTAssertEqual(inf.count, 3)

    inf.reset()
    XCTAssertEqual(inf.count, 0)
    XCTAssertEqual(inf.bytes, 0)
    XCTAssertFalse(inf.full)
    inf.add(7, bytes: 1)
    inf.freeLE(6)
    XCTAssertEqual(inf.count, 1)
  }
}

final class TrackerProgressTests: XCTestCase {
  private func makeProgress(match: UInt64 = 0, next: UInt64, size: Int = 256) -> Progress {
    Progress(match: match, next: next, inflights: Inflights(size: size, maxBytes: 0), recentActive: true)
  }

  func testDescription() {
    let pr = Progress(match: 1, next: 2, inflights: Inflights(size: 10, maxBytes: 0))
    XCTAssertEqual(pr.description, "StateProbe match=1 next=2 inactive")
    pr.isLearner = true
    pr.recentActive = true
    XCTAssertEqual(pr.description, "StateProbe match=1 next=2 learner")

    let rep = makeProgress(match: 11, next: 12, size: 3)
    rep.becomeReplicate()
    rep.updateOnEntriesSend(entries: 1, bytes: 1, nextIndex: 12)
    rep.updateOnEntriesSend(entries: 2, bytes: 1, nextIndex: 13)
    XCTAssertEqual(rep.description, "StateReplicate match=11 next=15 inflight=2")
    rep.updateOnEntriesSend(entries: 1, bytes: 1, nextIndex: 15)
    XCTAssertEqual(rep.description, "StateReplicate match=11 next=16 paused inflight=3[full]")

    let snap = makeProgress(match: 3, next: 4)
    snap.becomeSnapshot(9)
    // Becoming snapshot points next just past the snapshot (sentCommit == pendingSnapshot == next - 1).
    XCTAssertEqual(snap.description, "StateSnapshot match=3 next=10 paused pendingSnap=9")
    XCTAssertEqual(ProgressState.probe.description, "StateProbe")
  }

  func testIsPaused() {
    let pr = makeProgress(next: 1)
    XCTAssertFalse(pr.isPaused)
    pr.msgAppFlowPaused = true
    XCTAssertTrue(pr.isPaused)
    pr.becomeReplicate()
    XCTAssertFalse(pr.isPaused)
    pr.msgAppFlowPaused = true
    XCTAssertTrue(pr.isPaused)
    pr.becomeSnapshot(10)
    XCTAssertTrue(pr.isPaused)
    XCTAssertFalse(pr.msgAppFlowPaused)
  }

  func testBecomeProbe() {
    let fromReplicate = makeProgress(match: 1, next: 5)
    fromReplicate.becomeReplicate()
    fromReplicate.next = 5
    fromReplicate.becomeProbe()
    XCTAssertEqual(fromReplicate.state, .probe)
    XCTAssertEqual(fromReplicate.next, 2)

    let snapshotAhead = makeProgress(match: 1, next: 5)
    snapshotAhead.becomeSnapshot(10)
    snapshotAhead.becomeProbe()
    XCTAssertEqual(snapshotAhead.next, 11)
    XCTAssertEqual(snapshotAhead.pendingSnapshot, 0)

    let matchAhead = makeProgress(match: 12, next: 13)
    matchAhead.becomeSnapshot(10)
    matchAhead.becomeProbe()
    XCTAssertEqual(matchAhead.next, 13)
  }

  func testBecomeReplicateResetsInflights() {
    let pr = makeProgress(match: 1, next: 5)
    pr.becomeReplicate()
    XCTAssertEqual(pr.next, 2)
    pr.updateOnEntriesSend(entries: 3, bytes: 30, nextIndex: 2)
    XCTAssertEqual(pr.next, 5)
    XCTAssertEqual(pr.inflights.count, 1)
    pr.becomeProbe()
    XCTAssertEqual(pr.inflights.count, 0)
  }

  func testUpdateOnEntriesSend() {
    let probe = makeProgress(next: 5)
    probe.updateOnEntriesSend(entries: 0, bytes: 0, nextIndex: 5)
    XCTAssertFalse(probe.msgAppFlowPaused)
    probe.updateOnEntriesSend(entries: 2, bytes: 10, nextIndex: 5)
    XCTAssertTrue(probe.msgAppFlowPaused)
    XCTAssertEqual(probe.next, 5, "probing does not move next")
    XCTAssertEqual(probe.inflights.count, 0)

    let rep = makeProgress(match: 4, next: 5, size: 2)
    rep.becomeReplicate()
    rep.updateOnEntriesSend(entries: 0, bytes: 0, nextIndex: 5)
    XCTAssertEqual(rep.next, 5)
    XCTAssertFalse(rep.msgAppFlowPaused)
    rep.updateOnEntriesSend(entries: 3, bytes: 10, nextIndex: 5)
    XCTAssertEqual(rep.next, 8)
    XCTAssertFalse(rep.isPaused)
    rep.updateOnEntriesSend(entries: 1, bytes: 10, nextIndex: 8)
    XCTAssertEqual(rep.next, 9)
    XCTAssertTrue(rep.isPaused)
    rep.inflights.freeLE(7)
    XCTAssertTrue(rep.maybeUpdate(7))
    XCTAssertFalse(rep.isPaused)
  }

  func testMaybeUpdate() {
    let pr = makeProgress(match: 3, next: 5)
    pr.msgAppFlowPaused = true
    XCTAssertFalse(pr.maybeUpdate(2))
    XCTAssertEqual(pr.match, 3)
    XCTAssertTrue(pr.msgAppFlowPaused, "a stale ack does not unpause")
    XCTAssertFalse(pr.maybeUpdate(3))
    XCTAssertTrue(pr.maybeUpdate(4))
    XCTAssertEqual(pr.match, 4)
    XCTAssertEqual(pr.next, 5)
    XCTAssertFalse(pr.msgAppFlowPaused)
    XCTAssertTrue(pr.maybeUpdate(10))
    XCTAssertEqual(pr.next, 11)

    pr.optimisticUpdate(20)
    XCTAssertEqual(pr.next, 21)
    XCTAssertEqual(pr.match, 10)
  }

  func testMaybeDecrToInReplicate() {
    let pr = makeProgress(match: 5, next: 10)
    pr.becomeReplicate()
    pr.next = 10
    XCTAssertFalse(pr.maybeDecrTo(rejected: 5, matchHint: 5), "rejection at or below match is stale")
    XCTAssertEqual(pr.next, 10)
    XCTAssertTrue(pr.maybeDecrTo(rejected: 9, matchHint: 3))
    XCTAssertEqual(pr.next, 6)
  }

  func testMaybeDecrToInProbe() {
    let pr = makeProgress(match: 0, next: 10)
    pr.msgAppFlowPaused = true
    XCTAssertFalse(pr.maybeDecrTo(rejected: 5, matchHint: 5), "only the last probe can be rejected")
    XCTAssertTrue(pr.msgAppFlowPaused)
    XCTAssertTrue(pr.maybeDecrTo(rejected: 9, matchHint: 3))
    XCTAssertEqual(pr.next, 4)
    XCTAssertFalse(pr.msgAppFlowPaused)
    // The hint never moves next up past the rejected index.
    XCTAssertTrue(pr.maybeDecrTo(rejected: 3, matchHint: 100))
    XCTAssertEqual(pr.next, 3)
    // A huge hint is capped by the rejected index.
    XCTAssertTrue(pr.maybeDecrTo(rejected: 2, matchHint: UInt64.max))
    XCTAssertEqual(pr.next, 2)
    XCTAssertTrue(pr.maybeDecrTo(rejected: 1, matchHint: 0))
    XCTAssertEqual(pr.next, 1)
    // Next never drops below 1.
    XCTAssertTrue(pr.maybeDecrTo(rejected: 0, matchHint: 0))
    XCTAssertEqual(pr.next, 1)
  }

  func testCloneIsDeep() {
    let pr = makeProgress(match: 1, next: 2, size: 4)
    pr.becomeReplicate()
    pr.updateOnEntriesSend(entries: 1, bytes: 1, nextIndex: 2)
    let copy = pr.clone()
    XCTAssertEqual(copy.description, pr.description)
    pr.updateOnEntriesSend(entries: 1, bytes: 1, nextIndex: 3)
    pr.isLearner = true
    XCTAssertEqual(copy.inflights.count, 1)
    XCTAssertEqual(copy.next, 3)
    XCTAssertFalse(copy.isLearner)
  }

  func testDescribeProgressMap() {
    let m: ProgressMap = [
      3: makeProgress(match: 0, next: 7),
      1: Progress(next: 1, inflights: Inflights(size: 1, maxBytes: 0), isLearner: true, recentActive: true),
    ]
    XCTAssertEqual(
      describeProgressMap(m), "1: StateProbe match=0 next=1 learner\n3: StateProbe match=0 next=7\n")
    XCTAssertEqual(describeProgressMap([:]), "")
  }
}

final class TrackerProgressTrackerTests: XCTestCase {
  /// A tracker with voters 1, 2, 3 (match 10, 5, 7) and learner 4 (match 100).
  private func makeTracker() -> ProgressTracker {
    let t = ProgressTracker(maxInflight: 5, maxInflightBytes: 0)
    t.config = TrackerConfig(voters: JointConfig(incoming: MajorityConfig([1, 2, 3])), learners: [4])
    for (id, match) in [(1, 10), (2, 5), (3, 7), (4, 100)] as [(UInt64, UInt64)] {
      t.progress[id] = Progress(
        match: match, next: match + 1, inflights: Inflights(size: 5, maxBytes: 0), isLearner: id == 4)
    }
    return t
  }

  func testConfigDescription() {
    var c = TrackerConfig(voters: JointConfig(incoming: MajorityConfig([1, 2, 3]), outgoing: MajorityConfig([1, 2])))
    XCTAssertEqual(c.description, "voters=(1 2 3)&&(1 2)")
    c.learners = [4]
    c.learnersNext = [5]
    c.autoLeave = true
    XCTAssertEqual(c.description, "voters=(1 2 3)&&(1 2) learners=(4) learners_next=(5) autoleave")
    XCTAssertEqual(TrackerConfig().description, "voters=()")
  }

  func testCommittedIgnoresLearners() {
    let t = makeTracker()
    XCTAssertEqual(t.committed(), 7)
    t.config.voters.outgoing = MajorityConfig([2])
    XCTAssertEqual(t.committed(), 5)
  }

  func testConfStateAndNodes() {
    let t = makeTracker()
    t.config.voters.outgoing = MajorityConfig([3, 2, 5])
    t.config.learnersNext = [5]
    t.config.autoLeave = true
    let cs = t.confState()
    XCTAssertEqual(cs.voters, [1, 2, 3])
    XCTAssertEqual(cs.votersOutgoing, [2, 3, 5])
    XCTAssertEqual(cs.learners, [4])
    XCTAssertEqual(cs.learnersNext, [5])
    XCTAssertTrue(cs.autoLeave)
    XCTAssertEqual(t.voterNodes(), [1, 2, 3, 5])
    XCTAssertEqual(t.learnerNodes(), [4])
    XCTAssertFalse(t.isSingleton())
  }

  func testIsSingleton() {
    let t = ProgressTracker(maxInflight: 1, maxInflightBytes: 0)
    XCTAssertFalse(t.isSingleton())
    t.config.voters.incoming = MajorityConfig([1])
    XCTAssertTrue(t.isSingleton())
    t.config.voters.outgoing = MajorityConfig([1])
    XCTAssertFalse(t.isSingleton())
  }

  func testVisitIsInIdOrder() {
    let t = ProgressTracker(maxInflight: 1, maxInflightBytes: 0)
    for id: UInt64 in [9, 3, 12, 1, 7, 2, 8, 10, 4] {
      t.progress[id] = Progress(next: 1, inflights: Inflights(size: 1, maxBytes: 0))
    }
    var seen: [UInt64] = []
    t.visit { id, _ in seen.append(id) }
    XCTAssertEqual(seen, [1, 2, 3, 4, 7, 8, 9, 10, 12])
  }

  func testQuorumActive() {
    let t = makeTracker()
    XCTAssertFalse(t.quorumActive())
    t.progress[4]!.recentActive = true  // learners do not count
    t.progress[1]!.recentActive = true
    XCTAssertFalse(t.quorumActive())
    t.progress[3]!.recentActive = true
    XCTAssertTrue(t.quorumActive())
  }

  func testVotes() {
    let t = makeTracker()
    t.recordVote(1, granted: true)
    t.recordVote(1, granted: false)  // only the first vote counts
    t.recordVote(4, granted: true)  // a learner's vote is not counted
    var tally = t.tallyVotes()
    XCTAssertEqual(tally.granted, 1)
    XCTAssertEqual(tally.rejected, 0)
    XCTAssertEqual(tally.result, .pending)
    t.recordVote(2, granted: false)
    t.recordVote(3, granted: true)
    tally = t.tallyVotes()
    XCTAssertEqual(tally.granted, 2)
    XCTAssertEqual(tally.rejected, 1)
    XCTAssertEqual(tally.result, .won)
    XCTAssertEqual(t.voteResult([2: false, 3: false]), .lost)
    t.resetVotes()
    XCTAssertTrue(t.votes.isEmpty)
    XCTAssertEqual(t.tallyVotes().result, .pending)
  }
}
