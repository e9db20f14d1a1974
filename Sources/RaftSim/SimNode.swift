import Raft
import RaftEngine
import RaftWAL

/// How a simulated node handles its Ready: the engine core's two modes.
public enum SimMode: String, Sendable, CaseIterable {
  /// Persist (write + sync), send, apply, advance.
  case sync
  /// Asynchronous storage writes: writes to an append worker (write, then sync, then the
  /// responses), committed entries to an apply worker; every response comes back through the
  /// node's inbox or the network, delayed and interleaved.
  case async

  var readyHandling: NodeConfiguration.ReadyHandling {
    switch self {
    case .sync: .sync
    case .async: .async
    }
  }
}

/// What a simulated node's disk is.
public enum SimDiskKind: String, Sendable, CaseIterable {
  /// `SimDisk`: a model of what the WAL keeps (fast).
  case model
  /// The real WAL (posix I/O) over `FaultInjectingFileSystem`: power cuts hit the real
  /// recovery code.
  case wal
}

/// Raft's log lines go nowhere in the simulator (thousands of seeds).
final class SilentLogger: RaftLogger {
  func isEnabled(_ level: RaftLogLevel) -> Bool { false }
  func log(_ level: RaftLogLevel, _ message: String) {}
}

/// A key-value write as it travels in an entry: op id, key, value (8 bytes each, little endian).
struct SimCommand: Equatable {
  var opID: UInt64
  var key: UInt64
  var value: UInt64

  var encoded: [UInt8] {
    var out: [UInt8] = []
    for v in [opID, key, value] { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    return out
  }

  init(opID: UInt64, key: UInt64, value: UInt64) {
    self.opID = opID
    self.key = key
    self.value = value
  }

  init?(_ data: [UInt8]) { self.init(Payload(data)) }

  init?(_ data: Payload) {
    guard data.count == 24 else { return nil }
    func word(_ k: Int) -> UInt64 { data[(8 * k)..<(8 * k + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    (opID, key, value) = (word(0), word(1), word(2))
  }
}

/// The simulated state machine: a key-value map, and the members removed from the cluster (as
/// raftkv keeps its members: in the state, and so in its snapshots), driven by the engine's
/// `Applier`.
final class SimKV: StateMachine {
  private(set) var kv: [UInt64: UInt64] = [:]
  /// The op ids applied so far: a write applied twice (a duplicated MsgProp: Raft does not
  /// deduplicate proposals) takes effect once, as with client sessions (Raft thesis, 6.3).
  private(set) var appliedOps: Set<UInt64> = []
  /// Members removed by the conf changes applied so far (a node that catches up by snapshot
  /// learns the removals folded into it).
  private(set) var removed: Set<UInt64> = []
  private(set) var applied: UInt64 = 0
  /// Called whenever members are found removed (the simulation keeps them on disk).
  private let membersRemoved: (Set<UInt64>) -> Void

  init(snapshot: Snapshot, membersRemoved: @escaping (Set<UInt64>) -> Void) {
    self.membersRemoved = membersRemoved
    restore(snapshot: snapshot)
  }

  func apply(index: UInt64, term: UInt64, data: Payload) {
    if let c = SimCommand(data), appliedOps.insert(c.opID).inserted { kv[c.key] = c.value }
  }

  func applyConfChange(_ change: AnyConfChange, index: UInt64, term: UInt64) {
    let gone = change.asV2.changes.filter { $0.type == .removeNode }.map(\.nodeID)
    guard !gone.isEmpty else { return }
    removed.formUnion(gone)
    membersRemoved(Set(gone))
  }

  func applied(through index: UInt64) { applied = index }

  func restore(snapshot: Snapshot) {
    (kv, appliedOps, removed) = Self.decodeState(snapshot.data)
    applied = snapshot.metadata.index
    if !removed.isEmpty { membersRemoved(removed) }
  }

  func snapshotData() -> [UInt8]? { Self.encodeState(kv, appliedOps, removed) }

  /// Marks a removed member's record in a snapshot.
  static let removedMarker = UInt64.max

  /// The state in a snapshot: one 24-byte record per key (op id 0), then one per applied op
  /// (key and value 0), then one per removed member (op id `removedMarker`), sorted.
  static func encodeState(_ kv: [UInt64: UInt64], _ ops: Set<UInt64>, _ removed: Set<UInt64>) -> [UInt8] {
    var out: [UInt8] = []
    for (k, v) in kv.sorted(by: { $0.key < $1.key }) { out += SimCommand(opID: 0, key: k, value: v).encoded }
    for op in ops.sorted() { out += SimCommand(opID: op, key: 0, value: 0).encoded }
    for id in removed.sorted() { out += SimCommand(opID: removedMarker, key: id, value: 0).encoded }
    return out
  }

  static func decodeState(_ data: [UInt8]) -> ([UInt64: UInt64], Set<UInt64>, Set<UInt64>) {
    var kv: [UInt64: UInt64] = [:]
    var ops: Set<UInt64> = []
    var removed: Set<UInt64> = []
    var k = 0
    while k + 24 <= data.count {
      let c = SimCommand(Array(data[k..<(k + 24)]))!
      if c.opID == 0 {
        kv[c.key] = c.value
      } else if c.opID == removedMarker {
        removed.insert(c.key)
      } else {
        ops.insert(c.opID)
      }
      k += 24
    }
    return (kv, ops, removed)
  }
}

/// What a simulated node tells the simulation.
struct SimHooks {
  /// Sends messages to other nodes through the simulated network.
  var send: ([Message]) -> Void
  /// The node is about to apply these committed entries (in order): the checks see each one.
  var applying: (SimNode, [Entry]) -> Void
  /// Asked before each sync: true means the machine dies first.
  var crashesBeforeSync: () -> Bool
  /// The core refused a peer's message (`EngineCore.Action.refusePeer`).
  var refused: (SimNode, UInt64, MessageType, PeerMessageRefusal) -> Void
}

/// One simulated node: the engine's `EngineCore` (the same core the threaded `Node` runs) over
/// a `SimLog` (the model disk) and a `SimKV`, driven the way the engine's threads drive it,
/// except that the simulation decides when each piece of work happens: the run loop's Readys,
/// the append worker's writes and syncs (`AppendStage`, as in the engine), the apply worker's
/// jobs (`Applier`, as in the engine), and the inbox between them.
final class SimNode {
  let id: UInt64
  let mode: SimMode
  let diskKind: SimDiskKind
  /// The model disk (`.model`).
  let disk: SimDisk
  /// The file system under the WAL (`.wal`); a crash replaces it with what a power cut leaves.
  private var files = FaultInjectingFileSystem()
  /// The WAL's options (`.wal`): posix I/O and the spare prepared in line, so that a seed
  /// replays exactly.
  private let walOptions: WALOptions
  /// Members this node saw removed (etcd keeps them in its membership store and refuses their
  /// messages, so that a removed member that never learned it cannot disrupt the cluster).
  /// Kept across crashes.
  var removedMembers: Set<UInt64> = []
  /// False while crashed.
  private(set) var up = false
  /// Nil while crashed.
  private var core: EngineCore?
  private var log: (any EngineLog)!
  private(set) var machine: SimKV!
  private var applier: Applier!
  private var stage: AppendStage
  private var actions: [EngineCore.Action] = []
  /// Where Raft forwards a proposal made here, as the core last reported it (the threaded
  /// node's `forwardTarget`): a client's write on a follower goes straight to it.
  private var forwardTarget: UInt64?
  private let hooks: SimHooks

  /// The node's Raft state, for the checks (read only).
  var raw: RawNode { inspect { $0.rawNode } }
  var kv: [UInt64: UInt64] { machine.kv }
  /// Whether the state machine applied the write of client operation `opID`.
  func hasApplied(op opID: UInt64) -> Bool { machine.appliedOps.contains(opID) }
  /// Why the core stopped on its own (nil: it did not).
  var coreFailure: String? { core?.failure }
  /// The core's term, last index and commit index, and its voters (for a hostile peer to aim at).
  var aim: (term: UInt64, lastIndex: UInt64, commit: UInt64, voters: [UInt64]) {
    let r = raw.raft
    return (r.term, r.raftLog.lastIndex(), r.raftLog.committed, confState.voters)
  }
  var applied: UInt64 { machine.applied }
  /// The configuration as Raft has it.
  var confState: ConfState { inspect { $0.confState } }

  /// Reads the (running) core in place: it is never copied.
  private func inspect<R>(_ read: (inout EngineCore) -> R) -> R { read(&core!) }

  // The async workers' queues (cleared by a crash).
  enum AppendJob {
    case write(StorageWrite)
    case save(SnapshotSave)
  }
  enum ApplyWork {
    case apply(ApplyJob)
    case restore(RestoreJob)
  }
  enum InboxItem {
    case local(Message)
    case applied(ApplyOutcome)
  }
  /// Jobs for the append worker, not taken yet.
  private(set) var appendQueue: [AppendJob] = []
  /// Jobs for the apply worker, not taken yet.
  private(set) var applyQueue: [ApplyWork] = []
  /// What the run loop has yet to take, in order.
  private(set) var inbox: [InboxItem] = []

  private let raftConfig: (electionTick: Int, preVote: Bool, checkQuorum: Bool, maxSizePerMsg: UInt64)
  private let coreConfiguration: EngineCore.Configuration

  init(
    id: UInt64, mode: SimMode, preVote: Bool, checkQuorum: Bool, maxSizePerMsg: UInt64, snapshotEvery: UInt64,
    retainEntries: UInt64, faults: EngineFaults, diskKind: SimDiskKind = .model, skipsSync: Bool = false,
    hooks: SimHooks
  ) {
    self.id = id
    self.mode = mode
    self.diskKind = diskKind
    disk = SimDisk(skipsSync: skipsSync)
    var o = WALOptions()
    o.io = .posix
    o.segmentBytes = 64 << 10
    o.recordBytesMax = 32 << 10
    o.segmentPreparation = .zeroFill
    o.spareInBackground = false
    o.injectSkipSync = skipsSync
    walOptions = o
    raftConfig = (10, preVote, checkQuorum, maxSizePerMsg)
    coreConfiguration = EngineCore.Configuration(
      id: id, readyHandling: mode.readyHandling, snapshotEntries: snapshotEvery,
      compactionRetainEntries: retainEntries, faults: faults)
    stage = AppendStage(nodeID: id)
    self.hooks = hooks
  }

  /// Whether the async workers have anything to do.
  var hasWork: Bool {
    !appendQueue.isEmpty || stage.pendingCount > 0 || !applyQueue.isEmpty || !inbox.isEmpty
  }

  /// Whether a sync would release anything.
  var hasUnsyncedWrites: Bool { stage.pendingCount > 0 }

  /// Starts (or restarts) from what the disk holds; a node with an empty disk and `bootstrap`
  /// peers starts a new cluster, one with none waits to be added.
  func start(bootstrap peers: [UInt64], seed: UInt64) throws {
    precondition(!up, "SimNode.start on a running node")
    let storage: any Storage
    let snapshot: Snapshot
    let empty: Bool
    switch diskKind {
    case .model:
      let memory = MemoryStorage()
      if !disk.snapshot.isEmpty { try memory.applySnapshot(disk.snapshot) }
      try memory.setHardState(disk.recoveredHardState)
      try memory.append(disk.entries)
      log = SimLog(disk: disk, storage: memory, crashesBeforeSync: hooks.crashesBeforeSync)
      storage = memory
      snapshot = disk.snapshot
      empty = disk.hardState.isEmpty && disk.entries.isEmpty && disk.snapshot.isEmpty
    case .wal:
      // Recovery is the WAL's own: a log it refuses is a violation (the caller reports it).
      let wal = try WAL(directory: "/raft/\(id)", options: walOptions, logger: SilentLogger(), fileSystem: files)
      let walStorage = try WALStorage(wal: wal)
      log = SimWALLog(storage: walStorage, crashesBeforeSync: hooks.crashesBeforeSync)
      storage = walStorage
      snapshot = try walStorage.snapshot()
      let (hs, _) = try walStorage.initialState()
      let last = try walStorage.lastIndex()
      empty = hs.isEmpty && snapshot.isEmpty && last == 0
    }
    machine = SimKV(snapshot: snapshot) { [unowned self] gone in removedMembers.formUnion(gone) }
    applier = Applier(stateMachine: machine)
    var c = Config(id: id, electionTick: raftConfig.electionTick, heartbeatTick: 1, storage: storage)
    c.applied = snapshot.metadata.index
    c.asyncStorageWrites = mode == .async
    c.preVote = raftConfig.preVote
    c.checkQuorum = raftConfig.checkQuorum
    c.maxSizePerMsg = raftConfig.maxSizePerMsg
    c.maxInflightMsgs = 16
    c.randomSeed = seed
    c.logger = SilentLogger()
    let raw = try RawNode(config: c)
    if empty && !peers.isEmpty {
      try raw.bootstrap(peers.map { Peer(id: $0) })
    }
    let (hs, cs) = try storage.initialState()
    core = EngineCore(
      configuration: coreConfiguration, rawNode: raw, hardState: hs, confState: cs,
      snapshotIndex: snapshot.metadata.index)
    stage = AppendStage(nodeID: id)
    up = true
  }

  /// The machine dies: everything in memory is gone, the disk keeps what `SimDisk.crash` (or
  /// the fault-injecting file system's power cut) lets it.
  func crash(_ rng: inout SimRandom) {
    switch diskKind {
    case .model: disk.crash(&rng)
    case .wal: files = files.powerCut(seed: rng.next()).0
    }
    up = false
    core = nil
    forwardTarget = nil
    log = nil
    machine = nil
    applier = nil
    appendQueue = []
    applyQueue = []
    inbox = []
    actions = []
  }

  // MARK: Events (the run loop)

  func tick() { core!.tick() }
  func hasReady() -> Bool { core!.hasReady() }

  /// Steps a message from the network.
  func step(_ m: Message, now: UInt64) throws {
    core!.stepFromPeer(m)
    try perform(now: now)
  }

  func reportSnapshot(_ peer: UInt64, status: SnapshotStatus, now: UInt64) throws {
    core!.reportSnapshot(peer, status: status)
    try perform(now: now)
  }

  /// Hands a client's write to Raft on this node (a follower forwards it); returns whether Raft
  /// took it.
  func forward(_ data: [UInt8], now: UInt64) throws -> Bool {
    // As `Node.forward` does: to the leader the core published, without a turn of the core
    // (the target may be stale by then, as on a real node).
    if let target = forwardTarget {
      hooks.send([RawNode.forwardedProposal(data, from: id, to: target)])
      return true
    }
    let taken = SimBox(false)
    core!.forward(.data(data)) { error in taken.value = error == nil }
    try perform(now: now)
    return taken.value
  }

  /// Proposes a client's write on this node, tracked by the engine (only the leader takes it):
  /// `completion` gets its index once applied here, or why not (`.dropped`, `.notLeader`:
  /// never committed; `.outcomeUnknown`: it may be).
  func propose(_ data: [UInt8], now: UInt64, completion: @escaping EntryCompletion) throws {
    core!.propose(entry: Payload(data), completion: completion)
    try perform(now: now)
  }

  func proposeConfChange(_ cc: AnyConfChange, now: UInt64) throws {
    core!.proposeConfChange(cc, completion: { _ in }, nowNanoseconds: now)
    try perform(now: now)
  }

  func readIndex(_ context: [UInt8], now: UInt64, completion: @escaping ReadCompletion) throws {
    core!.readIndex(context: context, completion: completion)
    try perform(now: now)
  }

  /// Hands out one Ready (sync mode: performs it and advances). Throws `SimulatedCrash` when
  /// the machine dies before a sync: the caller crashes it.
  func processReady(now: UInt64) throws {
    core!.processReady(nowNanoseconds: now)
    try perform(now: now)
    if inspect({ $0.awaitsAdvance }) { core!.advance() }
  }

  /// Takes the next item waiting in the inbox.
  func stepInbox(now: UInt64) throws {
    switch inbox.removeFirst() {
    case .local(let m): core!.step(m)
    case .applied(let o): core!.applied(o)
    }
    try perform(now: now)
  }

  /// Performs the core's actions: sync mode at once, async mode into the workers' queues.
  private func perform(now: UInt64) throws {
    while true {
      core!.takeActions(into: &actions)
      if actions.isEmpty { return }
      let taken = actions
      actions.removeAll(keepingCapacity: true)
      for action in taken {
        switch action {
        case .write(let w):
          if mode == .sync { try Self.writeNow(w, to: log) } else { appendQueue.append(.write(w)) }
        case .send(let messages):
          hooks.send(messages)
        case .apply(let job):
          if mode == .sync { core!.applied(apply(job)) } else { applyQueue.append(.apply(job)) }
        case .restore(let job):
          if mode == .sync { core!.applied(applier.restore(job)) } else { applyQueue.append(.restore(job)) }
        case .saveSnapshot(let s):
          if mode == .sync {
            try log.save(s)
            s.answerSaved()
          } else {
            appendQueue.append(.save(s))
          }
        case .complete, .answerRead, .answerCompaction, .handOff, .reportStatus:
          action.answerCaller()
        case .leaderChanged, .answerDroppedForward, .forwardDropped:
          break
        case .forwardTargetChanged(let target):
          forwardTarget = target
        case .refusePeer(let peer, let type, let refusal):
          hooks.refused(self, peer, type, refusal)
        }
      }
    }
  }

  // MARK: The append worker (async)

  /// Performs the next append job: a write handed to the log (its responses wait for a sync),
  /// or a snapshot save (which syncs).
  func appendNext() throws {
    var local: [Message] = []
    var remote: [Message] = []
    switch appendQueue.removeFirst() {
    case .write(let w): try Self.write(w, stage: &stage, to: log, local: &local, remote: &remote)
    case .save(let s):
      try log.save(s)
      s.answerSaved()
    }
    try Self.release(stage: &stage, log: log, local: &local, remote: &remote)
    deliver(local, remote)
  }

  /// Syncs what was written and releases the responses of what became durable, in order.
  /// Throws `SimulatedCrash` when the machine dies first.
  func syncWritten() throws {
    try log.sync()
    var local: [Message] = []
    var remote: [Message] = []
    try Self.release(stage: &stage, log: log, local: &local, remote: &remote)
    deliver(local, remote)
  }

  private func deliver(_ local: [Message], _ remote: [Message]) {
    for m in local { inbox.append(.local(m)) }
    if !remote.isEmpty { hooks.send(remote) }
  }

  // MARK: The apply worker (async)

  /// Performs the next apply or restore job; its outcome goes to the inbox.
  func applyNext() {
    switch applyQueue.removeFirst() {
    case .apply(let job): inbox.append(.applied(apply(job)))
    case .restore(let job): inbox.append(.applied(applier.restore(job)))
    }
  }

  private func apply(_ job: ApplyJob) -> ApplyOutcome {
    hooks.applying(self, job.entries)
    return applier.apply(job, now: { 0 })
  }
}

extension SimNode {
  // The append stage's generic calls, on the node's log (the model's or the WAL's): explicit
  // openings of the existential.
  fileprivate static func writeNow(_ w: StorageWrite, to log: any EngineLog) throws {
    try AppendStage.writeNow(w, to: log)
  }

  fileprivate static func write(
    _ w: StorageWrite, stage: inout AppendStage, to log: any EngineLog, local: inout [Message],
    remote: inout [Message]
  ) throws {
    try stage.write(w, to: log, local: &local, remote: &remote)
  }

  fileprivate static func release(
    stage: inout AppendStage, log: any EngineLog, local: inout [Message], remote: inout [Message]
  ) throws {
    try stage.release(durableThrough: log.durableSequence, log: log, local: &local, remote: &remote)
  }
}

/// A value a `@Sendable` completion may set: the simulation runs on one thread.
final class SimBox<Value>: @unchecked Sendable {
  var value: Value
  init(_ value: Value) { self.value = value }
}
