/// How the leader replicates to one follower (etcd-raft's `tracker.StateType`).
public enum ProgressState: Sendable, Equatable, CustomStringConvertible {
  /// The leader does not know where the follower's log diverges; it sends at most one append per
  /// heartbeat interval and waits for the answer.
  case probe
  /// The follower is known to be in sync; appends are pipelined, bounded by the inflights window.
  case replicate
  /// The follower needs a snapshot; no appends are sent until it has been applied.
  case snapshot

  /// etcd's names: `StateProbe`, `StateReplicate`, `StateSnapshot`.
  public var description: String {
    switch self {
    case .probe: return "StateProbe"
    case .replicate: return "StateReplicate"
    case .snapshot: return "StateSnapshot"
    }
  }
}
