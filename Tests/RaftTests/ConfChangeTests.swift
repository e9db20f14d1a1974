import Raft
import XCTest

final class ConfChangeChangerTests: XCTestCase {
  private func changes(_ s: String) -> [ConfChangeSingle] {
    // The compact notation of the scenario scripts: v = voter, l = learner, r = remove.
    try! ConfChangeSingle.parse(s)
  }

  /// Applies a change result to the tracker, as raft does.
  private func install(_ t: ProgressTracker, _ r: (TrackerConfig, ProgressMap)) {
    t.config = r.0
    t.progress = r.1
  }

  private func assertConfChangeError(
    _ body: @autoclosure () throws -> (TrackerConfig, ProgressMap), _ message: String,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
      XCTAssertEqual(error as? RaftError, .confChange(message), file: file, line: line)
    }
  }

  func testSimpleAddsVotersAndLearners() throws {
    let t = ProgressTracker(maxInflight: 10, maxInflightBytes: 0)
    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v1")))
    XCTAssertEqual(t.config.description, "voters=(1)")
    XCTAssertEqual(t.progress[1]?.next, 1, "next is at least 1 even with an empty log")
    XCTAssertEqual(t.progress[1]?.recentActive, true)
    install(t, try Changer(tracker: t, lastIndex: 5).simple(changes("v2 l3")))
    XCTAssertEqual(t.config.description, "voters=(1 2) learners=(3)")
    XCTAssertEqual(
      describeProgressMap(t.progress),
      "1: StateProbe match=0 next=1\n2: StateProbe match=0 next=5\n3: StateProbe match=0 next=5 learner\n")
    XCTAssertEqual(t.progress[2]?.inflights.size, 10)
  }

  func testSimpleErrors() throws {
    let t = ProgressTracker(maxInflight: 10, maxInflightBytes: 0)
    assertConfChangeError(try Changer(tracker: t, lastIndex: 0).simple(changes("l1")), "removed all voters")
    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v1")))
    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v2")))
    let c = Changer(tracker: t, lastIndex: 0)
    assertConfChangeError(try c.simple(changes("r1 r2")), "removed all voters")
    assertConfChangeError(
      try c.simple(changes("v3 v4")), "more than one voter changed without entering joint config")
    assertConfChangeError(
      try c.simple(changes("r1 v5")), "more than one voter changed without entering joint config")
    // Demoting and re-promoting the same voter leaves the voters as they were, which is allowed.
    XCTAssertEqual(try c.simple(changes("l1 v1")).0.description, "voters=(1 2)")
  }

  func testJointErrors() throws {
    let t = ProgressTracker(maxInflight: 10, maxInflightBytes: 0)
    let empty = Changer(tracker: t, lastIndex: 0)
    assertConfChangeError(try empty.leaveJoint(), "can't leave a non-joint config")
    assertConfChangeError(try empty.enterJoint(autoLeave: false, changes("v1")), "can't make a zero-voter config joint")

    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v1")))
    assertConfChangeError(try Changer(tracker: t, lastIndex: 0).leaveJoint(), "can't leave a non-joint config")
    assertConfChangeError(
      try Changer(tracker: t, lastIndex: 0).enterJoint(autoLeave: false, changes("r1")), "removed all voters")
    install(t, try Changer(tracker: t, lastIndex: 0).enterJoint(autoLeave: true, changes("v2 v3")))
    XCTAssertEqual(t.config.description, "voters=(1 2 3)&&(1) autoleave")

    let c = Changer(tracker: t, lastIndex: 0)
    assertConfChangeError(try c.enterJoint(autoLeave: false, []), "config is already joint")
    assertConfChangeError(try c.simple(changes("l4")), "can't apply simple config change in joint config")
    install(t, try c.leaveJoint())
    XCTAssertEqual(t.config.description, "voters=(1 2 3)")
    XCTAssertFalse(t.config.autoLeave)
  }

  func testDemotionWhileJointIsStagedInLearnersNext() throws {
    let t = ProgressTracker(maxInflight: 10, maxInflightBytes: 0)
    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v1")))
    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v2")))
    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v3")))
    install(t, try Changer(tracker: t, lastIndex: 7).enterJoint(autoLeave: false, changes("l3 v4 r2")))
    XCTAssertEqual(t.config.description, "voters=(1 4)&&(1 2 3) learners_next=(3)")
    XCTAssertEqual(t.progress[3]?.isLearner, false)
    XCTAssertNotNil(t.progress[2], "an outgoing voter keeps its progress while joint")
    XCTAssertEqual(t.progress[4]?.next, 7)
    let cs = t.confState()
    XCTAssertEqual(cs.voters, [1, 4])
    XCTAssertEqual(cs.votersOutgoing, [1, 2, 3])
    XCTAssertEqual(cs.learnersNext, [3])

    install(t, try Changer(tracker: t, lastIndex: 8).leaveJoint())
    XCTAssertEqual(t.config.description, "voters=(1 4) learners=(3)")
    XCTAssertEqual(t.progress[3]?.isLearner, true)
    XCTAssertNil(t.progress[2])
    XCTAssertEqual(t.progress.keys.sorted(), [1, 3, 4])
  }

  func testChangerDoesNotMutateTheTracker() throws {
    let t = ProgressTracker(maxInflight: 10, maxInflightBytes: 0)
    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v1")))
    install(t, try Changer(tracker: t, lastIndex: 0).simple(changes("v2")))
    let before = t.config
    let pr2 = t.progress[2]!
    let pr1 = t.progress[1]!

    let (cfg, trk) = try Changer(tracker: t, lastIndex: 3).simple(changes("l2"))
    XCTAssertEqual(cfg.description, "voters=(1) learners=(2)")
    XCTAssertEqual(trk[2]?.isLearner, true)
    // The tracker still has the old configuration and its progress is untouched.
    XCTAssertEqual(t.config, before)
    XCTAssertFalse(pr2.isLearner)
    XCTAssertTrue(t.progress[2] === pr2)
    XCTAssertFalse(trk[2] === pr2, "a mutated progress is a copy")
    XCTAssertTrue(trk[1] === pr1, "an untouched progress is shared")

    // A failing change leaves no trace either.
    XCTAssertThrowsError(try Changer(tracker: t, lastIndex: 3).simple(changes("l1 l2")))
    XCTAssertEqual(t.config, before)
    XCTAssertFalse(pr1.isLearner)
    XCTAssertFalse(pr2.isLearner)

    _ = try Changer(tracker: t, lastIndex: 3).enterJoint(autoLeave: false, changes("l2 r1 v3"))
    XCTAssertEqual(t.config, before)
    XCTAssertEqual(t.progress.keys.sorted(), [1, 2])
    XCTAssertFalse(pr2.isLearner)
  }

  func testInvalidTrackerIsRejected() {
    let t = ProgressTracker(maxInflight: 10, maxInflightBytes: 0)
    t.config.voters.incoming = MajorityConfig([1])  // but no progress for 1
    XCTAssertThrowsError(try Changer(tracker: t, lastIndex: 0).simple(changes("v2"))) { error in
      XCTAssertEqual(error as? RaftError, .confChange("no progress for 1"))
    }
  }

  func testZeroNodeIDIsIgnored() throws {
    let t = ProgressTracker(maxInflight: 10, maxInflightBytes: 0)
    let (cfg, trk) = try Changer(tracker: t, lastIndex: 0).simple(changes("v1 r0 v0 l0"))
    XCTAssertEqual(cfg.description, "voters=(1)")
    XCTAssertEqual(trk.keys.sorted(), [1])
  }
}

final class ConfChangeRestoreTests: XCTestCase {
  private func roundTrip(_ cs: ConfState, file: StaticString = #filePath, line: UInt = #line) throws {
    let empty = ProgressTracker(maxInflight: 20, maxInflightBytes: 0)
    let (cfg, trk) = try restoreConfState(Changer(tracker: empty, lastIndex: 10), cs)
    XCTAssertEqual(empty.config, TrackerConfig(), "restore leaves its input alone", file: file, line: line)
    XCTAssertTrue(empty.progress.isEmpty, file: file, line: line)
    let restored = ProgressTracker(maxInflight: 20, maxInflightBytes: 0, config: cfg, progress: trk)
    XCTAssertTrue(
      restored.confState().isEquivalent(to: cs), "\(restored.confState()) != \(cs)", file: file, line: line)
    let tracked = Set(cs.voters + cs.learners + cs.votersOutgoing + cs.learnersNext)
    XCTAssertEqual(Set(trk.keys), tracked, file: file, line: line)
    for (_, pr) in trk {
      XCTAssertEqual(pr.next, 10, file: file, line: line)
      XCTAssertEqual(pr.match, 0, file: file, line: line)
    }
  }

  func testRoundTrips() throws {
    try roundTrip(ConfState(voters: [1, 2, 3]))
    try roundTrip(ConfState(voters: [1, 2, 3], learners: [4, 5]))
    try roundTrip(ConfState(voters: [1, 2, 3], learners: [5], votersOutgoing: [1, 2, 4, 6], learnersNext: [4]))
    try roundTrip(ConfState(voters: [1, 2, 3], votersOutgoing: [1, 2, 3], autoLeave: true))
    try roundTrip(ConfState(voters: [9], learners: [7], votersOutgoing: [1, 2, 3], learnersNext: [3]))
  }

  func testRestoreOfAJointStateMatchesTheOriginalChange() throws {
    // Build a joint configuration through the changer, then restore it from its ConfState.
    let t = ProgressTracker(maxInflight: 5, maxInflightBytes: 0)
    for id: UInt64 in [1, 2, 3] {
      let r = try Changer(tracker: t, lastIndex: 1).simple([ConfChangeSingle(type: .addNode, nodeID: id)])
      t.config = r.0
      t.progress = r.1
    }
    let r = try Changer(tracker: t, lastIndex: 1).enterJoint(autoLeave: true, try ConfChangeSingle.parse("l2 r3 v4 l5"))
    t.config = r.0
    t.progress = r.1
    let restored = try restoreConfState(
      Changer(tracker: ProgressTracker(maxInflight: 5, maxInflightBytes: 0), lastIndex: 1), t.confState())
    XCTAssertEqual(restored.0, t.config)
    XCTAssertEqual(describeProgressMap(restored.1), describeProgressMap(t.progress))
  }

  func testRestoreOfEmptyAndInvalidStates() {
    let empty = ProgressTracker(maxInflight: 1, maxInflightBytes: 0)
    // Restoring nothing yields the empty configuration (no step runs).
    XCTAssertNoThrow(try restoreConfState(Changer(tracker: empty, lastIndex: 0), ConfState()))
    // Learners without voters are not a valid configuration.
    XCTAssertThrowsError(try restoreConfState(Changer(tracker: empty, lastIndex: 0), ConfState(learners: [1])))
  }
}
