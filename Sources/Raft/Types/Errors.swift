/// Errors surfaced by the algorithm layer and its storage (etcd-raft's exported errors).
public enum RaftError: Error, Equatable, Sendable, CustomStringConvertible {
  /// The requested index is older than the existing snapshot (etcd `ErrCompacted`).
  case compacted
  /// The requested snapshot is older than the existing one (etcd `ErrSnapOutOfDate`).
  case snapshotOutOfDate
  /// The requested entries are not available yet (etcd `ErrUnavailable`).
  case unavailable
  /// The snapshot is being built and is temporarily unavailable (etcd `ErrSnapshotTemporarilyUnavailable`).
  case snapshotTemporarilyUnavailable
  /// A proposal was dropped: no leader, leader transfer in progress, or a limit was hit
  /// (etcd `ErrProposalDropped`).
  case proposalDropped
  /// `step` was handed a local message it must not accept (etcd `ErrStepLocalMsg`).
  case stepLocalMessage
  /// `step` was handed a response from a peer that is not tracked (etcd `ErrStepPeerNotFound`).
  case stepPeerNotFound
  /// The configuration is invalid; the string says which field and why.
  case invalidConfig(String)
  /// A conf change could not be applied; the string says why.
  case confChange(String)
  /// Bootstrap was called on a node that already has state.
  case bootstrap(String)
  /// `RawNode.step` refused a message from a peer that no correct peer sends; says why.
  case invalidMessage(String)

  public var description: String {
    switch self {
    case .compacted: return "requested index is unavailable due to compaction"
    case .snapshotOutOfDate: return "requested index is older than the existing snapshot"
    case .unavailable: return "requested entry at index is unavailable"
    case .snapshotTemporarilyUnavailable: return "snapshot is temporarily unavailable"
    case .proposalDropped: return "raft proposal dropped"
    case .stepLocalMessage: return "raft: cannot step raft local message"
    case .stepPeerNotFound: return "raft: cannot step as peer not found"
    case .invalidConfig(let s): return s
    case .confChange(let s): return s
    case .bootstrap(let s): return s
    case .invalidMessage(let s): return "raft: invalid message: \(s)"
    }
  }
}
