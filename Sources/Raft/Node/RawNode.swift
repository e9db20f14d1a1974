/// A peer in a bootstrap configuration.
public struct Peer: Sendable, Equatable {
  public var id: UInt64
  public var context: [UInt8]

  public init(id: UInt64, context: [UInt8] = []) {
    self.id = id
    self.context = context
  }
}

/// Whether a replica's progress is that of a voter or a learner.
public enum ProgressType: Sendable {
  case peer
  case learner
}

/// The thread-unsafe driver of one Raft node (etcd-raft's `RawNode`): feed it ticks, proposals
/// and messages; take `ready()`; in synchronous mode call `advance(_:)` once the Ready is handled.
/// All calls must come from one thread at a time.
public final class RawNode {
  /// The algorithm state. Exposed for inspection (tests, status pages); mutate only through the
  /// RawNode's methods.
  public let raft: Raft
  /// Whether storage work is handed out as MsgStorageAppend / MsgStorageApply messages.
  public let asyncStorageWrites: Bool

  /// The soft state as of the last accepted Ready.
  @exclusivity(unchecked) private var prevSoftState: SoftState
  /// The hard state as of the last accepted Ready.
  @exclusivity(unchecked) private var prevHardState: HardState
  /// Synchronous mode: the local messages to step on `advance` (self acks, storage responses).
  /// Invariant: empty between an `advance` and the next `ready`.
  @exclusivity(unchecked) private var stepsOnAdvance: [Message] = []

  /// Creates a node from `config`, restoring its state from `config.storage`.
  public init(config: Config) throws {
    raft = try Raft(config: config)
    asyncStorageWrites = config.asyncStorageWrites
    prevSoftState = raft.softState
    prevHardState = raft.hardState
  }

  /// Advances the logical clock by one tick.
  public func tick() { raft.tick() }

  /// Advances the election clock only, skipping heartbeats and elections (for quiesced groups).
  public func tickQuiesced() { raft.electionElapsed += 1 }

  /// Starts an election (pre-vote first when enabled).
  public func campaign() throws { try raft.step(Message(type: .msgHup)) }

  /// Proposes `data` for the log. Throws `RaftError.proposalDropped` when it cannot be taken
  /// (no leader, forwarding disabled, transfer in progress, uncommitted limit).
  public func propose(_ data: [UInt8]) throws {
    try raft.step(Message(type: .msgProp, from: raft.id, entries: [Entry(data: data)]))
  }

  /// Proposes several entries in one message (one append, one broadcast).
  public func propose(batch: [[UInt8]]) throws {
    guard !batch.isEmpty else { return }
    try raft.step(Message(type: .msgProp, from: raft.id, entries: batch.map { Entry(data: $0) }))
  }

  /// Proposes `entries` (normal or conf change entries; their term and index are assigned
  /// here) in one message. Returns the indexes they were appended at when this node is the
  /// leader and took them; nil when nothing was appended here (a follower forwards the
  /// proposal to its leader). Throws `RaftError.proposalDropped` when Raft refuses them.
  public func propose(entries: consuming [Entry]) throws -> ClosedRange<UInt64>? {
    let count = entries.count
    guard count > 0 else { return nil }
    let before = raft.raftLog.lastIndex()
    // The message owns the only reference: Raft stamps term and index in place.
    try raft.step(Message(type: .msgProp, from: raft.id, entries: consume entries))
    let after = raft.raftLog.lastIndex()
    guard after > before else { return nil }
    assert(after - before == UInt64(count), "RawNode: a proposal was appended in part")
    return (before + 1)...after
  }

  /// Proposes a membership change.
  public func proposeConfChange(_ cc: AnyConfChange) throws {
    let (type, data) = cc.entryPayload()
    try raft.step(Message(type: .msgProp, entries: [Entry(type: type, data: data)]))
  }

  /// Applies a committed membership change; the application calls this when it applies the
  /// conf change entry (unless it rejects the change). Returns the new configuration.
  @discardableResult
  public func applyConfChange(_ cc: AnyConfChange) -> ConfState {
    raft.applyConfChange(cc.asV2)
  }

  /// Steps a message from a peer or from a local storage thread.
  public func step(_ m: Message) throws {
    // Local messages are only taken from the local storage threads.
    let fromLocalThread = m.from == localAppendThread || m.from == localApplyThread
    if m.type.isLocal && !fromLocalThread { throw RaftError.stepLocalMessage }
    if !fromLocalThread {
      // Between peers only proposals and read requests travel without a term (they are
      // forwarded like local requests); anything else with term 0 would bypass the term checks.
      if m.term == 0 && m.type != .msgProp && m.type != .msgReadIndex && m.type != .msgForgetLeader {
        throw RaftError.invalidMessage("\(m.type) from \(m.from) carries no term")
      }
      // No term can follow UInt64.max: such a message is malformed.
      if m.term == UInt64.max { throw RaftError.invalidMessage("\(m.type) from \(m.from) has term UInt64.max") }
    }
    if m.type.isResponse && !fromLocalThread && raft.tracker.progress(of: m.from) == nil {
      throw RaftError.stepPeerNotFound
    }
    try raft.step(m)
  }

  /// The outstanding work. The returned Ready must be handled (and, in synchronous mode,
  /// acknowledged with `advance`) before the next call.
  public func ready() -> Ready {
    let rd = readyWithoutAccept()
    acceptReady(rd)
    return rd
  }

  /// Builds a Ready without taking responsibility for it (read-only).
  func readyWithoutAccept() -> Ready {
    let r = raft
    var rd = Ready(
      entries: r.raftLog.nextUnstableEntries(),
      committedEntries: r.raftLog.nextCommittedEntries(allowUnstable: applyUnstableEntries),
      messages: r.msgs)
    let soft = r.softState
    if soft != prevSoftState { rd.softState = soft }
    let hard = r.hardState
    if hard != prevHardState { rd.hardState = hard }
    if let snap = r.raftLog.nextUnstableSnapshot() { rd.snapshot = snap }
    if !r.readStates.isEmpty { rd.readStates = r.readStates }
    rd.mustSync = mustSync(hard, prevHardState, entryCount: rd.entries.count)

    if asyncStorageWrites {
      let append = needStorageAppendMessage(rd)
      let apply = !rd.committedEntries.isEmpty
      // One allocation for the messages, whatever joins them.
      if append || apply { rd.messages.reserveCapacity(rd.messages.count + (append ? 1 : 0) + (apply ? 1 : 0)) }
      if append { rd.messages.append(storageAppendMessage(rd)) }
      if apply { rd.messages.append(storageApplyMessage(rd.committedEntries)) }
    } else {
      // The Ready contract already says messages go out only after the entries are durable,
      // so the held-back responses to other nodes can join the messages directly.
      for m in r.msgsAfterAppend where m.to != r.id { rd.messages.append(m) }
    }
    return rd
  }

  /// Whether storage must be written: entries, hard state, snapshot, or responses waiting on
  /// earlier writes.
  private func needStorageAppendMessage(_ rd: Ready) -> Bool {
    !rd.entries.isEmpty || !rd.hardState.isEmpty || rd.hasSnapshot || !raft.msgsAfterAppend.isEmpty
  }

  /// Whether raft needs to hear that entries became stable or a snapshot was applied.
  private func needStorageAppendResponse(_ rd: Ready) -> Bool {
    raft.raftLog.hasNextOrInProgressUnstableEntries() || rd.hasSnapshot
  }

  /// The MsgStorageAppend of a Ready: what to persist, and what to deliver once it is durable
  /// (the held-back responses first, then the MsgStorageAppendResp; on a leader the self
  /// MsgAppResp is thus handled while the entries are still in the unstable log).
  private func storageAppendMessage(_ rd: Ready) -> Message {
    // The responses in one array of the right size (the held-back ones are copied: the
    // buffer stays with Raft for the next ones), and the rare fields set once.
    var responses: [Message] = []
    let respond = needStorageAppendResponse(rd)
    let count = raft.msgsAfterAppend.count + (respond ? 1 : 0)
    if count > 0 {
      responses.reserveCapacity(count)
      responses.append(contentsOf: raft.msgsAfterAppend)
      if respond { responses.append(storageAppendResponse(rd)) }
    }
    // Leave term, vote and commit zero without a hard state update, so that the receiver
    // rebuilds an empty HardState.
    let hs = rd.hardState
    return Message(
      type: .msgStorageAppend, to: localAppendThread, from: raft.id, term: hs.term, entries: rd.entries,
      commit: hs.commit, vote: hs.vote, snapshot: rd.hasSnapshot ? rd.snapshot : nil, responses: responses)
  }

  /// The acknowledgement of an append, returned once everything handed out so far is durable.
  ///
  /// It carries the current term and the log's last (index, term) whenever the unstable log is
  /// non-empty, not only when this Ready has entries. On return, the unstable log is truncated
  /// only if the term is unchanged and the (index, term) still matches: entries overwritten by
  /// a later leader while the write was in flight (the ABA case: same index, a different term,
  /// then the original term again) must not be taken as stable. Attesting the last entry on
  /// every append response also guarantees that some response eventually truncates the log.
  private func storageAppendResponse(_ rd: Ready) -> Message {
    var m = Message(type: .msgStorageAppendResp, to: raft.id, from: localAppendThread, term: raft.term)
    if raft.raftLog.hasNextOrInProgressUnstableEntries() {
      let (li, lt) = raft.raftLog.tip()
      m.index = li
      m.logTerm = lt
    }
    if rd.hasSnapshot { m.snapshot = rd.snapshot }
    return m
  }

  /// The MsgStorageApply of a Ready. Committed entries apply under no term.
  private func storageApplyMessage(_ ents: [Entry]) -> Message {
    Message(
      type: .msgStorageApply, to: localApplyThread, from: raft.id, entries: ents,
      responses: [storageApplyResponse(ents)])
  }

  private func storageApplyResponse(_ ents: [Entry]) -> Message {
    Message(type: .msgStorageApplyResp, to: raft.id, from: localApplyThread, entries: ents)
  }

  /// Takes responsibility for `rd`: nothing may change the node between `readyWithoutAccept`
  /// and this call.
  private func acceptReady(_ rd: Ready) {
    if let soft = rd.softState { prevSoftState = soft }
    if !rd.hardState.isEmpty { prevHardState = rd.hardState }
    if !rd.readStates.isEmpty { raft.readStates = [] }
    if !asyncStorageWrites {
      if !stepsOnAdvance.isEmpty {
        raft.logger.panic("two accepted Ready structs without call to Advance")
      }
      for m in raft.msgsAfterAppend where m.to == raft.id { stepsOnAdvance.append(m) }
      if needStorageAppendResponse(rd) { stepsOnAdvance.append(storageAppendResponse(rd)) }
      if !rd.committedEntries.isEmpty { stepsOnAdvance.append(storageApplyResponse(rd.committedEntries)) }
    }
    // The Ready shares the message buffers: clearing one allocates a fresh buffer of the same
    // capacity (no regrowth on the next appends); an empty one is left alone (no allocation).
    if !raft.msgs.isEmpty { raft.msgs.removeAll(keepingCapacity: true) }
    if !raft.msgsAfterAppend.isEmpty { raft.msgsAfterAppend.removeAll(keepingCapacity: true) }
    raft.raftLog.acceptUnstable()
    if let last = rd.committedEntries.last {
      raft.raftLog.acceptApplying(
        last.index, size: raft.raftLog.countsApplyingSize ? entriesSize(rd.committedEntries) : 0,
        allowUnstable: applyUnstableEntries)
    }
  }

  /// Committed entries may be applied before they are locally durable only in synchronous mode
  /// (there the application persists before it applies).
  private var applyUnstableEntries: Bool { !asyncStorageWrites }

  /// Whether `ready()` would return anything.
  public func hasReady() -> Bool {
    let r = raft
    if r.softState != prevSoftState { return true }
    let hard = r.hardState
    if !hard.isEmpty && hard != prevHardState { return true }
    if r.raftLog.hasNextUnstableSnapshot() { return true }
    if !r.msgs.isEmpty || !r.msgsAfterAppend.isEmpty { return true }
    if r.raftLog.hasNextUnstableEntries() || r.raftLog.hasNextCommittedEntries(allowUnstable: applyUnstableEntries) {
      return true
    }
    return !r.readStates.isEmpty
  }

  /// Synchronous mode: acknowledges that the last Ready was handled (persisted, sent, applied).
  /// Calling it in asynchronous storage writes mode is a programmer error.
  public func advance(_ rd: Ready = Ready()) {
    if asyncStorageWrites {
      raft.logger.panic("Advance must not be called when using AsyncStorageWrites")
    }
    var steps: [Message] = []
    swap(&steps, &stepsOnAdvance)
    for m in steps {
      try? raft.step(m)
    }
    // Reuse the buffer for the next Ready (it is uniquely ours again).
    steps.removeAll(keepingCapacity: true)
    if stepsOnAdvance.isEmpty { swap(&steps, &stepsOnAdvance) }
  }

  /// The node's status, with a copy of the progress of every peer on a leader.
  public func status() -> Status { raft.status }

  /// The index of the last entry of the log (stable or not): right after a proposal is accepted
  /// on a leader, the proposal's index.
  public var lastIndex: UInt64 { raft.raftLog.lastIndex() }

  /// The node's current term.
  public var term: UInt64 { raft.term }

  /// Whether this node is the leader.
  public var isLeader: Bool { raft.state == .leader }

  /// The node a proposal made here is forwarded to as a `MsgProp` (the leader, while this node
  /// is a follower that forwards), or nil (proposed here, or dropped). A caller that sends such
  /// a `MsgProp` itself does what `propose` would: Raft's state is not involved in forwarding.
  public var proposalForwardTarget: UInt64? { raft.proposalForwardTarget }

  /// The `MsgProp` that forwards a proposal of `data` from `from` to its leader `target`: what
  /// `propose` sends on a follower (`proposalForwardTarget`).
  public static func forwardedProposal(_ data: [UInt8], from: UInt64, to target: UInt64) -> Message {
    Message(type: .msgProp, to: target, from: from, entries: [Entry(data: data)])
  }

  /// The index of the first entry still in the log (entries below it were compacted into a
  /// snapshot).
  public var firstIndex: UInt64 { raft.raftLog.firstIndex() }

  /// The highest index known to be committed.
  public var commitIndex: UInt64 { raft.raftLog.committed }

  /// The node's status without the progress map.
  public func basicStatus() -> BasicStatus { raft.basicStatus }

  /// Visits the progress of every replica in id order (copies: the visitor cannot change the
  /// leader's flow control).
  public func withProgress(_ visitor: (UInt64, ProgressType, Progress) -> Void) {
    raft.tracker.visit { pid, pr in visitor(pid, pr.isLearner ? .learner : .peer, pr.clone()) }
  }

  /// Reports that the last message to `id` could not be delivered.
  public func reportUnreachable(_ id: UInt64) {
    try? raft.step(Message(type: .msgUnreachable, from: id))
  }

  /// Reports how sending a snapshot to `id` ended.
  public func reportSnapshot(_ id: UInt64, status: SnapshotStatus) {
    try? raft.step(Message(type: .msgSnapStatus, from: id, reject: status == .failure))
  }

  /// Asks the leader to hand leadership to `transferee`.
  public func transferLeader(to transferee: UInt64) {
    try? raft.step(Message(type: .msgTransferLeader, from: transferee))
  }

  /// Makes a follower forget its leader (for example when the application knows it is gone),
  /// so that it grants pre-votes and votes without waiting for the election timeout.
  public func forgetLeader() throws {
    try raft.step(Message(type: .msgForgetLeader))
  }

  /// Requests a read index; the answer arrives as a `ReadState` with the same context.
  public func readIndex(_ ctx: [UInt8]) {
    try? raft.step(Message(type: .msgReadIndex, entries: [Entry(data: ctx)]))
  }

  /// Test hook: sets the randomized election timeout (etcd's `SetRandomizedElectionTimeout`).
  public func setRandomizedElectionTimeout(_ v: Int) { raft.setRandomizedElectionTimeout(v) }

  /// Bootstraps an empty storage with a configuration of `peers`: appends one committed
  /// ConfChangeAddNode entry per peer and applies them, so the node can campaign at once. The
  /// entries still come out in the first Ready for the application to persist and apply.
  public func bootstrap(_ peers: [Peer]) throws {
    guard !peers.isEmpty else { throw RaftError.bootstrap("must provide at least one peer to Bootstrap") }
    let last = try raft.raftLog.storage.lastIndex()
    guard last == 0 else { throw RaftError.bootstrap("can't bootstrap a nonempty Storage") }
    // Nothing is persisted yet: the first Ready must carry the hard state.
    prevHardState = HardState()
    raft.becomeFollower(term: 1, lead: noNode)
    var ents: [Entry] = []
    for (i, peer) in peers.enumerated() {
      let cc = ConfChange(type: .addNode, nodeID: peer.id, context: peer.context)
      ents.append(Entry(term: 1, index: UInt64(i + 1), type: .confChange, data: cc.encoded()))
    }
    raft.raftLog.append(ents)
    // applied stays 0 so that the application sees the conf changes in CommittedEntries; the
    // peers are added now (and again when applied) so that campaigning works right away.
    raft.raftLog.committed = UInt64(ents.count)
    for peer in peers {
      _ = raft.applyConfChange(AnyConfChange.v1(ConfChange(type: .addNode, nodeID: peer.id)).asV2)
    }
  }
}
