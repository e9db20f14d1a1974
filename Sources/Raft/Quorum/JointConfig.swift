/// Two majority configurations that must both agree (etcd-raft's `quorum.JointConfig`).
///
/// Outside of a membership change only `incoming` is populated; `outgoing` is empty and, being
/// the neutral element, makes the joint configuration behave exactly like `incoming`.
public struct JointConfig: Sendable, Equatable, CustomStringConvertible {
  /// The configuration being moved to (etcd's `Voters[0]`).
  public var incoming: MajorityConfig
  /// The configuration being moved away from (etcd's `Voters[1]`); empty when not joint.
  public var outgoing: MajorityConfig

  /// A joint configuration of the two halves.
  public init(incoming: MajorityConfig = MajorityConfig(), outgoing: MajorityConfig = MajorityConfig()) {
    self.incoming = incoming
    self.outgoing = outgoing
  }

  /// True while a membership change is in progress (the outgoing half is not empty).
  public var isJoint: Bool { !outgoing.isEmpty }

  /// Every voter of either half.
  public var ids: Set<UInt64> { incoming.ids.union(outgoing.ids) }

  /// `(1 2 3)&&(1 2)` while joint, just the incoming half otherwise.
  public var description: String {
    outgoing.isEmpty ? incoming.description : incoming.description + "&&" + outgoing.description
  }

  /// The highest index committed in both halves.
  public func committedIndex(_ l: some AckedIndexer) -> UInt64 {
    min(incoming.committedIndex(l), outgoing.committedIndex(l))
  }

  /// The election is won when both halves win and lost as soon as either half loses.
  public func voteResult(_ votes: [UInt64: Bool]) -> VoteResult {
    let a = incoming.voteResult(votes)
    let b = outgoing.voteResult(votes)
    if a == b { return a }
    if a == .lost || b == .lost { return .lost }
    return .pending
  }

  /// The table of `MajorityConfig.describe` over the union of both halves.
  public func describe(_ l: some AckedIndexer) -> String {
    MajorityConfig(ids).describe(l)
  }
}
