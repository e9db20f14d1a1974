import Raft

/// The engine core alone, on the caller's thread, in memory: a single voter that leads, an
/// `InMemoryLog` (durable at once) behind the engine's `AppendStage`, a state machine behind
/// the engine's `Applier`; every action is performed at once, in order. For benchmarks of the
/// core's CPU and allocation cost (`tools/bench`, `raft-bench core`) and tests.
///
/// One `proposeBatch` takes a batch from the proposal to its completion: through the Ready, the
/// write, its durable acknowledgement, the commit, the apply job and the completion.
public final class InMemoryEngine {
  /// A state machine that applies nothing.
  public final class Discard: StateMachine {
    public init() {}
    public func apply(index: UInt64, term: UInt64, data: Payload) {}
    public func restore(snapshot: Snapshot) {}
  }

  public private(set) var core: EngineCore
  private let log: InMemoryLog
  private var stage: AppendStage
  private let applier: Applier
  private var actions: [EngineCore.Action] = []
  private var local: [Message] = []
  private var remote: [Message] = []

  /// A single voter over `stateMachine`, elected before this returns.
  public init(readyHandling: NodeConfiguration.ReadyHandling, stateMachine: StateMachine = Discard()) throws {
    let storage = MemoryStorage()
    try storage.applySnapshot(
      Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1]), index: 1, term: 1)))
    var config = Config(id: 1, electionTick: 10, heartbeatTick: 1, storage: storage)
    config.applied = 1
    config.asyncStorageWrites = readyHandling == .async
    config.randomSeed = 1
    let raw = try RawNode(config: config)
    log = InMemoryLog(storage: storage)
    stage = AppendStage(nodeID: 1)
    applier = Applier(stateMachine: stateMachine)
    core = EngineCore(
      configuration: EngineCore.Configuration(
        id: 1, readyHandling: readyHandling, snapshotEntries: 0, compactionRetainEntries: 0),
      rawNode: raw, hardState: HardState(), confState: ConfState(voters: [1]), snapshotIndex: 1)
    core.campaign()
    try run()
    precondition(core.rawNode.isLeader, "InMemoryEngine: the single voter did not become leader")
  }

  /// Proposes `payloads` as one batch with `completion`, and runs until the core is idle (the
  /// completion has run by then).
  public func proposeBatch(_ payloads: [Payload], completion: @escaping ProposalCompletion) throws {
    core.propose(payloads, completion: completion)
    try run()
  }

  /// Performs the core's actions, and hands out Readys, until it has nothing left to do.
  public func run() throws {
    while true {
      if core.hasReady() { core.processReady(nowNanoseconds: 0) }
      core.takeActions(into: &actions)
      if actions.isEmpty { return }
      for action in actions { try perform(action) }
      actions.removeAll(keepingCapacity: true)
      if core.awaitsAdvance { core.advance() }
    }
  }

  private func perform(_ action: EngineCore.Action) throws {
    switch action {
    case .write(let w):
      if core.configuration.readyHandling == .sync {
        try AppendStage.writeNow(w, to: log)
        return
      }
      try stage.write(w, to: log, local: &local, remote: &remote)
      try stage.release(durableThrough: log.durableSequence, log: log, local: &local, remote: &remote)
      for m in local { core.step(m) }
      local.removeAll(keepingCapacity: true)
    case .apply(let job):
      core.applied(applier.apply(job, now: { 0 }))
    case .restore(let job):
      core.applied(applier.restore(job))
    case .saveSnapshot(let s):
      try log.save(s)
      s.answerSaved()
    case .complete, .answerRead, .answerCompaction, .handOff, .reportStatus:
      action.answerCaller()
    case .send, .leaderChanged, .forwardTargetChanged, .refusePeer, .answerDroppedForward, .forwardDropped:
      break
    }
  }
}
