/// The work a `RawNode` hands to the application (etcd-raft's `Ready`).
///
/// Synchronous mode: persist `hardState`, `entries` and `snapshot`, then send `messages`, apply
/// `committedEntries`, and call `RawNode.advance(_:)`.
///
/// Asynchronous storage writes mode: `entries`, `hardState`, `snapshot` and `committedEntries`
/// are for information only; the work is in `messages`, which may end with one
/// `MsgStorageAppend` (to `localAppendThread`) and one `MsgStorageApply` (to
/// `localApplyThread`). Each carries the `responses` to deliver once its work is done.
public struct Ready: Sendable {
  /// The new leader / role, when it changed since the last Ready.
  public var softState: SoftState?
  /// The hard state to persist; `isEmpty` when it did not change.
  public var hardState: HardState
  /// Answers to ReadIndex requests.
  public var readStates: [ReadState]
  /// Entries to append to stable storage.
  public var entries: [Entry]
  /// A snapshot to persist; `isEmpty` when there is none.
  public var snapshot: Snapshot {
    get { snapshotBox?.value ?? Snapshot() }
    set { snapshotBox = newValue.isEmpty ? nil : SnapshotBox(newValue) }
  }
  /// Out of line: snapshots are rare and a Ready is copied a few times per iteration.
  /// Invariant: nil when the snapshot is empty.
  private var snapshotBox: SnapshotBox?
  /// Committed entries to apply to the state machine.
  public var committedEntries: [Entry]
  /// Messages to send (in sync mode: after the entries and hard state are durable).
  public var messages: [Message]
  /// Whether the hard state and entries must be synced to disk before messages go out.
  public var mustSync: Bool

  public init(
    softState: SoftState? = nil, hardState: HardState = HardState(), readStates: [ReadState] = [],
    entries: [Entry] = [], snapshot: Snapshot = Snapshot(), committedEntries: [Entry] = [],
    messages: [Message] = [], mustSync: Bool = false
  ) {
    self.softState = softState
    self.hardState = hardState
    self.readStates = readStates
    self.entries = entries
    self.snapshotBox = snapshot.isEmpty ? nil : SnapshotBox(snapshot)
    self.committedEntries = committedEntries
    self.messages = messages
    self.mustSync = mustSync
  }

  /// Whether the Ready carries a snapshot to persist (cheaper than `!snapshot.isEmpty`).
  public var hasSnapshot: Bool { snapshotBox != nil }

  /// Whether the Ready holds anything at all.
  public var containsUpdates: Bool {
    softState != nil || !hardState.isEmpty || snapshotBox != nil || !entries.isEmpty
      || !committedEntries.isEmpty || !messages.isEmpty || !readStates.isEmpty
  }
}

/// Whether persisting `st` (after `prev`) with `entryCount` new entries needs an fsync: the
/// term, the vote and log entries must be durable before responding; the commit index need not.
public func mustSync(_ st: HardState, _ prev: HardState, entryCount: Int) -> Bool {
  entryCount != 0 || st.vote != prev.vote || st.term != prev.term
}

/// An immutable out-of-line snapshot.
final class SnapshotBox: Sendable {
  let value: Snapshot

  init(_ value: Snapshot) { self.value = value }
}
