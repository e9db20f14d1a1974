/// The role of a node.
public enum StateType: UInt8, Sendable, CustomStringConvertible {
  case follower = 0
  case candidate = 1
  case leader = 2
  case preCandidate = 3

  public var description: String {
    switch self {
    case .follower: return "StateFollower"
    case .candidate: return "StateCandidate"
    case .leader: return "StateLeader"
    case .preCandidate: return "StatePreCandidate"
    }
  }
}

/// Volatile state that is useful to log or display but need not be persisted.
public struct SoftState: Sendable, Equatable {
  /// The leader as far as this node knows (`noNode` when none).
  public var lead: UInt64
  public var raftState: StateType

  public init(lead: UInt64, raftState: StateType) {
    self.lead = lead
    self.raftState = raftState
  }
}

/// The answer to a ReadIndex request: once the application has applied up to `index`, a read
/// issued before the request is linearizable. `requestCtx` is the caller's context, verbatim.
public struct ReadState: Sendable, Equatable {
  public var index: UInt64
  public var requestCtx: [UInt8]

  public init(index: UInt64, requestCtx: [UInt8]) {
    self.index = index
    self.requestCtx = requestCtx
  }
}

/// How a snapshot sent to a follower ended, as reported by the application.
public enum SnapshotStatus: Sendable {
  case finish
  case failure
}

/// Why a node starts an election.
enum CampaignType: Equatable {
  /// The pre-vote round (PreVote enabled).
  case preElection
  /// A normal election.
  case election
  /// An election requested by the leader through MsgTimeoutNow.
  case transfer

  /// The context a transfer campaign carries on its MsgVote, as etcd-raft spells it.
  static let transferContext: [UInt8] = Array("CampaignTransfer".utf8)
}
