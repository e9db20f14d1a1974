import Raft
import XCTest

/// Acknowledged indexes from a dictionary; ids absent from it are unknown.
private struct QuorumTestIndexer: AckedIndexer {
  var acked: [UInt64: UInt64]

  func ackedIndex(voter id: UInt64) -> UInt64? { acked[id] }
}

final class QuorumMajorityTests: XCTestCase {
  func testDescriptionIsSortedAndParenthesized() {
    XCTAssertEqual(MajorityConfig([3, 1, 2]).description, "(1 2 3)")
    XCTAssertEqual(MajorityConfig().description, "()")
    XCTAssertEqual(MajorityConfig([7, 7, 5]).sorted(), [5, 7])
  }

  func testEmptyConfigCommitsEverythingAndWinsEveryVote() {
    let c = MajorityConfig()
    XCTAssertEqual(c.committedIndex(QuorumTestIndexer(acked: [1: 5])), UInt64.max)
    XCTAssertEqual(c.voteResult([1: false]), .won)
    XCTAssertEqual(describeQuorumIndex(UInt64.max), "∞")
    XCTAssertEqual(describeQuorumIndex(42), "42")
  }

  func testCommittedIndexIsWhatAMajorityReached() {
    let c = MajorityConfig([1, 2, 3])
    XCTAssertEqual(c.committedIndex(QuorumTestIndexer(acked: [1: 12, 2: 5, 3: 6])), 6)
    XCTAssertEqual(c.committedIndex(QuorumTestIndexer(acked: [1: 12, 2: 5, 3: 4])), 5)
    // Unknown voters count as zero.
    XCTAssertEqual(c.committedIndex(QuorumTestIndexer(acked: [1: 12])), 0)
    XCTAssertEqual(c.committedIndex(QuorumTestIndexer(acked: [1: 12, 2: 5])), 5)
    // Indexes of non-voters are ignored.
    XCTAssertEqual(c.committedIndex(QuorumTestIndexer(acked: [1: 9, 4: 100, 5: 100])), 0)

    let five = MajorityConfig([1, 2, 3, 4, 5])
    XCTAssertEqual(five.committedIndex(QuorumTestIndexer(acked: [1: 101, 2: 104, 3: 103, 4: 103])), 103)
    XCTAssertEqual(five.committedIndex(QuorumTestIndexer(acked: [1: 101, 2: 102, 3: 103, 4: 103])), 102)

    // An even count needs more than half.
    let four = MajorityConfig([1, 2, 3, 4])
    XCTAssertEqual(four.committedIndex(QuorumTestIndexer(acked: [1: 10, 2: 10, 3: 2, 4: 1])), 2)
  }

  func testCommittedIndexWithManyVoters() {
    // More voters than typical, with an unsorted spread of indexes.
    let ids: [UInt64] = Array(1...11)
    var acked: [UInt64: UInt64] = [:]
    for id in ids { acked[id] = (id * 7) % 11 }  // a permutation of 0...10
    XCTAssertEqual(MajorityConfig(ids).committedIndex(QuorumTestIndexer(acked: acked)), 5)
  }

  func testVoteResult() {
    let c = MajorityConfig([1, 2, 3])
    XCTAssertEqual(c.voteResult([:]), .pending)
    XCTAssertEqual(c.voteResult([1: true]), .pending)
    XCTAssertEqual(c.voteResult([1: true, 2: true]), .won)
    XCTAssertEqual(c.voteResult([1: true, 2: false]), .pending)
    XCTAssertEqual(c.voteResult([1: false, 2: false]), .lost)
    // Votes of non-members do not count.
    XCTAssertEqual(c.voteResult([1: true, 4: true, 5: true]), .pending)

    let two = MajorityConfig([4, 8])
    XCTAssertEqual(two.voteResult([4: false]), .lost)
    XCTAssertEqual(two.voteResult([4: true]), .pending)
    XCTAssertEqual(two.voteResult([4: true, 8: true]), .won)
    XCTAssertEqual(VoteResult.pending.description, "VotePending")
    XCTAssertEqual(VoteResult.lost.description, "VoteLost")
    XCTAssertEqual(VoteResult.won.description, "VoteWon")
  }

  func testDescribeTable() {
    let c = MajorityConfig([1, 2, 3])
    let got = c.describe(QuorumTestIndexer(acked: [1: 5, 2: 5]))
    let want = """
             idx
      x>       5    (id=1)
      x>       5    (id=2)
      ?        0    (id=3)

      """
    XCTAssertEqual(got, want)
    XCTAssertEqual(MajorityConfig().describe(QuorumTestIndexer(acked: [:])), "<empty majority quorum>")
  }
}

final class QuorumJointTests: XCTestCase {
  func testDescription() {
    let j = JointConfig(incoming: MajorityConfig([2, 1]), outgoing: MajorityConfig([1]))
    XCTAssertEqual(j.description, "(1 2)&&(1)")
    XCTAssertEqual(JointConfig(incoming: MajorityConfig([1, 2])).description, "(1 2)")
    XCTAssertFalse(JointConfig(incoming: MajorityConfig([1])).isJoint)
    XCTAssertTrue(JointConfig(incoming: MajorityConfig([1]), outgoing: MajorityConfig([2])).isJoint)
  }

  func testIdsIsTheUnion() {
    let j = JointConfig(incoming: MajorityConfig([1, 2]), outgoing: MajorityConfig([2, 3]))
    XCTAssertEqual(j.ids, [1, 2, 3])
  }

  func testCommittedIndexIsTheMinimumOfBothHalves() {
    let j = JointConfig(incoming: MajorityConfig([1, 2, 3]), outgoing: MajorityConfig([3, 4, 5]))
    let l = QuorumTestIndexer(acked: [1: 10, 2: 10, 3: 7, 4: 3, 5: 2])
    XCTAssertEqual(j.committedIndex(l), 3)
    // With an empty outgoing half, the incoming half alone decides.
    XCTAssertEqual(JointConfig(incoming: MajorityConfig([1, 2, 3])).committedIndex(l), 10)
    // Both halves empty: everything is committed.
    XCTAssertEqual(JointConfig().committedIndex(l), UInt64.max)
  }

  func testVoteResultNeedsBothHalves() {
    let j = JointConfig(incoming: MajorityConfig([1]), outgoing: MajorityConfig([2]))
    XCTAssertEqual(j.voteResult([:]), .pending)
    XCTAssertEqual(j.voteResult([1: true]), .pending)
    XCTAssertEqual(j.voteResult([1: true, 2: true]), .won)
    XCTAssertEqual(j.voteResult([1: true, 2: false]), .lost)
    XCTAssertEqual(j.voteResult([1: false]), .lost)
    XCTAssertEqual(JointConfig().voteResult([:]), .won)

    let overlapping = JointConfig(incoming: MajorityConfig([1, 2, 3]), outgoing: MajorityConfig([1, 2, 4]))
    XCTAssertEqual(overlapping.voteResult([1: true, 3: true]), .pending)
    XCTAssertEqual(overlapping.voteResult([1: true, 2: true]), .won)
    XCTAssertEqual(overlapping.voteResult([3: false, 4: false, 1: false]), .lost)
  }

  func testDescribeUsesAllVoters() {
    let j = JointConfig(incoming: MajorityConfig([1]), outgoing: MajorityConfig([2]))
    let l = QuorumTestIndexer(acked: [1: 3])
    XCTAssertEqual(j.describe(l), MajorityConfig([1, 2]).describe(l))
  }
}
