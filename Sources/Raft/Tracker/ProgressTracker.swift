/// The membership configuration the tracker works with (etcd-raft's `tracker.Config`).
///
/// Invariants (checked by the conf change `Changer`): learners and voters of either half are
/// disjoint; `learnersNext` is a subset of the outgoing voters and is empty unless joint;
/// `autoLeave` is false unless joint.
public struct TrackerConfig: Sendable, Equatable, CustomStringConvertible {
  /// The voters, possibly a joint configuration.
  public var voters: JointConfig
  /// Leave the joint configuration automatically once possible (meaningful only while joint).
  public var autoLeave: Bool
  /// The learners: replicated to, but never voting.
  public var learners: Set<UInt64>
  /// Outgoing voters that become learners when the joint configuration is left. A voter demoted
  /// while entering a joint configuration cannot be a learner yet, since it still votes in the
  /// outgoing half.
  public var learnersNext: Set<UInt64>

  /// A configuration with the given parts (empty by default).
  public init(
    voters: JointConfig = JointConfig(), autoLeave: Bool = false, learners: Set<UInt64> = [],
    learnersNext: Set<UInt64> = []
  ) {
    self.voters = voters
    self.autoLeave = autoLeave
    self.learners = learners
    self.learnersNext = learnersNext
  }

  /// `voters=(1 2 3)&&(1 2) learners=(4) learners_next=(5) autoleave`; empty learner sets and a
  /// false auto-leave are left out.
  public var description: String {
    var s = "voters=\(voters)"
    if !learners.isEmpty { s += " learners=\(MajorityConfig(learners))" }
    if !learnersNext.isEmpty { s += " learners_next=\(MajorityConfig(learnersNext))" }
    if autoLeave { s += " autoleave" }
    return s
  }
}

/// Reads acknowledged indexes from the `match` of each progress.
struct MatchAckIndexer: AckedIndexer {
  let progress: ProgressMap

  func ackedIndex(voter id: UInt64) -> UInt64? { progress[id]?.match }
}

/// The active configuration plus what the leader knows about every peer in it: replication
/// progress and, during an election, the votes received (etcd-raft's `tracker.ProgressTracker`).
public final class ProgressTracker {
  /// The active membership configuration.
  @exclusivity(unchecked) public var config: TrackerConfig
  /// Progress of every voter and learner of `config` (and nobody else).
  @exclusivity(unchecked) public var progress: ProgressMap {
    didSet { rebuildSortedProgress() }
  }
  /// `progress` in ascending id order, for `visit` and lookups without hashing.
  /// Invariant: the same (id, Progress) pairs as `progress`, rebuilt whenever it changes.
  @exclusivity(unchecked) private var sortedProgress: ContiguousArray<(id: UInt64, pr: Progress)> = []
  /// Votes received in the current election, true = granted.
  @exclusivity(unchecked) public var votes: [UInt64: Bool]
  /// Window size (messages) of each new `Inflights`.
  public let maxInflight: Int
  /// Window size (bytes) of each new `Inflights`; 0 = unlimited.
  public let maxInflightBytes: UInt64

  /// An empty tracker (no voters, no learners).
  public init(maxInflight: Int, maxInflightBytes: UInt64) {
    self.maxInflight = maxInflight
    self.maxInflightBytes = maxInflightBytes
    self.config = TrackerConfig()
    self.progress = [:]
    self.votes = [:]
  }

  private func rebuildSortedProgress() {
    var sorted = ContiguousArray<(id: UInt64, pr: Progress)>()
    sorted.reserveCapacity(progress.count)
    for (id, pr) in progress { sorted.append((id, pr)) }
    sorted.sort { $0.id < $1.id }
    sortedProgress = sorted
  }

  /// The progress of `id`, or nil when it is not tracked. Small configurations are searched
  /// linearly (cheaper than hashing); large ones use the dictionary.
  @inline(__always)
  public func progress(of id: UInt64) -> Progress? {
    if sortedProgress.count > 16 { return progress[id] }
    for entry in sortedProgress where entry.id == id { return entry.pr }
    return nil
  }

  /// A tracker with the given limits, configuration and progress map (no votes).
  public init(maxInflight: Int, maxInflightBytes: UInt64, config: TrackerConfig, progress: ProgressMap) {
    self.maxInflight = maxInflight
    self.maxInflightBytes = maxInflightBytes
    self.config = config
    self.progress = progress
    self.votes = [:]
    rebuildSortedProgress()
  }

  /// The active configuration as a `ConfState` (all id lists sorted).
  public func confState() -> ConfState {
    ConfState(
      voters: config.voters.incoming.sorted(),
      learners: config.learners.sorted(),
      votersOutgoing: config.voters.outgoing.sorted(),
      learnersNext: config.learnersNext.sorted(),
      autoLeave: config.autoLeave)
  }

  /// True when there is exactly one voter and the configuration is not joint.
  public func isSingleton() -> Bool {
    config.voters.incoming.count == 1 && config.voters.outgoing.isEmpty
  }

  /// The highest index acknowledged (via `match`) by a quorum of the voters (both halves while
  /// joint).
  public func committed() -> UInt64 {
    guard config.voters.outgoing.isEmpty else {
      return config.voters.committedIndex(MatchAckIndexer(progress: progress))
    }
    // Not joint: the voters are exactly the tracked peers that are not learners.
    let n = config.voters.incoming.count
    if n == 0 { return UInt64.max }
    return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { scratch in
      var matches = scratch
      var i = 0
      for entry in sortedProgress where !entry.pr.isLearner && i < n {
        matches.initializeElement(at: i, to: entry.pr.match)
        i += 1
      }
      // A voter without a progress counts as index 0 (as the general path does).
      while i < n {
        matches.initializeElement(at: i, to: 0)
        i += 1
      }
      matches.sort()
      defer { _ = matches.deinitialize() }
      // The index acknowledged by a majority: n/2 + 1 places from the top.
      return matches[n - (n / 2 + 1)]
    }
  }

  /// Calls `f` for every tracked peer in ascending id order.
  public func visit(_ f: (UInt64, Progress) throws -> Void) rethrows {
    let snapshot = sortedProgress
    for entry in snapshot { try f(entry.id, entry.pr) }
  }

  /// Whether the voters heard from recently (`recentActive`) form a quorum.
  public func quorumActive() -> Bool {
    var active: [UInt64: Bool] = [:]
    for (id, pr) in progress where !pr.isLearner {
      active[id] = pr.recentActive
    }
    return config.voters.voteResult(active) == .won
  }

  /// The voters of both halves, sorted.
  public func voterNodes() -> [UInt64] { config.voters.ids.sorted() }

  /// The learners, sorted.
  public func learnerNodes() -> [UInt64] { config.learners.sorted() }

  /// Forgets all votes, for a new election.
  public func resetVotes() { votes = [:] }

  /// Records the vote of `id`; only the first vote of each peer counts.
  public func recordVote(_ id: UInt64, granted: Bool) {
    if votes[id] == nil { votes[id] = granted }
  }

  /// The granted and rejected votes of tracked voters, and the election outcome so far.
  public func tallyVotes() -> (granted: Int, rejected: Int, result: VoteResult) {
    var granted = 0
    var rejected = 0
    for (id, pr) in progress where !pr.isLearner {
      guard let v = votes[id] else { continue }
      if v { granted += 1 } else { rejected += 1 }
    }
    return (granted, rejected, config.voters.voteResult(votes))
  }

  /// The outcome of `votes` under the active voter configuration.
  public func voteResult(_ votes: [UInt64: Bool]) -> VoteResult {
    config.voters.voteResult(votes)
  }
}
