import Logging
import Raft
import RaftWAL
import Synchronization

/// One Raft node: the run loop thread that owns the `RawNode`, its WAL, and (in async mode) the
/// append and apply workers.
///
/// The run loop wakes on any input, drains everything queued, steps it into the `RawNode`, and
/// hands out the Ready: in `.async` mode to the workers and the transport, never waiting for the
/// disk; in `.sync` mode it persists, sends, applies and advances itself (the baseline).
public final class Node: @unchecked Sendable {
  public typealias Completion = @Sendable (Result<UInt64, EngineError>) -> Void

  /// What the run loop is asked to do.
  enum Input {
    case propose([UInt8], Completion)
    case proposeConfChange(AnyConfChange, Completion)
    case forward(ForwardedProposal, @Sendable (EngineError?) -> Void)
    /// A peer message, or a worker's response.
    case step(Message)
    case campaign
    case transferLeader(UInt64)
    case readIndex([UInt8], Completion?)
    case cancelReadIndex([UInt8])
    case forgetLeader
    case reportUnreachable(UInt64)
    case reportSnapshot(UInt64, SnapshotStatus)
    case status(@Sendable (Status) -> Void)
    /// A committed conf change at `index`, from the apply worker.
    case applyConfChange(AnyConfChange, index: UInt64)
    /// The apply side took a snapshot of the state machine at `index`.
    case snapshotTaken(index: UInt64, data: [UInt8])
    case storageFailed(String)
    case stop
  }

  public let id: UInt64
  public let configuration: NodeConfiguration
  /// The Raft storage over the WAL.
  public let storage: WALStorage

  let inbox: BatchQueue<Input>
  private let transport: Transport
  private let metrics: EngineMetrics
  private let logger: Logger
  private let proposals: Proposals
  private let applier: Applier
  private let rawNode: RawNode
  private var applyWorker: ApplyWorker?
  private var appendWorker: AppendWorker?
  private var loop: OSThread?
  /// The leader as last seen by the run loop (0: none), for callers' errors.
  private let knownLeader = Atomic<UInt64>(0)
  private let stopping = Atomic<Bool>(false)
  /// Run loop only: the reason the node stopped on its own (a storage failure).
  private var failure: String?
  /// Set when the run loop stopped on a storage failure (new proposals fail with it).
  private let failed = Mutex<String?>(nil)
  /// Run loop only: the configuration as of the last applied conf change or installed snapshot
  /// (a snapshot taken at the apply side's index records it: the conf changes up to there reach
  /// the loop first).
  private var confState: ConfState
  /// Run loop only: read index requests waiting for their read state, by context.
  private var readWaiters: [[UInt8]: Completion] = [:]

  /// Opens the WAL in `configuration.directory`, restores the state machine from its snapshot,
  /// and bootstraps a new cluster of `configuration.peers` when the WAL is empty. Call
  /// `start()` to run.
  public init(configuration: NodeConfiguration, stateMachine: StateMachine, transport: Transport) throws {
    precondition(configuration.id != 0, "a node id must not be 0")
    id = configuration.id
    self.configuration = configuration
    self.transport = transport
    var logger = configuration.logger
    logger[metadataKey: "node"] = "\(configuration.id)"
    self.logger = logger
    let metrics = EngineMetrics(node: configuration.id, factory: configuration.metricsFactory)
    self.metrics = metrics
    proposals = Proposals(metrics: metrics)
    let raftLogger = SwiftLogRaftLogger(logger)
    let wal = try WAL(directory: configuration.directory, options: configuration.wal, logger: raftLogger)
    wal.batchObserver = { report in
      metrics.walSync.recordNanoseconds(Int64(report.syncNanoseconds))
      metrics.walBatchEntries.record(report.entries)
      metrics.walBatchBytes.record(report.bytes)
    }
    storage = try WALStorage(wal: wal)
    let snapshot = try storage.snapshot()
    applier = Applier(
      stateMachine: stateMachine, proposals: proposals, snapshotEntries: configuration.snapshotEntries,
      lastSnapshotIndex: snapshot.metadata.index)
    if snapshot.metadata.index > 0 { stateMachine.restore(snapshot: snapshot) }
    var raftConfig = Config(
      id: configuration.id, electionTick: configuration.electionTick, heartbeatTick: configuration.heartbeatTick,
      storage: storage)
    raftConfig.applied = snapshot.metadata.index
    raftConfig.asyncStorageWrites = configuration.readyHandling == .async
    raftConfig.maxSizePerMsg = configuration.maxSizePerMsg
    raftConfig.maxInflightMsgs = configuration.maxInflightMsgs
    raftConfig.maxCommittedSizePerReady = configuration.maxCommittedSizePerReady
    raftConfig.preVote = configuration.preVote
    raftConfig.checkQuorum = configuration.checkQuorum
    raftConfig.randomSeed = configuration.id &* 0x9E37_79B9_7F4A_7C15 ^ monotonicNanoseconds()
    raftConfig.logger = raftLogger
    rawNode = try RawNode(config: raftConfig)
    let (hs, cs) = try storage.initialState()
    confState = cs
    let lastIndex = try storage.lastIndex()
    if hs.isEmpty && lastIndex == 0 && !configuration.peers.isEmpty {
      try rawNode.bootstrap(configuration.peers.map { Peer(id: $0) })
    }
    inbox = BatchQueue(
      capacity: configuration.inboxCapacity, spinNanoseconds: configuration.spinNanoseconds,
      yieldingPollNanoseconds: configuration.yieldingPollNanoseconds)
  }

  /// Where the transport delivers this node's messages.
  public var sink: MessageSink {
    { [inbox] messages in inbox.push(contentsOf: messages.map { Input.step($0) }) }
  }

  /// Starts the run loop (and the workers in async mode).
  public func start() {
    precondition(loop == nil, "Node.start called twice")
    if configuration.readyHandling == .async {
      let inbox = self.inbox
      let toRunLoop: @Sendable ([Input]) -> Void = { inputs in inbox.push(contentsOf: inputs) }
      let apply = ApplyWorker(
        applier: applier, spinNanoseconds: configuration.spinNanoseconds,
        yieldingPollNanoseconds: configuration.yieldingPollNanoseconds, toRunLoop: toRunLoop)
      let append = AppendWorker(
        storage: storage, nodeID: id, transport: transport, applyWorker: apply,
        spinNanoseconds: configuration.spinNanoseconds, yieldingPollNanoseconds: configuration.yieldingPollNanoseconds,
        toRunLoop: toRunLoop)
      applyWorker = apply
      appendWorker = append
      apply.start()
      append.start()
    }
    loop = OSThread(name: "raft-node-\(id)") { [self] in run() }
    logger.info(
      "node started",
      metadata: [
        "mode": "\(configuration.readyHandling)", "wal": "\(storage.wal.io)",
        "lastIndex": "\((try? storage.lastIndex()) ?? 0)",
      ])
  }

  /// Stops the run loop and the workers; waiting proposals fail with `.stopped`. Everything
  /// already acknowledged is durable. The WAL is closed. Called from a completion (which runs
  /// on one of the engine's threads), it only starts the stop and returns.
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
    inbox.close()
    // The loop is gone: answer whatever is still queued (the RawNode is safe to read now).
    var left: [Input] = []
    inbox.take(into: &left, timeoutNanoseconds: 0)
    abandon(left, .stopped)
    proposals.failAll(.stopped)
    do {
      try storage.wal.close()
    } catch {
      logger.error("closing the WAL failed", metadata: ["error": "\(error)"])
    }
    logger.info("node stopped")
  }

  // MARK: Inputs (any thread)

  /// Proposes `data`; `completion` gets the entry's index once it is committed and applied on
  /// this node, or an error. Only the leader takes proposals.
  public func propose(_ data: [UInt8], completion: @escaping Completion) {
    enqueueProposal(.propose(data, completion), completion)
  }

  /// Proposes a configuration change, completed like `propose`.
  public func proposeConfChange(_ cc: AnyConfChange, completion: @escaping Completion) {
    enqueueProposal(.proposeConfChange(cc, completion), completion)
  }

  /// What `forward` hands to Raft.
  public enum ForwardedProposal: Sendable {
    case data([UInt8])
    case confChange(AnyConfChange)
  }

  /// Hands `proposal` to Raft on this node whatever its role: the leader appends it, a follower
  /// forwards it to the leader it knows (etcd-raft's proposal forwarding). Nothing tracks the
  /// entry afterwards: the application recognizes it when it is applied (by an id in the data
  /// or the conf change's context), and puts its own deadline on it (a forwarded proposal lost
  /// with a leader change is never answered). `handedOff` runs on the run loop: nil when Raft
  /// took the proposal, else why not (`.dropped`: no leader known; `.stopped`).
  public func forward(_ proposal: ForwardedProposal, handedOff: @escaping @Sendable (EngineError?) -> Void) {
    if stopping.load(ordering: .relaxed) { return handedOff(.stopped) }
    if let why = failed.withLock({ $0 }) { return handedOff(.storage(why)) }
    switch inbox.tryPush(.forward(proposal, handedOff)) {
    case .enqueued: break
    case .full: handedOff(.busy)
    case .closed: handedOff(.stopped)
    }
  }

  private func enqueueProposal(_ input: Input, _ completion: Completion) {
    if stopping.load(ordering: .relaxed) { return completion(.failure(.stopped)) }
    if let why = failed.withLock({ $0 }) { return completion(.failure(.storage(why))) }
    let leader = knownLeader.load(ordering: .relaxed)
    if leader != id { return completion(.failure(.notLeader(leader: leader == 0 ? nil : leader))) }
    switch inbox.tryPush(input) {
    case .enqueued: break
    case .full: completion(.failure(.busy))
    case .closed: completion(.failure(.stopped))
    }
  }

  /// Steps a message from a peer.
  public func step(_ m: Message) { inbox.push(.step(m)) }
  /// Starts an election on this node.
  public func campaign() { inbox.push(.campaign) }
  /// Asks the leader to hand leadership to `transferee`.
  public func transferLeadership(to transferee: UInt64) { inbox.push(.transferLeader(transferee)) }
  /// Requests a read index for `context` (which must be unique among the requests in flight):
  /// `completion` gets the commit index the leader confirmed with a quorum; once the local state
  /// machine has applied it, a read is linearizable. Requests lost with a leader change never
  /// complete: callers put a deadline on them.
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
  /// Forgets the leader (a follower that knows it is partitioned).
  public func forgetLeader() { inbox.push(.forgetLeader) }
  public func reportUnreachable(_ peer: UInt64) { inbox.push(.reportUnreachable(peer)) }
  public func reportSnapshot(_ peer: UInt64, status: SnapshotStatus) { inbox.push(.reportSnapshot(peer, status)) }

  /// The node's Raft status, from the run loop (or, once the run loop stopped on a storage
  /// failure, as it was then).
  public func status(_ reply: @escaping @Sendable (Status) -> Void) {
    // `failed` is set after the loop's last use of the RawNode (its lock orders the two).
    if failed.withLock({ $0 }) != nil { return reply(rawNode.status()) }
    inbox.push(.status(reply))
  }

  /// The leader this node knows of (nil when none).
  public var leader: UInt64? {
    let l = knownLeader.load(ordering: .relaxed)
    return l == 0 ? nil : l
  }

  // MARK: The run loop

  private func run() {
    let tickNanoseconds = UInt64(configuration.tickMicroseconds) * 1000
    var nextTick = monotonicNanoseconds() &+ tickNanoseconds
    var inputs: [Input] = []
    var registrations: [(index: UInt64, Proposals.Waiting)] = []
    var running = true
    while running {
      inputs.removeAll(keepingCapacity: true)
      let now = monotonicNanoseconds()
      inbox.take(into: &inputs, timeoutNanoseconds: nextTick > now ? nextTick - now : 0)
      if !inputs.isEmpty { metrics.inboxDepth.record(inputs.count) }
      registrations.removeAll(keepingCapacity: true)
      var handled = 0
      while handled < inputs.count && running {
        if case .propose = inputs[handled] {
          // A run of proposals goes into the log as one message: one append, one broadcast.
          var end = handled + 1
          while end < inputs.count, case .propose = inputs[end] { end += 1 }
          proposeBatch(inputs[handled..<end], registrations: &registrations)
          handled = end
        } else {
          running = handle(inputs[handled], registrations: &registrations)
          handled += 1
        }
      }
      if !running { abandon(inputs[handled...], failure.map { .storage($0) } ?? .stopped) }
      proposals.register(registrations)
      let t = monotonicNanoseconds()
      if t >= nextTick {
        rawNode.tick()
        nextTick = max(nextTick &+ tickNanoseconds, t)
      }
      if !running { break }
      do {
        while rawNode.hasReady() {
          let t0 = monotonicNanoseconds()
          try handleReady()
          metrics.readyHandling.recordNanoseconds(Int64(monotonicNanoseconds() &- t0))
        }
      } catch {
        failure = "\(error)"
        break
      }
    }
    if let failure {
      logger.error("node stopped: storage failed", metadata: ["error": "\(failure)"])
      failed.withLock { $0 = failure }
      knownLeader.store(0, ordering: .relaxed)
      proposals.failAll(.storage(failure))
    }
    for (_, waiter) in readWaiters { waiter(.failure(failure.map { .storage($0) } ?? .stopped)) }
    readWaiters = [:]
    loopEnded = true
  }

  /// Answers inputs that will not be handled: proposals and read requests fail with `error`,
  /// status queries get the last status (only once the loop is gone), conf changes are moot.
  private func abandon<C: Collection>(_ inputs: C, _ error: EngineError) where C.Element == Input {
    for input in inputs {
      switch input {
      case .propose(_, let c), .proposeConfChange(_, let c): c(.failure(error))
      case .forward(_, let c): c(error)
      case .readIndex(_, let c): c?(.failure(error))
      case .status(let reply): if stopping.load(ordering: .relaxed) && loopEnded { reply(rawNode.status()) }
      default: break
      }
    }
  }

  /// True once the run loop returned (set by it, read by `stop` after the join).
  private var loopEnded = false

  /// Handles one input; false when the loop must stop.
  private func handle(_ input: Input, registrations: inout [(index: UInt64, Proposals.Waiting)]) -> Bool {
    switch input {
    case .propose:
      preconditionFailure("Node: proposals are taken in runs by the loop (proposeBatch)")
    case .proposeConfChange(let cc, let completion):
      propose([completion], isConfChange: true, registrations: &registrations) { try rawNode.proposeConfChange(cc) }
    case .forward(let proposal, let handedOff):
      do {
        switch proposal {
        case .data(let data): try rawNode.propose(data)
        case .confChange(let cc): try rawNode.proposeConfChange(cc)
        }
        handedOff(nil)
      } catch {
        handedOff(.dropped)
      }
    case .step(let m):
      try? rawNode.step(m)  // stale or malformed peer messages are refused by RawNode; Raft retries
    case .campaign:
      try? rawNode.campaign()
    case .transferLeader(let t):
      rawNode.transferLeader(to: t)
    case .readIndex(let ctx, let completion):
      if let completion { readWaiters[ctx] = completion }
      rawNode.readIndex(ctx)
    case .cancelReadIndex(let ctx):
      readWaiters.removeValue(forKey: ctx)?(.failure(.timedOut))
    case .forgetLeader:
      try? rawNode.forgetLeader()
    case .reportUnreachable(let p):
      rawNode.reportUnreachable(p)
    case .reportSnapshot(let p, let st):
      rawNode.reportSnapshot(p, status: st)
    case .status(let reply):
      reply(rawNode.status())
    case .applyConfChange(let cc, let index):
      applyConfChange(cc, at: index)
    case .snapshotTaken(let index, let data):
      compact(at: index, data: data)
    case .storageFailed(let why):
      failure = why
      return false
    case .stop:
      return false
    }
    return true
  }

  /// Proposes a run of `.propose` inputs as one multi-entry message; each proposal waits on its
  /// own index.
  private func proposeBatch(_ batch: ArraySlice<Input>, registrations: inout [(index: UInt64, Proposals.Waiting)]) {
    var payloads: [[UInt8]] = []
    var completions: [Completion] = []
    payloads.reserveCapacity(batch.count)
    completions.reserveCapacity(batch.count)
    for case .propose(let data, let completion) in batch {
      payloads.append(data)
      completions.append(completion)
    }
    propose(completions, registrations: &registrations) { try rawNode.propose(batch: payloads) }
  }

  /// Runs `body`, which appends one entry per completion, and registers each completion on its
  /// entry's index; on a follower, or when Raft drops the proposal, fails them all at once.
  private func propose(
    _ completions: [Completion], isConfChange: Bool = false,
    registrations: inout [(index: UInt64, Proposals.Waiting)], _ body: () throws -> Void
  ) {
    let st = rawNode.basicStatus().softState
    guard st.raftState == .leader else {
      let error = EngineError.notLeader(leader: st.lead == noNode ? nil : st.lead)
      for c in completions { c(.failure(error)) }
      return
    }
    let before = rawNode.lastIndex
    do {
      try body()
    } catch {
      for c in completions { c(.failure(.dropped)) }
      return
    }
    let appended = rawNode.lastIndex - before
    guard appended > 0 else {
      for c in completions { c(.failure(.dropped)) }
      return
    }
    assert(appended == UInt64(completions.count), "Node: a proposal was appended in part")
    let term = rawNode.term
    let now = monotonicNanoseconds()
    for (k, completion) in completions.enumerated() {
      registrations.append(
        (
          before + 1 + UInt64(k),
          Proposals.Waiting(term: term, completion: completion, isConfChange: isConfChange, proposedAt: now)
        ))
    }
  }

  /// Applies a committed conf change to Raft, unless a snapshot from the leader already covers
  /// its index: in async mode the apply worker may still be applying entries below a snapshot
  /// that Raft restored (with the configuration as of its index) when it stepped the MsgSnap;
  /// applying those changes again on top of the snapshot's configuration would corrupt it.
  private func applyConfChange(_ cc: AnyConfChange, at index: UInt64) {
    guard index >= rawNode.raft.raftLog.firstIndex() else {
      logger.debug("conf change below a restored snapshot skipped", metadata: ["index": "\(index)"])
      return
    }
    confState = rawNode.applyConfChange(cc)
  }

  /// Saves a snapshot of the state machine at `index` and compacts the log behind it: through
  /// the append worker (the WAL's owner) in async mode, here in sync mode.
  private func compact(at index: UInt64, data: [UInt8]) {
    let retain = configuration.compactionRetainEntries
    switch configuration.readyHandling {
    case .async:
      appendWorker!.queue.push(.compact(index: index, confState: confState, data: data, retain: retain))
    case .sync:
      do {
        guard index > (try storage.snapshot()).metadata.index, index <= (try storage.lastIndex()) else { return }
        try storage.createSnapshot(index, confState: confState, data: data)
        if index > retain, index - retain > (try storage.firstIndex()) { try storage.compact(index - retain) }
      } catch {
        logger.error("compaction failed", metadata: ["index": "\(index)", "error": "\(error)"])
      }
    }
    logger.debug("snapshot taken", metadata: ["index": "\(index)"])
  }

  private func handleReady() throws {
    let rd = rawNode.ready()
    if let soft = rd.softState {
      let lead = soft.lead == noNode ? 0 : soft.lead
      if knownLeader.exchange(lead, ordering: .relaxed) != lead {
        logger.info("leader changed", metadata: ["leader": "\(lead)", "state": "\(soft.raftState)"])
        // Read index requests in flight may be lost with the old leader: fail them now.
        let lost = readWaiters
        readWaiters = [:]
        for (_, waiter) in lost { waiter(.failure(.dropped)) }
      }
    }
    for rs in rd.readStates {
      readWaiters.removeValue(forKey: rs.requestCtx)?(.success(rs.index))
    }
    switch configuration.readyHandling {
    case .async:
      // An installed snapshot replaces the configuration (it is restored on the append worker;
      // the snapshots this node takes later must carry the snapshot's configuration).
      if rd.hasSnapshot { confState = rd.snapshot.metadata.confState }
      var remote: [Message] = []
      for m in rd.messages {
        switch m.to {
        case localAppendThread: appendWorker!.queue.push(.append(m))
        case localApplyThread:
          if let first = m.entries.first, let last = m.entries.last {
            proposals.committed(first.index...last.index, at: monotonicNanoseconds())
          }
          applyWorker!.queue.push(.apply(m))
        case id: inbox.push(.step(m))
        default: remote.append(m)
        }
      }
      if !remote.isEmpty { transport.send(remote) }
    case .sync:
      let snapshot: Snapshot? = rd.hasSnapshot ? rd.snapshot : nil
      let hs = rd.hardState.isEmpty ? nil : rd.hardState
      if rd.mustSync || snapshot != nil {
        try storage.save(entries: rd.entries, hardState: hs, snapshot: snapshot)
      } else if let hs {
        // Only the commit index moved (etcd's MustSync is false): the record joins the next
        // batch that must be durable; a crash before that recomputes the commit index.
        try storage.wal.appendDeferred(hardState: hs)
        try storage.applyDurable(entries: [], hardState: hs)
      }
      if let snapshot {
        confState = snapshot.metadata.confState
        applier.stateMachine.restore(snapshot: snapshot)
        applier.lastSnapshotIndex = snapshot.metadata.index
        proposals.restored(through: snapshot.metadata.index)
      }
      let remote = rd.messages.filter { $0.to != id }
      if !remote.isEmpty { transport.send(remote) }
      if let first = rd.committedEntries.first, let last = rd.committedEntries.last {
        proposals.committed(first.index...last.index, at: monotonicNanoseconds())
      }
      let confChanges = try applier.apply(rd.committedEntries)
      for cc in confChanges { applyConfChange(cc.change, at: cc.index) }
      applier.confChangesApplied(confChanges)
      if let last = rd.committedEntries.last, let snap = applier.snapshotIfDue(appliedThrough: last.index) {
        compact(at: snap.index, data: snap.data)
      }
      rawNode.advance(rd)
    }
  }
}
