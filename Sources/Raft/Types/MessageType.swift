/// The kind of a Raft message. Raw values match etcd-raft's `raftpb.MessageType`,
/// so traces and encodings line up with the reference implementation.
public enum MessageType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
  case msgHup = 0
  case msgBeat = 1
  case msgProp = 2
  case msgApp = 3
  case msgAppResp = 4
  case msgVote = 5
  case msgVoteResp = 6
  case msgSnap = 7
  case msgHeartbeat = 8
  case msgHeartbeatResp = 9
  case msgUnreachable = 10
  case msgSnapStatus = 11
  case msgCheckQuorum = 12
  case msgTransferLeader = 13
  case msgTimeoutNow = 14
  case msgReadIndex = 15
  case msgReadIndexResp = 16
  case msgPreVote = 17
  case msgPreVoteResp = 18
  case msgStorageAppend = 19
  case msgStorageAppendResp = 20
  case msgStorageApply = 21
  case msgStorageApplyResp = 22
  case msgForgetLeader = 23

  /// The etcd-raft spelling (`MsgApp`, `MsgStorageAppendResp`, ...), used by the describe format.
  public var description: String {
    switch self {
    case .msgHup: return "MsgHup"
    case .msgBeat: return "MsgBeat"
    case .msgProp: return "MsgProp"
    case .msgApp: return "MsgApp"
    case .msgAppResp: return "MsgAppResp"
    case .msgVote: return "MsgVote"
    case .msgVoteResp: return "MsgVoteResp"
    case .msgSnap: return "MsgSnap"
    case .msgHeartbeat: return "MsgHeartbeat"
    case .msgHeartbeatResp: return "MsgHeartbeatResp"
    case .msgUnreachable: return "MsgUnreachable"
    case .msgSnapStatus: return "MsgSnapStatus"
    case .msgCheckQuorum: return "MsgCheckQuorum"
    case .msgTransferLeader: return "MsgTransferLeader"
    case .msgTimeoutNow: return "MsgTimeoutNow"
    case .msgReadIndex: return "MsgReadIndex"
    case .msgReadIndexResp: return "MsgReadIndexResp"
    case .msgPreVote: return "MsgPreVote"
    case .msgPreVoteResp: return "MsgPreVoteResp"
    case .msgStorageAppend: return "MsgStorageAppend"
    case .msgStorageAppendResp: return "MsgStorageAppendResp"
    case .msgStorageApply: return "MsgStorageApply"
    case .msgStorageApplyResp: return "MsgStorageApplyResp"
    case .msgForgetLeader: return "MsgForgetLeader"
    }
  }

  /// Messages generated and consumed by the local node only (never sent to peers).
  public var isLocal: Bool {
    switch self {
    case .msgHup, .msgBeat, .msgUnreachable, .msgSnapStatus, .msgCheckQuorum,
      .msgStorageAppend, .msgStorageAppendResp, .msgStorageApply, .msgStorageApplyResp:
      return true
    default:
      return false
    }
  }

  /// Requests a follower forwards to its leader with their originator as `from` (they may reach
  /// a node from another peer than their sender, even the originator itself).
  public var isForwardedRequest: Bool { self == .msgProp || self == .msgReadIndex }

  /// Responses to another message (they never carry a proposal or a request).
  public var isResponse: Bool {
    switch self {
    case .msgAppResp, .msgVoteResp, .msgHeartbeatResp, .msgUnreachable, .msgReadIndexResp,
      .msgPreVoteResp, .msgStorageAppendResp, .msgStorageApplyResp:
      return true
    default:
      return false
    }
  }

  /// Messages addressed to or answered by the local storage threads.
  public var isLocalStorage: Bool {
    switch self {
    case .msgStorageAppend, .msgStorageAppendResp, .msgStorageApply, .msgStorageApplyResp:
      return true
    default:
      return false
    }
  }

  /// The response type of a vote request (`MsgVote` → `MsgVoteResp`, `MsgPreVote` → `MsgPreVoteResp`).
  public var voteResponse: MessageType {
    switch self {
    case .msgVote: return .msgVoteResp
    case .msgPreVote: return .msgPreVoteResp
    default: preconditionFailure("not a vote message: \(self)")
    }
  }
}

/// The log entry kinds (etcd-raft's `raftpb.EntryType`).
public enum EntryType: UInt8, Sendable, CustomStringConvertible {
  case normal = 0
  case confChange = 1
  case confChangeV2 = 2

  public var description: String {
    switch self {
    case .normal: return "EntryNormal"
    case .confChange: return "EntryConfChange"
    case .confChangeV2: return "EntryConfChangeV2"
    }
  }
}

/// The node id that means "nobody" (no leader known, no vote cast).
public let noNode: UInt64 = 0

/// Local message targets for the asynchronous storage writes mode (etcd-raft's
/// `LocalAppendThread` and `LocalApplyThread`). They are ids no real node may use.
public let localAppendThread: UInt64 = UInt64.max
/// See `localAppendThread`.
public let localApplyThread: UInt64 = UInt64.max - 1
