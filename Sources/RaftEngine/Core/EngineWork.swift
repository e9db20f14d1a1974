import Raft

/// What a proposal batch's completion gets: the log indexes its entries were committed and
/// applied at, or why they were not.
public typealias ProposalCompletion = @Sendable (Result<ClosedRange<UInt64>, EngineError>) -> Void

/// What a single-entry proposal's completion gets: the entry's index, or why it was not
/// committed.
public typealias EntryCompletion = @Sendable (Result<UInt64, EngineError>) -> Void

/// Who learns a proposal's outcome: a batch's completion (its index range), or a single
/// entry's (its index), kept as given so that a single-entry proposal costs no wrapping
/// closure.
public enum ProposalCallback: Sendable {
  case batch(ProposalCompletion)
  case entry(EntryCompletion)

  /// Calls the completion with `result`.
  @inlinable
  public func callAsFunction(_ result: Result<ClosedRange<UInt64>, EngineError>) {
    switch self {
    case .batch(let c): c(result)
    case .entry(let c): c(result.map(\.lowerBound))
    }
  }
}

/// What a read index request's completion gets: the commit index the leader confirmed with a
/// quorum (a read is linearizable once the local state machine applied it), or why not.
public typealias ReadCompletion = @Sendable (Result<UInt64, EngineError>) -> Void

/// A proposal batch's outcome, decided by the core, delivered by whoever performs the action
/// that carries it (after applying, for the batches that committed).
public struct ProposalOutcome: Sendable {
  public var completion: ProposalCallback
  public var result: Result<ClosedRange<UInt64>, EngineError>
  /// When the batch entered the log on this node (for the proposal-to-commit metric; 0: never).
  public var proposedAtNanoseconds: UInt64

  /// Calls the completion with the result.
  @inlinable
  public func deliver() { completion(result) }
}

/// One write to the node's log: what one Ready (sync mode) or one `MsgStorageAppend` (async
/// mode) asks to persist, how durable it must be before its `responses` go out, and the
/// responses.
public struct StorageWrite: Sendable {
  /// When a write's responses may go out.
  public enum Durability: Sendable, Equatable {
    /// Once the write itself is synced: it has entries, a snapshot, or a new term or vote
    /// (etcd's MustSync).
    case sync
    /// Only the commit index moved (MustSync is false): the record rides with the next write
    /// that is synced, and the responses go out once every earlier write is durable (a lost
    /// commit index is recomputed after a restart).
    case deferred
    /// A fault planted for tests (`EngineFaults.acknowledgeBeforeSync`): the responses go out
    /// as soon as the write is handed to the log, before any sync. Never in production.
    case unsynced
  }

  /// Consecutive entries; the first may replace the log's tail from its index on.
  public var entries: [Entry]
  public var hardState: HardState?
  /// A snapshot from the leader: it replaces the log.
  public var snapshot: Snapshot?
  public var durability: Durability
  /// Delivered in order once the write is as durable as `durability` says: to this node (the
  /// run loop) or to the peers they are addressed to. Empty in sync mode (the Ready's messages
  /// and `RawNode.advance` carry them).
  public var responses: [Message]

  public init(
    entries: [Entry], hardState: HardState?, snapshot: Snapshot?, durability: Durability, responses: [Message]
  ) {
    self.entries = entries
    self.hardState = hardState
    self.snapshot = snapshot
    self.durability = durability
    self.responses = responses
  }

  /// Nothing to persist (the responses wait only for earlier writes).
  public var isEmpty: Bool { entries.isEmpty && hardState == nil && snapshot == nil }
}

/// A committed conf change among the entries of an `ApplyJob`, decoded once by the core.
public struct CommittedConfChange: Sendable {
  public var index: UInt64
  public var term: UInt64
  public var change: AnyConfChange
}

/// Committed entries for the state machine, in order; then the proposal batches they complete,
/// and a snapshot when one is due.
public struct ApplyJob: Sendable {
  /// Consecutive committed entries, each handed out once.
  public var entries: [Entry]
  /// The conf changes among `entries`, in index order (the core already gave them to Raft).
  public var confChanges: [CommittedConfChange]
  /// Delivered once the entries are applied.
  public var completions: [ProposalOutcome]
  /// Non-nil: after applying, take a snapshot of the state machine (`StateMachine.snapshotData`)
  /// at the last entry's index; this is its configuration.
  public var snapshotConfState: ConfState?
  /// Async mode: the `MsgStorageApplyResp` to hand back once applied.
  public var responses: [Message]
  /// When the core handed the entries out (for the commit-to-apply metric).
  public var committedAtNanoseconds: UInt64

  public var lastIndex: UInt64 { entries.last?.index ?? 0 }
}

/// A snapshot from the leader for the state machine: restore from it once every job queued
/// before is applied, then deliver the outcomes (the batches it overtook).
public struct RestoreJob: Sendable {
  public var snapshot: Snapshot
  public var completions: [ProposalOutcome]
}

/// What the apply side reports back to the core once it performed an `ApplyJob` or a
/// `RestoreJob`.
public struct ApplyOutcome: Sendable {
  /// Every entry up to here is applied (or restored from a snapshot).
  public var appliedIndex: UInt64
  /// The snapshot the job asked for: its index, configuration and data (nil when none was
  /// asked for, or the state machine takes none).
  public var snapshot: (index: UInt64, confState: ConfState, data: [UInt8])?
  /// To step into Raft (the `MsgStorageApplyResp`).
  public var responses: [Message]

  public init(
    appliedIndex: UInt64, snapshot: (index: UInt64, confState: ConfState, data: [UInt8])? = nil,
    responses: [Message] = []
  ) {
    self.appliedIndex = appliedIndex
    self.snapshot = snapshot
    self.responses = responses
  }
}

/// A snapshot of the state machine to save durably, and the log to compact behind it. The
/// WAL's owner performs it, after every write handed out before it.
public struct SnapshotSave: Sendable {
  public var index: UInt64
  public var confState: ConfState
  public var data: [UInt8]
  /// Compact the log through this index (the snapshot's index minus the entries kept for slow
  /// followers); nil: keep it.
  public var compactThrough: UInt64?
  /// The application's compaction requests this save answers (`EngineCore.compact`): the
  /// driver calls `answerSaved()` once the log performed it.
  public var answers: [@Sendable (Result<UInt64, EngineError>) -> Void] = []

  /// Tells the compaction requests this save answers that it is done.
  public func answerSaved() {
    for a in answers { a(.success(index)) }
  }

  /// Tells the compaction requests this save answers that it failed.
  public func answerFailed(_ error: EngineError) {
    for a in answers { a(.failure(error)) }
  }
}

/// Faults planted on purpose, at the seam the engine really uses, so that tests and the
/// simulator can show that their checks catch them. All off in production.
public struct EngineFaults: Sendable, Equatable {
  /// Every write's responses go out before it is synced (`StorageWrite.Durability.unsynced`).
  public var acknowledgeBeforeSync = false
  /// Read index requests are answered at once with the local applied index, without asking
  /// the leader (stale reads).
  public var staleReads = false

  public init(acknowledgeBeforeSync: Bool = false, staleReads: Bool = false) {
    self.acknowledgeBeforeSync = acknowledgeBeforeSync
    self.staleReads = staleReads
  }
}
