/// A Raft message (etcd-raft's `raftpb.Message`): between peers, from the application, or
/// between the node and its local storage threads in the asynchronous storage writes mode.
///
/// The rarely used fields (`snapshot`, `context`, `responses`) live in one out-of-line box, so
/// that the common messages (MsgApp, MsgAppResp, heartbeats) are small and cheap to copy: two
/// reference counts (the entries and the box, usually absent) instead of four.
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
  public var reject: Bool
  public var rejectHint: UInt64
  /// Invariant: nil when snapshot, context and responses are all empty.
  private var extras: MessageExtras?

  /// Carried by MsgSnap, and by MsgStorageAppend / MsgStorageAppendResp when a snapshot is to
  /// be persisted.
  public var snapshot: Snapshot? {
    get { extras?.snapshot }
    set { extras = MessageExtras.make(snapshot: newValue, context: context, responses: responses) }
  }

  /// Whether the message carries a snapshot (cheaper than `snapshot != nil`).
  public var hasSnapshot: Bool { extras?.snapshot != nil }

  /// Opaque context: the ReadIndex request context of heartbeats, the campaign type of votes.
  public var context: [UInt8] {
    get { extras?.context ?? [] }
    set { extras = MessageExtras.make(snapshot: snapshot, context: newValue, responses: responses) }
  }

  /// Messages to deliver once the work of a MsgStorageAppend / MsgStorageApply is done.
  /// Only local storage messages carry responses.
  public var responses: [Message] {
    get { extras?.responses ?? [] }
    set { extras = MessageExtras.make(snapshot: snapshot, context: context, responses: newValue) }
  }

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
    self.reject = reject
    self.rejectHint = rejectHint
    if case .none = snapshot, context.isEmpty, responses.isEmpty {
      self.extras = nil
    } else {
      self.extras = MessageExtras.make(snapshot: snapshot, context: context, responses: responses)
    }
  }
}

/// The immutable out-of-line part of a `Message`.
final class MessageExtras: Sendable, Equatable {
  let snapshot: Snapshot?
  let context: [UInt8]
  let responses: [Message]

  private init(snapshot: Snapshot?, context: [UInt8], responses: [Message]) {
    self.snapshot = snapshot
    self.context = context
    self.responses = responses
  }

  /// A box for the given fields, or nil when they are all empty.
  static func make(snapshot: Snapshot?, context: [UInt8], responses: [Message]) -> MessageExtras? {
    if snapshot == nil && context.isEmpty && responses.isEmpty { return nil }
    return MessageExtras(snapshot: snapshot, context: context, responses: responses)
  }

  static func == (a: MessageExtras, b: MessageExtras) -> Bool {
    a === b || (a.snapshot == b.snapshot && a.context == b.context && a.responses == b.responses)
  }
}
