import DequeModule
import Raft

/// The engine's decisions, without I/O: one deterministic state machine that owns the
/// `RawNode`, the proposal batches in flight, the read waiters, the snapshot and compaction
/// policy, and the Ready handling of both modes (what to write, how durable it must be before
/// its responses go out, what to apply, what to complete with which outcome).
///
/// Events go in through the mutating methods (proposal batches, peer messages and local
/// responses, apply outcomes, ticks, reads, stop); the work to perform comes out as `Action`s
/// in `actions`, which the driver takes (`takeActions`) and performs in order. No locks,
/// clocks, threads or file descriptors inside: the time is an argument. The threaded `Node` and
/// the simulator (`raft-sim`) drive this same type.
///
/// **Sync mode** (`ReadyHandling.sync`): `processReady` hands out one Ready as
/// `[write, restore, send, apply]`; the driver performs them in that order (the write made
/// durable as its `durability` says), feeds the apply outcome back (`applied`), and calls
/// `advance()`.
///
/// **Async mode**: `processReady` turns each Ready's `MsgStorageAppend` into a `write` for the
/// append worker and its `MsgStorageApply` into an `apply` job for the apply worker; their
/// responses come back through `step` and `applied`, in any interleaving with everything else.
public struct EngineCore: ~Copyable {
  /// What the driver must do.
  public enum Action {
    /// Persist; deliver `responses` once it is as durable as its `durability` says.
    case write(StorageWrite)
    /// Send to peers (`Transport.send`).
    case send([Message])
    /// Apply committed entries, then deliver their completions; report back with `applied`.
    case apply(ApplyJob)
    /// Restore the state machine from a leader's snapshot (after every apply job before it);
    /// report back with `applied`.
    case restore(RestoreJob)
    /// Save a snapshot of the state machine and compact the log (the WAL's owner, after every
    /// write before it).
    case saveSnapshot(SnapshotSave)
    /// Deliver these outcomes now (batches refused or failed on the run loop).
    case complete([ProposalOutcome])
    case answerRead(ReadCompletion, Result<UInt64, EngineError>)
    /// An application's compaction request was handed to the log (the snapshot's index) or
    /// refused.
    case answerCompaction(@Sendable (Result<UInt64, EngineError>) -> Void, Result<UInt64, EngineError>)
    /// A forwarded proposal was handed to Raft (nil) or refused.
    case handOff(@Sendable (EngineError?) -> Void, EngineError?)
    case reportStatus(@Sendable (Status) -> Void, Status)
    /// The leader this node knows changed (nil: none known).
    case leaderChanged(leader: UInt64?, state: StateType)
    /// Where a proposal made on this node is forwarded changed (`RawNode.proposalForwardTarget`;
    /// nil: nowhere, it goes through Raft here).
    case forwardTargetChanged(UInt64?)
    /// A message from `peer` was refused and dropped (it would have made Raft panic, the
    /// storage refuse a write, or the cluster stop electing): count it, log it (rate-limited),
    /// and close the connections from that peer.
    case refusePeer(peer: UInt64, type: MessageType, PeerMessageRefusal)
    /// Raft dropped a proposal node `to` forwarded here (`Configuration.answersDroppedForwards`):
    /// tell it (a `MsgProp` with `reject` set, carrying a tag of each normal entry: the first
    /// `forwardTagBytes` bytes of its data).
    case answerDroppedForward(to: UInt64, entries: [Entry])
    /// A proposal this node forwarded was dropped where it went: the tags of its entries.
    case forwardDropped([Payload])
  }

  /// The core's policy knobs.
  public struct Configuration: Sendable {
    public var id: UInt64
    public var readyHandling: NodeConfiguration.ReadyHandling
    /// Snapshot the state machine every this many applied entries (0: never).
    public var snapshotEntries: UInt64
    /// Entries kept behind a snapshot for slow followers.
    public var compactionRetainEntries: UInt64
    /// Snapshot also once the entries applied since the last snapshot carry this many payload
    /// bytes (0: by count only; only when `snapshotEntries` > 0), so that large values do not
    /// make the log in memory grow with the entry count.
    public var snapshotBytes: UInt64 = 0
    /// Keep at most this many payload bytes of entries behind a snapshot, whatever
    /// `compactionRetainEntries` allows (0: by count only).
    public var compactionRetainBytes: UInt64 = 0
    public var faults: EngineFaults
    /// What a peer's message may carry (the log's entry size limit).
    public var peerMessageLimits: PeerMessageLimits
    /// Answer a proposal forwarded by a follower that Raft drops here (the uncommitted-bytes
    /// limit, a transfer in progress, no leader) with a tag of each entry (its first this many
    /// bytes), so that the follower fails its callers at once; 0: dropped silently, as
    /// etcd-raft does (the follower's own deadline ends them).
    public var forwardTagBytes = 0

    public init(
      id: UInt64, readyHandling: NodeConfiguration.ReadyHandling, snapshotEntries: UInt64,
      compactionRetainEntries: UInt64, faults: EngineFaults = EngineFaults(),
      peerMessageLimits: PeerMessageLimits = PeerMessageLimits()
    ) {
      self.peerMessageLimits = peerMessageLimits
      self.id = id
      self.readyHandling = readyHandling
      self.snapshotEntries = snapshotEntries
      self.compactionRetainEntries = compactionRetainEntries
      self.faults = faults
    }
  }

  enum State {
    case running
    /// Sync mode: a Ready was handed out; `advance()` comes next.
    case awaitingAdvance
    case stopped
  }

  /// A proposal batch waiting for the next `processReady`, which proposes every waiting batch
  /// in one message.
  struct WaitingBatch {
    var count: Int
    var completion: ProposalCallback
  }

  /// Why the core stopped on its own: a committed entry it cannot apply (nil: it did not).
  public internal(set) var failure: String?
  /// The node, for inspection (status pages, tests, the simulator's checks): drive it only
  /// through the core.
  public let rawNode: RawNode
  public let configuration: Configuration
  var state = State.running
  /// The work for the driver, in order.
  public internal(set) var actions: [Action] = []

  // Proposals.
  var proposals = ProposalRing()
  /// The entries of the batches waiting for `processReady`, back to back.
  var waitingEntries: [Entry] = []
  var waitingBatches: [WaitingBatch] = []

  /// Read index requests waiting for their read state, oldest first (read states come back in
  /// request order, so the one answered is nearly always at the front; and a stop fails them in
  /// a deterministic order).
  var readWaiters: [(context: [UInt8], completion: ReadCompletion)] = []
  /// The leader as last reported (0: none).
  var knownLeader: UInt64 = 0
  /// `RawNode.proposalForwardTarget` as last reported (0: none).
  var knownForwardTarget: UInt64 = 0
  /// Peer messages refused by `stepFromPeer` so far.
  public internal(set) var peerMessagesRefused: UInt64 = 0

  // Storage and apply bookkeeping.
  /// The hard state of the last write that carried one (or the recovered one, or the one
  /// held): whether the next one must be synced depends on it.
  var lastWrittenHardState: HardState
  /// A commit-only hard state nobody waits for, not handed to the log yet: it joins the next
  /// write (or is replaced by a newer one). Losing it loses only a commit index, which Raft
  /// recomputes after a restart (etcd's MustSync rule).
  var heldHardState: HardState?
  /// The last committed index handed out for applying (or restored). Invariant: hand-outs are
  /// consecutive from here.
  var handedOutIndex: UInt64
  /// Writes handed out whose `MsgStorageAppendResp` has not come back yet.
  var appendResponsesAwaited = 0
  /// The last index the apply side reported applied. Invariant: never goes back.
  public internal(set) var appliedIndex: UInt64

  // Snapshot and compaction policy.
  /// The configuration as of `handedOutIndex`: Raft got every conf change up to there.
  public internal(set) var confState: ConfState
  /// The index of the last snapshot asked of the state machine or restored (the cadence
  /// counts from here).
  var snapshotPolicyIndex: UInt64
  /// A node was added since the last snapshot: the next one is taken at once (a new member
  /// that catches up by snapshot refuses one whose configuration does not have it).
  var nodeAdded = false
  /// The newest snapshot handed to the log (saved or installed): an older one is never saved.
  var savedSnapshotIndex: UInt64
  /// The log is compacted through here (or a snapshot replaced it).
  var compactedThrough: UInt64
  /// Payload bytes handed out for applying since `snapshotPolicyIndex` (for `snapshotBytes`).
  var bytesSinceSnapshot: UInt64 = 0
  /// Payload bytes handed out for applying, in all, at the end of each apply job since the
  /// compaction point, oldest first (for `compactionRetainBytes`). Invariant: indexes and
  /// totals increase along it; trimmed below `compactedThrough`.
  var appliedBytesMarks = Deque<(index: UInt64, total: UInt64)>()
  /// Payload bytes handed out for applying, in all.
  var appliedBytesTotal: UInt64 = 0
  /// The configuration from each index on: where it was recovered, then each conf change handed
  /// out and each snapshot installed (for a snapshot at an index the application chooses).
  /// Invariant: indexes never decrease; the first entry is at or below `compactedThrough`.
  var confStateHistory = Deque<(index: UInt64, confState: ConfState)>()
  /// The application's compaction request waiting for its index to be applied.
  var compactionRequest: CompactionRequest?

  /// The largest proposal payload the log stores.
  var payloadBytesMax: Int { configuration.peerMessageLimits.payloadBytesMax }

  /// A core over `rawNode`, whose storage recovered `hardState`, `confState` and a snapshot at
  /// `snapshotIndex` (0: none); `rawNode` was made with `Config.applied` equal to `appliedIndex`
  /// (`snapshotIndex` when not given) and its `asyncStorageWrites` matching
  /// `configuration.readyHandling`.
  /// `appliedIndex` (at least `snapshotIndex`): the entries the application applied before a
  /// restart, which Raft does not hand out again (`Config.applied`); `confState` is the
  /// configuration as of there, and `confStateHistory` the configuration from each index on
  /// between the snapshot and there (nil: `confState` from `snapshotIndex` on).
  public init(
    configuration: Configuration, rawNode: RawNode, hardState: HardState, confState: ConfState,
    snapshotIndex: UInt64, appliedIndex: UInt64? = nil,
    confStateHistory: [(index: UInt64, confState: ConfState)]? = nil
  ) {
    let appliedIndex = appliedIndex ?? snapshotIndex
    precondition(appliedIndex >= snapshotIndex, "EngineCore: applied below the snapshot")
    precondition(
      rawNode.asyncStorageWrites == (configuration.readyHandling == .async),
      "EngineCore: the RawNode's asyncStorageWrites does not match the Ready handling")
    self.configuration = configuration
    self.rawNode = rawNode
    lastWrittenHardState = hardState
    self.confState = confState
    handedOutIndex = appliedIndex
    self.appliedIndex = appliedIndex
    snapshotPolicyIndex = appliedIndex
    savedSnapshotIndex = snapshotIndex
    compactedThrough = snapshotIndex
    if let history = confStateHistory {
      precondition(
        history.first?.index == snapshotIndex && history.last!.index <= appliedIndex,
        "EngineCore: the configuration history does not run from the snapshot to the applied index")
      self.confStateHistory.append(contentsOf: history)
    } else {
      self.confStateHistory.append((snapshotIndex, confState))
    }
  }

  /// Moves the pending actions to the caller (the buffer's capacity stays with the core when
  /// `into` is empty, and the caller's comes back next time).
  public mutating func takeActions(into out: inout [Action]) {
    precondition(out.isEmpty, "EngineCore.takeActions: the caller's buffer is not empty")
    swap(&out, &actions)
  }

  var id: UInt64 { configuration.id }

  /// Whether the core waits for its workers: a write's append response or an apply outcome is
  /// due. The driver may then poll for it a while (it comes within a disk sync) instead of
  /// parking at once.
  public var awaitsWorkers: Bool { appendResponsesAwaited > 0 || appliedIndex < handedOutIndex }
  var isStopped: Bool { state == .stopped }

  // MARK: Events

  /// Proposes `payloads` as one batch: `completion` gets the indexes they were committed and
  /// applied at on this node (in one range), or an error. The batches of one `processReady`
  /// go to Raft as one message. Only the leader takes proposals.
  public mutating func propose(_ payloads: [Payload], completion: @escaping ProposalCompletion) {
    let completion = ProposalCallback.batch(completion)
    guard state != .stopped else { return actions.append(.complete([refused(completion, .stopped)])) }
    guard !payloads.isEmpty else { return actions.append(.complete([refused(completion, .dropped)])) }
    for p in payloads where p.count > payloadBytesMax {
      return actions.append(.complete([refused(completion, .tooLarge(bytes: p.count, max: payloadBytesMax))]))
    }
    // Room for the whole batch at once, growing geometrically (one-entry batches must not
    // reallocate on every call).
    let needed = waitingEntries.count + payloads.count
    if needed > waitingEntries.capacity { waitingEntries.reserveCapacity(max(needed, 2 * waitingEntries.capacity)) }
    for p in payloads { waitingEntries.append(Entry(data: p)) }
    waitingBatches.append(WaitingBatch(count: payloads.count, completion: completion))
  }

  /// Proposes one entry (a batch of one, without an array): `completion` gets its index once
  /// it is committed and applied on this node, or an error.
  public mutating func propose(entry payload: Payload, completion: @escaping EntryCompletion) {
    guard state != .stopped else { return actions.append(.complete([refused(.entry(completion), .stopped)])) }
    guard payload.count <= payloadBytesMax else {
      return actions.append(
        .complete([refused(.entry(completion), .tooLarge(bytes: payload.count, max: payloadBytesMax))]))
    }
    if waitingEntries.count == waitingEntries.capacity {
      waitingEntries.reserveCapacity(max(16, 2 * waitingEntries.capacity))
    }
    waitingEntries.append(Entry(data: payload))
    waitingBatches.append(WaitingBatch(count: 1, completion: .entry(completion)))
  }

  /// Proposes a configuration change, completed like a batch of one.
  public mutating func proposeConfChange(
    _ cc: AnyConfChange, completion: @escaping ProposalCompletion, nowNanoseconds now: UInt64
  ) {
    let completion = ProposalCallback.batch(completion)
    guard state != .stopped else { return actions.append(.complete([refused(completion, .stopped)])) }
    guard rawNode.isLeader else { return actions.append(.complete([refused(completion, notLeader)])) }
    if let why = rawNode.confChangeRefusal(cc) {
      return actions.append(.complete([refused(completion, .invalidConfChange(why))]))
    }
    let (type, data) = cc.entryPayload()
    register(
      proposing: [Entry(type: type, data: data)], as: [WaitingBatch(count: 1, completion: completion)],
      isConfChange: true, now: now)
  }

  /// What `forward` hands to Raft.
  public enum ForwardedProposal: Sendable {
    case data([UInt8])
    case confChange(AnyConfChange)
  }

  /// Hands `proposal` to Raft whatever this node's role (a follower forwards it to its
  /// leader); nothing tracks it afterwards. `handedOff` learns whether Raft took it.
  public mutating func forward(_ proposal: ForwardedProposal, handedOff: @escaping @Sendable (EngineError?) -> Void) {
    guard state != .stopped else { return actions.append(.handOff(handedOff, .stopped)) }
    do {
      switch proposal {
      case .data(let data):
        guard data.count <= payloadBytesMax else {
          return actions.append(.handOff(handedOff, .tooLarge(bytes: data.count, max: payloadBytesMax)))
        }
        try rawNode.propose(data)
      case .confChange(let cc):
        if rawNode.isLeader, let why = rawNode.confChangeRefusal(cc) {
          return actions.append(.handOff(handedOff, .invalidConfChange(why)))
        }
        try rawNode.proposeConfChange(cc)
      }
      actions.append(.handOff(handedOff, nil))
    } catch {
      actions.append(.handOff(handedOff, .dropped))
    }
  }

  /// Steps a message from a peer, once it passed `RawNode.refusal(ofPeerMessage:limits:)`:
  /// nothing a peer sends may stop this node, make its storage refuse a write, or push the
  /// term out of reach. Local message types (storage messages and their responses) are
  /// refused too: only this node's own workers produce those. A refused message is dropped
  /// and reported (`refusePeer`).
  public mutating func stepFromPeer(_ m: Message) {
    guard state != .stopped else { return }
    var refusal: PeerMessageRefusal?
    if m.type == .msgProp && m.reject {
      // The answer to a proposal this node forwarded: not Raft's (it never sets `reject` on a
      // proposal), and nothing in it reaches Raft.
      if m.to == id && m.from != id {
        return actions.append(.forwardDropped(m.entries.map(\.data)))
      }
      refusal = PeerMessageRefusal(.malformed, "a dropped-proposal answer addressed to node \(m.to) from \(m.from)")
    } else if m.type.isLocal {
      refusal = PeerMessageRefusal(.malformed, "\(m.type) is local to a node")
    } else if m.from == localAppendThread || m.from == localApplyThread
      || (m.from == id && !m.type.isForwardedRequest)
    {
      // (A proposal or read request keeps its originator when forwarded: one this node
      // forwarded may come back to it, forwarded again by a node that follows it now.)
      refusal = PeerMessageRefusal(.malformed, "\(m.type) claiming to come from node \(m.from)")
    } else if m.to != id {
      refusal = PeerMessageRefusal(.malformed, "\(m.type) addressed to node \(m.to)")
    } else {
      refusal = rawNode.refusal(ofPeerMessage: m, limits: configuration.peerMessageLimits)
    }
    if let refusal {
      peerMessagesRefused += 1
      rawNode.catchUpTerm(after: refusal, of: m)
      return actions.append(.refusePeer(peer: m.from, type: m.type, refusal))
    }
    step(m)
  }

  /// Steps a message: a local response (a write's or a worker's), or one from a peer that
  /// `stepFromPeer` let through.
  public mutating func step(_ m: Message) {
    guard state != .stopped else { return }
    if m.type == .msgStorageAppendResp, m.from == localAppendThread {
      if appendResponsesAwaited > 0 { appendResponsesAwaited -= 1 }
      if let snapshot = m.snapshot {
        // The leader's snapshot is durable: the state machine restores from it before Raft
        // hands out any entry above it (they are queued behind the restore).
        snapshotInstalled(snapshot)
      }
    }
    do {
      try rawNode.step(m)
    } catch RaftError.proposalDropped
      where m.type == .msgProp && m.from != id && !m.entries.isEmpty && configuration.forwardTagBytes > 0
    {
      actions.append(.answerDroppedForward(to: m.from, entries: m.entries))
    } catch {
      // Stale or malformed messages are refused by RawNode; Raft retries.
    }
  }

  /// The apply side applied a job or restored a snapshot.
  public mutating func applied(_ outcome: ApplyOutcome) {
    guard state != .stopped else { return }
    precondition(outcome.appliedIndex >= appliedIndex, "EngineCore: the applied index went back")
    precondition(outcome.appliedIndex <= handedOutIndex, "EngineCore: applied beyond what was handed out")
    appliedIndex = outcome.appliedIndex
    if let s = outcome.snapshot { saveSnapshot(index: s.index, confState: s.confState, data: s.data) }
    compactIfApplied()
    for r in outcome.responses { step(r) }
  }

  /// Advances Raft's logical clock by one tick.
  public mutating func tick() {
    guard state != .stopped else { return }
    rawNode.tick()
  }

  /// Requests a read index for `context` (unique among the requests in flight).
  public mutating func readIndex(context: [UInt8], completion: ReadCompletion?) {
    guard state != .stopped else {
      if let completion { actions.append(.answerRead(completion, .failure(.stopped))) }
      return
    }
    if configuration.faults.staleReads {
      if let completion { actions.append(.answerRead(completion, .success(appliedIndex))) }
      return
    }
    if let completion { readWaiters.append((context, completion)) }
    rawNode.readIndex(context)
  }

  /// Gives up on the read index request of `context`: its completion gets `.timedOut`.
  public mutating func cancelReadIndex(context: [UInt8]) {
    if let waiter = takeReadWaiter(context) { actions.append(.answerRead(waiter, .failure(.timedOut))) }
  }

  public mutating func campaign() {
    guard state != .stopped else { return }
    try? rawNode.campaign()
  }

  public mutating func transferLeadership(to transferee: UInt64) {
    guard state != .stopped else { return }
    rawNode.transferLeader(to: transferee)
  }

  public mutating func forgetLeader() {
    guard state != .stopped else { return }
    try? rawNode.forgetLeader()
  }

  public mutating func reportUnreachable(_ peer: UInt64) {
    guard state != .stopped else { return }
    rawNode.reportUnreachable(peer)
  }

  public mutating func reportSnapshot(_ peer: UInt64, status: SnapshotStatus) {
    guard state != .stopped else { return }
    rawNode.reportSnapshot(peer, status: status)
  }

  public mutating func status(_ reply: @escaping @Sendable (Status) -> Void) {
    actions.append(.reportStatus(reply, rawNode.status()))
  }

  /// Stops: every batch and read still waiting fails with `error` (the work already handed
  /// out completes where it is performed).
  public mutating func stop(_ error: EngineError) {
    guard state != .stopped else { return }
    state = .stopped
    var out: [ProposalOutcome] = []
    for b in waitingBatches { out.append(refused(b.completion, error)) }
    waitingBatches = []
    waitingEntries = []
    proposals.failAll(error, into: &out)
    if !out.isEmpty { actions.append(.complete(out)) }
    failReads(error)
    if let request = compactionRequest {
      compactionRequest = nil
      for c in request.completions { actions.append(.answerCompaction(c, .failure(error))) }
    }
  }

  // MARK: Shared helpers

  var notLeader: EngineError { .notLeader(leader: knownLeader == 0 ? nil : knownLeader) }

  func refused(_ completion: ProposalCallback, _ error: EngineError) -> ProposalOutcome {
    ProposalOutcome(completion: completion, result: .failure(error), proposedAtNanoseconds: 0)
  }

  mutating func failReads(_ error: EngineError) {
    guard !readWaiters.isEmpty else { return }
    for w in readWaiters { actions.append(.answerRead(w.completion, .failure(error))) }
    readWaiters = []
  }

  /// Removes and returns the waiter of `context`.
  mutating func takeReadWaiter(_ context: [UInt8]) -> ReadCompletion? {
    guard let k = readWaiters.firstIndex(where: { $0.context == context }) else { return nil }
    return readWaiters.remove(at: k).completion
  }
}

extension EngineCore.Action {
  /// Performs an action that only answers a caller (`complete`, `answerRead`,
  /// `answerCompaction`, `handOff`, `reportStatus`): the same in every driver. Returns false,
  /// doing nothing, for the others.
  @discardableResult
  public func answerCaller() -> Bool {
    switch self {
    case .complete(let outcomes): for o in outcomes { o.deliver() }
    case .answerRead(let completion, let result): completion(result)
    case .answerCompaction(let completion, let result): completion(result)
    case .handOff(let handedOff, let error): handedOff(error)
    case .reportStatus(let reply, let status): reply(status)
    default: return false
    }
    return true
  }
}
