import RaftWAL

/// Why a `ReplicatedLog` call failed. For appends, three answers are distinct: the entry was
/// **not committed** and never will be (`notLeader`, `notCommitted`, `tooLarge`: safe to
/// retry), its **outcome is unknown** (`outcomeUnknown`: it was proposed and may still commit;
/// a retry may write it twice, so make entries idempotent or read the log to find out), or the
/// log itself failed (`storage`, `internalFailure`).
public enum ReplicatedLogError: Error, Sendable, Equatable, CustomStringConvertible {
  /// Why an append was certainly not committed.
  public enum NotCommittedReason: Sendable, Equatable {
    /// The node's queue was full: back off and retry.
    case busy
    /// Raft refused it (a leadership transfer in progress, the uncommitted-bytes limit), or a
    /// later leader's entry was committed where it was appended.
    case dropped
    /// The log was stopping or stopped before the append was proposed.
    case stopped
    /// The task was cancelled before the append was proposed.
    case cancelled
    /// `append(contentsOf:)` got no payloads (an empty batch has no index).
    case emptyBatch
  }

  /// Why the outcome of an append is unknown.
  public enum OutcomeUnknownReason: Sendable, Equatable {
    /// The deadline passed after the append was proposed.
    case timedOut
    /// The task was cancelled after the append was proposed.
    case cancelled
    /// The node lost track of the entries after appending them (it stopped, or lost the
    /// leadership and saw them overwritten or passed by a leader's snapshot); the text says
    /// which.
    case lost(String)
  }

  /// This node is not the leader; `leader` is the one it knows of (nil: none known). Not
  /// committed.
  case notLeader(leader: UInt64?)
  /// Certainly not committed, and never will be.
  case notCommitted(NotCommittedReason)
  /// Proposed, and then the answer was lost: the entries may still be committed.
  case outcomeUnknown(OutcomeUnknownReason)
  /// An entry is larger than the log stores (`WALOptions.recordBytesMax`, less the entry's own
  /// fields): nothing of its batch was proposed.
  case tooLarge(bytes: Int, max: Int)
  /// The storage failed and the node stopped: the WAL's error (operation, file, errno).
  indirect case storage(WALError)
  /// The node stopped on a broken invariant of its own (not the disk).
  case internalFailure(String)
  /// The log is stopped (`shutdown()`, or a failure before this call).
  case stopped
  /// A read barrier or a leadership transfer did not finish within its deadline.
  case timedOut
  /// The task was cancelled (a read barrier, a reader's wait, a leadership transfer).
  case cancelled
  /// The entries asked for were compacted away (`compact(through:)` here, or a leader's
  /// snapshot installed on this node): the log holds entries from `firstIndex` on, and
  /// `latestSnapshot()` has the application's snapshot up to `firstIndex - 1`.
  case compacted(firstIndex: UInt64)
  /// The membership change cannot be made (the text says why).
  case invalidMembershipChange(String)

  /// The error an engine outcome of a proposal maps to (an engine `.stopped` means the node
  /// refused the proposal before Raft appended it).
  public init(_ error: EngineError) {
    switch error {
    case .notLeader(let leader): self = .notLeader(leader: leader)
    case .dropped: self = .notCommitted(.dropped)
    case .busy: self = .notCommitted(.busy)
    case .stopped: self = .notCommitted(.stopped)
    case .outcomeUnknown(let why): self = .outcomeUnknown(.lost(why))
    case .timedOut: self = .outcomeUnknown(.timedOut)
    case .tooLarge(let bytes, let max): self = .tooLarge(bytes: bytes, max: max)
    case .storage(let wal): self = .storage(wal)
    case .invalidConfChange(let why): self = .invalidMembershipChange(why)
    case .internalFailure(let why): self = .internalFailure(why)
    }
  }

  /// The error of a call that proposes nothing (a read barrier, a compaction): a stopped node
  /// is `.stopped`, not an append that was not committed.
  init(call error: EngineError) {
    self = error == .stopped ? .stopped : ReplicatedLogError(error)
  }

  /// Whether the entries of the failed call are certainly not in the log, now or later.
  public var isNotCommitted: Bool {
    switch self {
    case .notLeader, .notCommitted, .tooLarge: return true
    default: return false
    }
  }

  public var description: String {
    switch self {
    case .notLeader(let leader?): return "not the leader (the leader is node \(leader)); not committed"
    case .notLeader(nil): return "not the leader (no leader is known); not committed"
    case .notCommitted(let why): return "not committed: \(why)"
    case .outcomeUnknown(.lost(let why)): return "outcome unknown (the entries may still commit): \(why)"
    case .outcomeUnknown(let why): return "outcome unknown (the entries may still commit): \(why)"
    case .tooLarge(let bytes, let max):
      return "an entry of \(bytes) bytes is larger than the log's limit of \(max); not committed"
    case .storage(let wal): return "storage failed, the log stopped: \(wal)"
    case .internalFailure(let why): return "internal failure (not the disk), the log stopped: \(why)"
    case .stopped: return "the log is stopped"
    case .timedOut: return "timed out"
    case .cancelled: return "cancelled"
    case .compacted(let first): return "compacted: the log holds entries from \(first) on"
    case .invalidMembershipChange(let why): return "invalid membership change: \(why)"
    }
  }
}
