import Logging
import Raft
import RaftWAL
import Synchronization

/// One Raft node: the threaded driver of an `EngineCore`. Its run loop thread owns the core
/// and performs the core's actions; in `.async` mode the append worker (the WAL) and the apply
/// worker (the state machine) perform the storage work and hand their results back to the run
/// loop's inbox, so the loop never waits for the disk; in `.sync` mode the loop persists,
/// sends, applies and advances itself (the baseline).
///
/// Every input goes through the inbox (`BatchQueue`): the loop wakes, drains everything queued,
/// feeds it to the core, ticks when due, and hands out the Readys.
public final class Node: @unchecked Sendable {
  /// A single proposal's completion: the entry's index, or why it was not committed.
  public typealias Completion = @Sendable (Result<UInt64, EngineError>) -> Void

  /// What the run loop is asked to do.
  enum Input {
    case propose([Payload], ProposalCompletion)
    /// A batch of one, without an array or a wrapping closure.
    case proposeOne(Payload, EntryCompletion)
    case proposeConfChange(AnyConfChange, ProposalCompletion)
    case forward(ForwardedProposal, @Sendable (EngineError?) -> Void)
    /// A message from a peer (the transport).
    case peer(Message)
    /// Responses released by the append worker, in order.
    case local([Message])
    /// What the apply worker did, in order.
    case applied([ApplyOutcome])
    case campaign
    case transferLeader(UInt64)
    case readIndex([UInt8], ReadCompletion?)
    case cancelReadIndex([UInt8])
    case forgetLeader
    case reportUnreachable(UInt64)
    case reportSnapshot(UInt64, SnapshotStatus)
    case status(@Sendable (Status) -> Void)
    case compact(UInt64, [UInt8], @Sendable (Result<UInt64, EngineError>) -> Void)
    case failed(EngineError)
    case stop
  }

  public let id: UInt64
  public let configuration: NodeConfiguration
  /// The Raft storage over the WAL.
  public let storage: WALStorage

  let inbox: BatchQueue<Input>
  let transport: Transport
  let metrics: EngineMetrics
  let logger: Logger
  let applier: Applier
  /// Run loop only (and `stop`, once the loop ended).
  var core: EngineCore
  let applyWorker: ApplyWorker?
  let appendWorker: AppendWorker?
  private var loop: OSThread?
  /// The leader as last seen by the run loop (0: none), for callers' errors.
  let knownLeader = Atomic<UInt64>(0)
  /// Where Raft forwards a proposal made here, as last seen by the run loop
  /// (`RawNode.proposalForwardTarget`; 0: it goes through the run loop).
  let forwardTarget = Atomic<UInt64>(0)
  /// The largest payload the log takes (larger ones are refused by the core).
  let payloadBytesMax: Int
  let stopping = Atomic<Bool>(false)
  /// Set when the run loop stopped on a failure (new proposals fail with it).
  let failed = Mutex<EngineError?>(nil)
  /// Identifies this node's engine threads' `LocalInputs` (set before anything else).
  let threadsToken = ThreadsToken()
  /// Mirrors `failed != nil`, read without the lock on every proposal.
  let hasFailed = Atomic<Bool>(false)
  /// Peer messages in the inbox, not yet taken by the run loop (what `inboxBacklogged` counts:
  /// the node's own proposals never stop the transport reading its peers' answers).
  final class PeerBacklog: Sendable {
    let queued = Atomic<Int>(0)
  }
  let peerInputsQueued = PeerBacklog()
  /// True once the run loop returned (set by it, read by `stop` after the join).
  var loopEnded = false
  /// One line per second about refused peer messages (run loop only).
  var refusalLog = LogRateLimiter(intervalNanoseconds: 1_000_000_000)

  /// Opens the WAL in `configuration.directory`, restores the state machine from its snapshot,
  /// and bootstraps a new cluster of `configuration.peers` when the WAL is empty. Call
  /// `start()` to run.
  public convenience init(configuration: NodeConfiguration, stateMachine: StateMachine, transport: Transport) throws {
    try self.init(
      configuration: configuration, stateMachine: stateMachine, transport: transport, faults: EngineFaults())
  }

  /// As the public initializer, with faults planted for tests.
  init(
    configuration: NodeConfiguration, stateMachine: StateMachine, transport: Transport, faults: EngineFaults
  ) throws {
    precondition(configuration.id != 0, "a node id must not be 0")
    precondition(
      (0...19).contains(configuration.runLoopNiceIncrement),
      "runLoopNiceIncrement \(configuration.runLoopNiceIncrement) is outside 0...19")
    id = configuration.id
    self.configuration = configuration
    self.transport = transport
    var logger = configuration.logger
    logger[metadataKey: "node"] = "\(configuration.id)"
    self.logger = logger
    let metrics = EngineMetrics(node: configuration.id, factory: configuration.metricsFactory)
    self.metrics = metrics
    let raftLogger = SwiftLogRaftLogger(logger)
    let wal = try WAL(directory: configuration.directory, options: configuration.wal, logger: raftLogger)
    wal.batchObserver = { report in
      metrics.walSync.recordNanoseconds(Int64(report.syncNanoseconds))
      metrics.walBatchEntries.record(report.entries)
      metrics.walBatchBytes.record(report.bytes)
    }
    storage = try WALStorage(wal: wal)
    let snapshot = try storage.snapshot()
    applier = Applier(stateMachine: stateMachine, metrics: metrics)
    // An application that resumes at or above the snapshot has its own newer state.
    if snapshot.metadata.index > 0 && configuration.appliedIndex < snapshot.metadata.index {
      stateMachine.restore(snapshot: snapshot)
    }
    var raftConfig = Config(
      id: configuration.id, electionTick: configuration.electionTick, heartbeatTick: configuration.heartbeatTick,
      storage: storage)
    let (hs, cs) = try storage.initialState()
    // Entries the application applied before the restart are not handed out again; only
    // committed ones can be skipped (the recovered commit index may lag: the rest come again).
    let resumeIndex = max(snapshot.metadata.index, min(configuration.appliedIndex, hs.commit))
    raftConfig.applied = resumeIndex
    raftConfig.asyncStorageWrites = configuration.readyHandling == .async
    raftConfig.maxSizePerMsg = configuration.maxSizePerMsg
    raftConfig.maxInflightMsgs = configuration.maxInflightMsgs
    raftConfig.maxCommittedSizePerReady = configuration.maxCommittedSizePerReady
    raftConfig.maxUncommittedEntriesSize = configuration.maxUncommittedEntriesSize
    raftConfig.maxInflightBytes =
      configuration.maxInflightBytes == 0 ? 0 : max(configuration.maxInflightBytes, configuration.maxSizePerMsg)
    raftConfig.preVote = configuration.preVote
    raftConfig.checkQuorum = configuration.checkQuorum
    raftConfig.randomSeed = configuration.id &* 0x9E37_79B9_7F4A_7C15 ^ EngineClock.nanoseconds()
    raftConfig.logger = raftLogger
    let rawNode = try RawNode(config: raftConfig)
    let lastIndex = try storage.lastIndex()
    if hs.isEmpty && lastIndex == 0 && !configuration.peers.isEmpty {
      try rawNode.bootstrap(configuration.peers.map { Peer(id: $0) })
    }
    // The configuration changes among the skipped entries still reach Raft.
    let confStates = try Self.replayConfChanges(
      from: snapshot.metadata.index, through: resumeIndex, of: storage, into: rawNode, recovered: cs)
    var coreConfiguration = EngineCore.Configuration(
      id: configuration.id, readyHandling: configuration.readyHandling,
      snapshotEntries: configuration.snapshotEntries,
      compactionRetainEntries: configuration.compactionRetainEntries, faults: faults,
      peerMessageLimits: PeerMessageLimits(entryBytesMax: storage.wal.options.recordBytesMax))
    payloadBytesMax = coreConfiguration.peerMessageLimits.payloadBytesMax
    coreConfiguration.forwardTagBytes = configuration.forwardTagBytes
    coreConfiguration.snapshotBytes = configuration.snapshotBytes
    coreConfiguration.compactionRetainBytes = configuration.compactionRetainBytes
    core = EngineCore(
      configuration: coreConfiguration,
      rawNode: rawNode, hardState: hs, confState: confStates.last!.confState, snapshotIndex: snapshot.metadata.index,
      appliedIndex: resumeIndex, confStateHistory: confStates)
    let inbox = BatchQueue<Input>(
      capacity: configuration.inboxCapacity, spinNanoseconds: configuration.spinNanoseconds, engineThread: true)
    self.inbox = inbox
    if configuration.readyHandling == .async {
      let toRunLoop: @Sendable ([Input]) -> Void = { inputs in inbox.push(contentsOf: inputs) }
      let threads = ObjectIdentifier(threadsToken)
      let oneThread = configuration.storageThreads.resolved == .one
      applyWorker =
        oneThread
        ? nil
        : ApplyWorker(
          applier: applier, node: threads, spinNanoseconds: configuration.spinNanoseconds, toRunLoop: toRunLoop)
      appendWorker = try AppendWorker(
        storage: storage, nodeID: id, transport: transport, applier: oneThread ? applier : nil, threads: threads,
        spinNanoseconds: configuration.spinNanoseconds, loadedSpinNanoseconds: configuration.loadedSpinNanoseconds,
        toRunLoop: toRunLoop)
    } else {
      applyWorker = nil
      appendWorker = nil
    }
  }

  /// Applies to `rawNode` the configuration changes among the entries in
  /// (`snapshotIndex`, `resumeIndex`], which the application applied before a restart and Raft
  /// does not hand out again; returns the configuration from each index on: the snapshot's
  /// (`recovered`), then one per change.
  private static func replayConfChanges(
    from snapshotIndex: UInt64, through resumeIndex: UInt64, of storage: WALStorage, into rawNode: RawNode,
    recovered: ConfState
  ) throws -> [(index: UInt64, confState: ConfState)] {
    var history = [(index: snapshotIndex, confState: recovered)]
    var next = snapshotIndex + 1
    while next <= resumeIndex {
      let hi = min(resumeIndex, next + 65_535)
      for e in try storage.entries(lo: next, hi: hi + 1, maxSize: .max) where e.type != .normal {
        if let cc = try e.decodedConfChange() { history.append((e.index, rawNode.applyConfChange(cc))) }
      }
      next = hi + 1
    }
    return history
  }

  /// Why the node stopped on its own (a storage failure or a broken invariant); nil while it
  /// runs or after a plain `stop()`.
  public var failure: EngineError? { failed.withLock { $0 } }

  /// Whether the run loop's inbox holds `inboxPeerBacklogMax` inputs or more: the transport
  /// then stops reading from peers until it drains.
  public var inboxBacklogged: Bool {
    peerInputsQueued.queued.load(ordering: .relaxed) >= configuration.inboxPeerBacklogMax
  }

  /// Where the transport delivers this node's messages.
  public var sink: MessageSink {
    { [inbox, peerInputsQueued] messages in
      peerInputsQueued.queued.add(messages.count, ordering: .relaxed)
      inbox.push(contentsOf: messages.map { Input.peer($0) })
    }
  }

  /// Starts the run loop (and the workers in async mode).
  public func start() {
    precondition(loop == nil, "Node.start called twice")
    applyWorker?.start()
    appendWorker?.start()
    loop = OSThread(
      name: "raft-node-\(id)", engineThread: true, niceIncrement: Int32(configuration.runLoopNiceIncrement)
    ) { [self] in run() }
    logger.info(
      "node started",
      metadata: [
        "mode": "\(configuration.readyHandling)", "wal": "\(storage.wal.io)",
        "lastIndex": "\((try? storage.lastIndex()) ?? 0)",
      ])
  }

  /// Stops the run loop and the workers; proposals not yet given to Raft fail with `.stopped`,
  /// those appended and not decided with `.outcomeUnknown` (the ones already handed to the
  /// apply worker complete there). Everything already acknowledged is
  /// durable. The WAL is closed. Called from a completion (which runs on one of the engine's
  /// threads), it only starts the stop and returns.
  public func stop() {
    if (loop?.isCurrent ?? false) || (appendWorker?.isCurrentThread ?? false)
      || (applyWorker?.isCurrentThread ?? false)
    {
      // Waiting here for the thread we are on would never end: stop from another thread.
      OSThread(name: "raft-stop") { [self] in stop() }.detach()
      return
    }
    guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
    inbox.push(.stop)
    loop?.join()
    appendWorker?.stop()
    applyWorker?.stop()
    // A worker that failed left the jobs queued after its failure: their callers are answered
    // (a worker that did not fail performed everything before it ended).
    appendWorker?.abandonQueued()
    inbox.close()
    // The loop is gone: answer whatever is still queued (the core is safe to use now).
    var left: [Input] = []
    inbox.take(into: &left, timeoutNanoseconds: 0)
    abandon(left, .stopped)
    do {
      try storage.wal.close()
    } catch {
      logger.error("closing the WAL failed", metadata: ["error": "\(error)"])
    }
    logger.info("node stopped")
  }

  // MARK: Inputs (any thread)

  /// Proposes `payloads` as one batch (one input, one completion): `completion` gets the range
  /// of indexes they were committed and applied at on this node, or an error. Only the leader
  /// takes proposals; all the batches one wake of the run loop finds go to Raft as one message.
  ///
  /// The payloads are views: payloads cut from one buffer (`Payload(buffer, a..<b)`) travel
  /// through the log, the WAL's encoding and the state machine without a copy or an
  /// allocation of their own.
  public func propose(batch payloads: [Payload], completion: @escaping ProposalCompletion) {
    if let refusal = proposalRefusal() { return completion(.failure(refusal)) }
    enqueue(.propose(payloads, completion)) { completion(.failure($0)) }
  }

  /// Why a proposal is refused at once (stopping, failed, not the leader), or nil.
  @inline(__always)
  private func proposalRefusal() -> EngineError? {
    if stopping.load(ordering: .relaxed) { return .stopped }
    if hasFailed.load(ordering: .acquiring), let why = failed.withLock({ $0 }) { return why }
    let leader = knownLeader.load(ordering: .relaxed)
    if leader != id { return .notLeader(leader: leader == 0 ? nil : leader) }
    return nil
  }

  /// Hands `input` to the run loop: on one of the node's own threads (a completion proposing
  /// again) into that thread's `LocalInputs`, else into the inbox; `refuse` gets `.busy` when
  /// the inbox is full, `.stopped` when it is closed.
  @inline(__always)
  private func enqueue(_ input: Input, refuse: (EngineError) -> Void) {
    if let local = LocalInputs.current, local.node == ObjectIdentifier(threadsToken) {
      if inbox.count + local.inputs.count >= inbox.capacity { return refuse(.busy) }
      local.inputs.append(input)
      return
    }
    switch inbox.tryPush(input) {
    case .enqueued: break
    case .full: refuse(.busy)
    case .closed: refuse(.stopped)
    }
  }

  /// Proposes `payloads` as one batch, each its own array.
  public func propose(batch payloads: [[UInt8]], completion: @escaping ProposalCompletion) {
    propose(batch: payloads.map(Payload.init), completion: completion)
  }

  /// Proposes `data` (a batch of one); `completion` gets the entry's index once it is committed
  /// and applied on this node, or an error.
  public func propose(_ data: [UInt8], completion: @escaping Completion) {
    if let refusal = proposalRefusal() { return completion(.failure(refusal)) }
    enqueue(.proposeOne(Payload(data), completion)) { completion(.failure($0)) }
  }

  /// Proposes a configuration change, completed like `propose`.
  public func proposeConfChange(_ cc: AnyConfChange, completion: @escaping Completion) {
    let done: ProposalCompletion = { result in completion(result.map(\.lowerBound)) }
    if let refusal = proposalRefusal() { return done(.failure(refusal)) }
    enqueue(.proposeConfChange(cc, done)) { done(.failure($0)) }
  }

  /// What `forward` hands to Raft.
  public typealias ForwardedProposal = EngineCore.ForwardedProposal

  /// Hands `proposal` to Raft on this node whatever its role: the leader appends it, a follower
  /// forwards it to the leader it knows (etcd-raft's proposal forwarding). Nothing tracks the
  /// entry afterwards: the application recognizes it when it is applied (by an id in the data
  /// or the conf change's context), and puts its own deadline on it (a forwarded proposal lost
  /// with a leader change is never answered). `handedOff` runs on the run loop, or on the
  /// caller's thread: nil when Raft took the proposal (or it was sent to the leader), else why
  /// not (`.dropped`: no leader known; `.stopped`).
  ///
  /// On a follower that knows its leader, a write goes to the leader as the `MsgProp` Raft
  /// would send (`RawNode.forwardedProposal`, to the target the run loop published) straight
  /// through the transport, from the caller's thread: no turn of the run loop, no wake-up of
  /// it. A target that changed meanwhile is what a message in flight meets anyway: a node that
  /// is no longer the leader forwards the proposal or drops it. When the transport cannot take
  /// it now, the proposal goes through the run loop.
  public func forward(_ proposal: ForwardedProposal, handedOff: @escaping @Sendable (EngineError?) -> Void) {
    if stopping.load(ordering: .relaxed) { return handedOff(.stopped) }
    if hasFailed.load(ordering: .acquiring), let why = failed.withLock({ $0 }) { return handedOff(why) }
    if case .data(let data) = proposal, data.count <= payloadBytesMax {
      let target = forwardTarget.load(ordering: .relaxed)
      if target != 0 && transport.forward(RawNode.forwardedProposal(data, from: id, to: target)) {
        return handedOff(nil)
      }
    }
    enqueue(.forward(proposal, handedOff)) { handedOff($0) }
  }

  /// Steps a message from a peer.
  public func step(_ m: Message) {
    peerInputsQueued.queued.add(1, ordering: .relaxed)
    inbox.push(.peer(m))
  }
  /// Starts an election on this node.
  public func campaign() { inbox.push(.campaign) }
  /// Asks the leader to hand leadership to `transferee`.
  public func transferLeadership(to transferee: UInt64) { inbox.push(.transferLeader(transferee)) }
  /// Requests a read index for `context` (which must be unique among the requests in flight):
  /// `completion` gets the commit index the leader confirmed with a quorum; once the local state
  /// machine has applied it, a read is linearizable. Requests lost with a leader change fail
  /// with `.dropped`; others lost in the network never complete: callers put a deadline on them.
  public func readIndex(context: [UInt8], completion: Completion? = nil) {
    if stopping.load(ordering: .relaxed) {
      completion?(.failure(.stopped))
      return
    }
    inbox.push(.readIndex(context, completion))
  }
  /// Gives up on the read index request of `context` (the caller's deadline passed): its
  /// completion gets `.timedOut` if it is still waiting. Raft drops some requests without an
  /// answer (a follower that knows no leader, a lost message); this frees their waiters.
  public func cancelReadIndex(context: [UInt8]) { inbox.push(.cancelReadIndex(context)) }
  /// Saves a snapshot at `index` holding the application's `snapshot` data and compacts the
  /// log behind it (less `compactionRetainEntries` kept for slow followers): memory and WAL
  /// segments below are reclaimed. For applications that decide themselves what they have
  /// consumed (`ReplicatedLog`), with or without the `snapshotEntries` cadence. Waits until
  /// `index` is applied here; `completion` gets the snapshot's index once the WAL saved it and
  /// compacted (or the newer snapshot's index, when one was already saved).
  public func compact(
    through index: UInt64, snapshot: [UInt8] = [],
    completion: @escaping @Sendable (Result<UInt64, EngineError>) -> Void
  ) {
    if stopping.load(ordering: .relaxed) { return completion(.failure(.stopped)) }
    switch inbox.tryPush(.compact(index, snapshot, completion)) {
    case .enqueued: break
    case .full: completion(.failure(.busy))
    case .closed: completion(.failure(.stopped))
    }
  }

  /// Forgets the leader (a follower that knows it is partitioned).
  public func forgetLeader() { inbox.push(.forgetLeader) }
  public func reportUnreachable(_ peer: UInt64) { inbox.push(.reportUnreachable(peer)) }
  public func reportSnapshot(_ peer: UInt64, status: SnapshotStatus) { inbox.push(.reportSnapshot(peer, status)) }

  /// The node's Raft status, from the run loop (or, once the run loop stopped on a storage
  /// failure, as it was then).
  public func status(_ reply: @escaping @Sendable (Status) -> Void) {
    // `failed` is set after the loop's last use of the core (its lock orders the two).
    if failed.withLock({ $0 }) != nil { return reply(core.rawNode.status()) }
    inbox.push(.status(reply))
  }

  /// How many times each engine thread found nothing to do and waited (parked, or waited in the
  /// WAL's ring), since the node was made: divided by the WAL's batches, the wake-ups a batch
  /// costs.
  public struct Wakeups: Sendable, Equatable {
    public var runLoop: UInt64
    public var appendWorker: UInt64
    public var applyWorker: UInt64
    public var total: UInt64 { runLoop + appendWorker + applyWorker }

    public init(runLoop: UInt64, appendWorker: UInt64, applyWorker: UInt64) {
      self.runLoop = runLoop
      self.appendWorker = appendWorker
      self.applyWorker = applyWorker
    }
  }

  /// The engine threads' wake-ups so far.
  public var wakeups: Wakeups {
    Wakeups(
      runLoop: inbox.wakeupCount, appendWorker: appendWorker?.wakeups ?? 0, applyWorker: applyWorker?.wakeups ?? 0)
  }

  /// The leader this node knows of (nil when none).
  public var leader: UInt64? {
    let l = knownLeader.load(ordering: .relaxed)
    return l == 0 ? nil : l
  }

  /// Answers inputs that will not be handled: proposals and read requests fail with `error`,
  /// status queries get the last status (only once the loop is gone).
  func abandon<C: Collection>(_ inputs: C, _ error: EngineError) where C.Element == Input {
    for input in inputs {
      switch input {
      case .propose(_, let c), .proposeConfChange(_, let c): c(.failure(error))
      case .proposeOne(_, let c): c(.failure(error))
      case .forward(_, let c): c(error)
      case .readIndex(_, let c): c?(.failure(error))
      case .compact(_, _, let c): c(.failure(error))
      case .status(let reply): if stopping.load(ordering: .relaxed) && loopEnded { reply(core.rawNode.status()) }
      default: break
      }
    }
  }
}
