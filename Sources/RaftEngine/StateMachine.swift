import Raft
import RaftWAL

/// The application's replicated state, driven by the apply side of a `Node` (one thread: the
/// apply worker in async mode, the run loop in sync mode).
public protocol StateMachine: AnyObject {
  /// Applies the committed normal entry at `index` (entries arrive in index order, each once
  /// per process lifetime after the last snapshot; those with empty data only with
  /// `appliesEmptyEntries`). `data` is a view into a buffer the
  /// entry's batch or message shares: copy what you keep (`Array(data)`).
  func apply(index: UInt64, term: UInt64, data: Payload)
  /// Replaces the state with a snapshot's data (installed from a leader or at restart).
  func restore(snapshot: Snapshot)
  /// Every entry up to `index` is applied (entries without data and conf changes included).
  func applied(through index: UInt64)
  /// The state as it is now (everything applied so far), for a snapshot; nil when the machine
  /// does not take snapshots (then the log is never compacted).
  func snapshotData() -> [UInt8]?
  /// The committed configuration change at `index`, in log order with the entries (the node
  /// applies it to Raft next): for the application's own view of the membership, such as the
  /// peer addresses carried in the change's context.
  func applyConfChange(_ change: AnyConfChange, index: UInt64, term: UInt64)
  /// Whether `apply` also gets the normal entries without data (a new leader's empty entry, an
  /// empty proposal); false by default.
  var appliesEmptyEntries: Bool { get }
}

extension StateMachine {
  /// Nothing to do by default.
  public func applied(through index: UInt64) {}
  /// No snapshots by default.
  public func snapshotData() -> [UInt8]? { nil }
  /// Nothing to do by default.
  public func applyConfChange(_ change: AnyConfChange, index: UInt64, term: UInt64) {}
  /// Entries without data are skipped by default.
  public var appliesEmptyEntries: Bool { false }
}

/// Why a proposal or an engine call failed.
public enum EngineError: Error, Equatable, Sendable, CustomStringConvertible {
  /// This node is not the leader; `leader` is the one it knows of (nil when none is known).
  case notLeader(leader: UInt64?)
  /// The proposal was not committed and never will be: Raft refused it (no leader, a
  /// transfer in progress, the uncommitted-bytes limit), or its entries were appended and then
  /// an entry of a later leader was committed in their place (or below them). Safe to retry.
  case dropped
  /// The proposal's entries were appended to the log, and then this node lost track of them
  /// (it stopped, or it lost leadership and saw them overwritten or passed by a snapshot):
  /// they may still be committed by a later leader. Retrying may write them twice.
  case outcomeUnknown(String)
  /// The node is stopping or stopped.
  case stopped
  /// No answer within the caller's deadline.
  case timedOut
  /// The node's queue is full: back off and retry.
  case busy
  /// The storage failed; the node stopped (the WAL's error says why: the operation, the file,
  /// errno).
  indirect case storage(WALError)  // (boxed: the error rides in every outcome, keep it small)
  /// A proposed entry is larger than the log stores (`WALOptions.recordBytesMax`, less the
  /// entry's own fields): nothing of its batch was proposed.
  case tooLarge(bytes: Int, max: Int)
  /// The configuration cannot take this conf change (the message says why): committed, it
  /// would stop every member.
  case invalidConfChange(String)
  /// The node stopped on a broken invariant of its own, not on the disk: a write the WAL
  /// refused as invalid, or a committed entry it cannot apply (the message says which).
  case internalFailure(String)

  /// The error a failed storage operation stops the node with: a write the WAL refuses as
  /// invalid is the engine's fault (nothing a peer sends gets that far), never the disk's.
  public init(storageError error: any Error) {
    switch error as? WALError {
    case .invalidRequest(let why)?: self = .internalFailure("the WAL refused a write: \(why)")
    case let wal?: self = .storage(wal)
    case nil: self = .internalFailure("the storage failed: \(error)")
    }
  }

  public var description: String {
    switch self {
    case .notLeader(let leader?): return "not the leader (the leader is node \(leader))"
    case .notLeader(nil): return "not the leader (no leader is known)"
    case .dropped: return "proposal dropped (not committed)"
    case .outcomeUnknown(let why): return "outcome unknown (the entry may still commit): \(why)"
    case .stopped: return "node stopped"
    case .timedOut: return "timed out"
    case .busy: return "node busy (queue full)"
    case .storage(let s): return "storage failed: \(s)"
    case .internalFailure(let s): return "internal failure (not the disk): \(s)"
    case .invalidConfChange(let s): return "invalid conf change: \(s)"
    case .tooLarge(let bytes, let max): return "an entry of \(bytes) bytes is larger than the log's limit of \(max)"
    }
  }
}
