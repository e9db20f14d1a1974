/// Supplies the highest log index a voter is known to have acknowledged (etcd-raft's
/// `quorum.AckedIndexer`). Returning nil means "nothing known yet", which is different from an
/// acknowledged index of zero only in how it is displayed.
public protocol AckedIndexer {
  /// The index acknowledged by `id`, or nil when nothing is known about that voter.
  func ackedIndex(voter id: UInt64) -> UInt64?
}

/// The outcome of counting votes against a quorum configuration.
public enum VoteResult: Sendable, Equatable, CustomStringConvertible {
  /// Neither a quorum of yes nor a quorum of no votes has been reached yet.
  case pending
  /// A quorum of no votes has been reached: the election can no longer be won.
  case lost
  /// A quorum of yes votes has been reached.
  case won

  /// etcd's names: `VotePending`, `VoteLost`, `VoteWon`.
  public var description: String {
    switch self {
    case .pending: return "VotePending"
    case .lost: return "VoteLost"
    case .won: return "VoteWon"
    }
  }
}

/// Formats a committed index the way etcd's `quorum.Index` prints: `∞` for `UInt64.max` (the
/// committed index of an empty configuration), the decimal value otherwise.
public func describeQuorumIndex(_ index: UInt64) -> String {
  index == UInt64.max ? "∞" : String(index)
}
