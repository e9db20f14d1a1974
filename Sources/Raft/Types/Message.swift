/// A Raft message (etcd-raft's `raftpb.Message`): between peers, from the application, or
/// between the node and its local storage threads in the asynchronous storage writes mode.
public struct Message: Sendable, Equatable {
  public var type: MessageType
  public var to: UInt64
  public var from: UInt64
  public var term: UInt64
  /// The term of the entry at `index`: for MsgApp the entry preceding `entries`; for votes the
  /// candidate's last entry; for MsgStorageAppendResp the last appended entry or snapshot.
  public var logTerm: UInt64
  public var index: UInt64
  public var entries: [Entry]
  public var commit: UInt64
  /// Used by MsgStorageAppend (the HardState vote to persist).
  public var vote: UInt64
  /// Carried by MsgSnap, and by MsgStorageAppend when a snapshot is to be persisted.
  public var snapshot: Snapshot?
  public var reject: Bool
  public var rejectHint: UInt64
  public var context: [UInt8]
  /// Messages to deliver once the work of a MsgStorageAppend / MsgStorageApply is done.
  /// Only local storage messages carry responses.
  public var responses: [Message]

  public init(
    type: MessageType, to: UInt64 = 0, from: UInt64 = 0, term: UInt64 = 0, logTerm: UInt64 = 0,
    index: UInt64 = 0, entries: [Entry] = [], commit: UInt64 = 0, vote: UInt64 = 0,
    snapshot: Snapshot? = nil, reject: Bool = false, rejectHint: UInt64 = 0,
    context: [UInt8] = [], responses: [Message] = []
  ) {
    self.type = type
    self.to = to
    self.from = from
    self.term = term
    self.logTerm = logTerm
    self.index = index
    self.entries = entries
    self.commit = commit
    self.vote = vote
    self.snapshot = snapshot
    self.reject = reject
    self.rejectHint = rejectHint
    self.context = context
    self.responses = responses
  }
}
