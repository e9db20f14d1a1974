import Raft
import RaftEngine

#if canImport(Glibc)
  import Glibc
#endif

/// What one simulation run is made of.
public struct SimulationOptions: Sendable {
  public var seed: UInt64
  /// Voters of the initial cluster (3 or 5); one more node waits as a spare, to be added.
  public var nodes: Int
  /// Steps with faults and client load, before the cluster is left to settle.
  public var steps: Int
  public var mode: SimMode
  /// Plants `EngineFaults.acknowledgeBeforeSync` in every node's core: writes are acknowledged
  /// before they are durable (a bug the checks must catch).
  public var acknowledgeBeforeSync = false
  /// Plants `EngineFaults.staleReads` in every node's core: read index requests are answered
  /// with the local applied index, without asking the leader (a bug the checks must catch).
  public var staleReads = false
  /// What each node's disk is: the model (fast) or the real WAL over the fault-injecting file
  /// system.
  public var disk: SimDiskKind = .model
  /// Injects a bug on purpose: writes are acknowledged as durable without their sync (the
  /// model's, or the WAL's `injectSkipSync`), so a crash can lose acknowledged writes.
  public var skipSync = false
  /// Messages a hostile peer sends into the nodes' cores during the faulty steps, spread over
  /// them. With any, the checks that assume honest peers are off; what is checked is that no
  /// node traps or stops, and that once the hostile peer is gone the cluster elects a leader and
  /// commits a write on a majority (no wedge). Messages that pass every check and speak with a
  /// member's authority (a leader's entries or commit index at the current term, a granted
  /// vote, an acknowledgement) are left out: they are valid Raft, which only authenticating
  /// the peer stops, and with them a peer can make a node commit what the cluster did not.
  public var hostile: [HostileMessage] = []

  public init(seed: UInt64, nodes: Int = 3, steps: Int = 3_000, mode: SimMode = .async) {
    self.seed = seed
    self.nodes = nodes
    self.steps = steps
    self.mode = mode
  }

  /// The command line that replays this run.
  public var replay: String {
    "raft-sim --seed \(seed) --nodes \(nodes) --steps \(steps) --mode \(mode.rawValue)"
      + (disk == .model ? "" : " --disk \(disk.rawValue)") + (skipSync ? " --inject-skip-sync" : "")
      + (acknowledgeBeforeSync ? " --inject-ack-before-sync" : "") + (staleReads ? " --inject-stale-reads" : "")
  }
}

/// What a run found.
public struct SimulationResult: Sendable {
  /// The first broken invariant, with the step it broke at (nil: none).
  public var violation: String?
  public var steps = 0
  /// Client operations in the history, and how many writes were acknowledged.
  public var operations = 0
  public var acknowledgedWrites = 0
  /// Writes the engine answered as never committed (each checked to be absent from the log).
  public var notCommittedWrites = 0
  public var crashes = 0
  public var elections = 0
  public var snapshotsSent = 0
  /// Hostile messages sent, and how many of them the cores refused.
  public var hostileSent = 0
  public var hostileRefused = 0
  /// Hostile messages left out as valid Raft only a member may send (`isForgedAuthority`).
  public var hostileForgeriesLeftOut = 0
}

/// (Every iteration over a dictionary goes in sorted order: Swift seeds its hashing per process,
/// and a replay must not depend on it. It runs on one thread; it is `Sendable` only so that the
/// engine's `@Sendable` completions can report back to it.)
///
/// A deterministic, seeded simulation of a Raft cluster: the engine's real core (`EngineCore`,
/// with the engine's `AppendStage` and `Applier`) on every node (`SimNode`), a network that drops, delays, reorders, duplicates and partitions
/// (`SimNetwork`), disks that lose what was not synced (`SimDisk`), and clients that write, read
/// linearizably (ReadIndex) and change the membership. Everything it does comes from the seed, so
/// a failing seed replays exactly.
///
/// Checked after every step: at most one leader per term; the log matching property (every 25
/// steps, over every pair of logs); leader completeness (a new leader holds every entry
/// committed in an earlier term); no two nodes apply different entries at one index. At the end,
/// after the faults stop and the cluster settles: every member applied the same state, every
/// acknowledged write is in it, and the client history is linearizable.
public final class Simulation: @unchecked Sendable {
  let options: SimulationOptions
  var rng: SimRandom
  var nodes: [UInt64: SimNode] = [:]
  let network: SimNetwork
  var step = 0
  var result = SimulationResult()

  // Fault settings, drawn from the seed.
  let crashRate: Double
  let crashMidWriteRate: Double
  let partitionRate: Double
  let clientRate: Double

  // What the checks know.
  /// The leader of each term seen so far.
  var leaders: [UInt64: UInt64] = [:]
  /// Every applied entry, by index (applied means committed): (term, type, data).
  var appliedEntries: [UInt64: Entry] = [:]
  /// For committed indexes: the lowest term of a leader seen committing it.
  var commitTerm: [UInt64: UInt64] = [:]
  var committedThrough: UInt64 = 0
  /// Nodes down, with the step they restart at.
  var downUntil: [UInt64: Int] = [:]
  let spare: UInt64

  // Clients.
  var history: [ClientOperation] = []
  var clock: UInt64 = 0
  var nextOpID: UInt64 = 1
  /// Puts waiting for their node to apply them: op id -> (history index, node, step of the
  /// deadline).
  var pendingPuts: [UInt64: (op: Int, node: UInt64, deadline: Int)] = [:]
  /// Reads waiting: context -> (history index, node, read index once known, deadline).
  var pendingReads: [UInt64: (op: Int, node: UInt64, index: UInt64?, deadline: Int)] = [:]
  /// The index each acknowledged write was applied at.
  var acknowledged: [UInt64: UInt64] = [:]
  /// Writes the engine answered as never committed (`.dropped`, `.notLeader`, `.busy`,
  /// `.stopped`), with the answer: none may ever be applied.
  var notCommitted: [UInt64: String] = [:]
  let clients = 4
  /// `RAFT_SIM_TRACE=1`: print snapshot sends and reports, and dropped reads (for replays).
  let trace = getenv("RAFT_SIM_TRACE") != nil
  let keys: UInt64 = 3

  public init(_ options: SimulationOptions) {
    precondition(options.nodes >= 1, "a cluster needs a node")
    self.options = options
    rng = SimRandom(seed: options.seed)
    network = SimNetwork(
      dropRate: rng.pick([0, 0.01, 0.05, 0.1]), duplicateRate: rng.pick([0, 0.01, 0.03]),
      maxDelay: rng.pick([1, 2, 5, 10]))
    crashRate = rng.pick([0, 0.001, 0.003])
    crashMidWriteRate = rng.pick([0, 0.01])
    partitionRate = rng.pick([0, 0.002, 0.005])
    clientRate = rng.pick([0.1, 0.3])
    let preVote = rng.chance(0.7)
    let checkQuorum = rng.chance(0.7)
    let snapshotEvery = UInt64(rng.pick([0, 20, 50]))
    spare = UInt64(options.nodes + 1)
    let faults = EngineFaults(
      acknowledgeBeforeSync: options.acknowledgeBeforeSync, staleReads: options.staleReads)
    for id in 1...spare {
      let hooks = SimHooks(
        send: { [unowned self] in send($0) },
        applying: { [unowned self] in applying($0, $1) },
        crashesBeforeSync: { [unowned self] in faulty && rng.chance(crashMidWriteRate) },
        refused: { [unowned self] n, peer, type, refusal in
          if sendingHostile {
            result.hostileRefused += 1
            return
          }
          // Every message an honest node sends must pass, however late or duplicated.
          if options.hostile.isEmpty {
            pendingViolation =
              pendingViolation ?? "node \(n.id) refused an honest \(type) from \(peer): \(refusal.reason)"
          }
        })
      nodes[id] = SimNode(
        id: id, mode: options.mode, preVote: preVote, checkQuorum: checkQuorum,
        maxSizePerMsg: UInt64(rng.pick([256, 4096])), snapshotEvery: snapshotEvery, retainEntries: 5, faults: faults,
        diskKind: options.disk, skipsSync: options.skipSync, hooks: hooks)
    }
  }

  var voters: [UInt64] { (1...UInt64(options.nodes)).map { $0 } }

  /// Runs to the end; the first violation stops it.
  public func run() -> SimulationResult {
    do {
      for id in nodes.keys.sorted() {
        try nodes[id]!.start(bootstrap: id == spare ? [] : voters, seed: rng.next())
      }
      for _ in 0..<options.steps {
        try runStep(faults: true)
        if result.violation != nil { return finish() }
      }
      if options.hostile.isEmpty { try settle() } else { try settleAfterHostility() }
    } catch let v as Violation {
      result.violation = "step \(step): \(v.description)"
    } catch {
      result.violation = "step \(step): unexpected error \(error)"
    }
    return finish()
  }

  private func finish() -> SimulationResult {
    result.steps = step
    result.operations = history.count
    result.acknowledgedWrites = acknowledged.count
    result.notCommittedWrites = notCommitted.count
    return result
  }

  struct Violation: Error, CustomStringConvertible {
    var description: String
  }

  func violation(_ what: String) -> Violation { Violation(description: what) }

  // MARK: One step

  /// Whether faults are injected now (off while the cluster settles at the end).
  private var faulty = true

  func runStep(faults: Bool) throws {
    faulty = faults
    step += 1
    clock += 1
    // The network delivers what is due. A snapshot's sender learns how it went, as the TCP
    // transport reports it (finish once the receiver has it, failure when it was lost).
    for m in network.due(at: step, &rng) {
      guard let n = nodes[m.to], n.up, !n.removedMembers.contains(m.from) else {
        if m.type == .msgSnap { try reportSnapshot(m, .failure) }
        continue
      }
      try guarded(n) { try n.step(m, now: clock) }
      if m.type == .msgSnap { try reportSnapshot(m, .finish) }
    }
    for m in network.takeLostSnapshots() { try reportSnapshot(m, .failure) }
    for id in nodes.keys.sorted() where rng.chance(0.9) {
      try act(on: nodes[id]!)
    }
    if faults { injectFaults() }
    for (id, until) in downUntil.sorted(by: { $0.key < $1.key }) where until <= step {
      downUntil[id] = nil
      try nodes[id]!.start(bootstrap: [], seed: rng.next())
    }
    if faults && rng.chance(clientRate) { try clientOperation() }
    if faults && !options.hostile.isEmpty { try sendHostile() }
    expireOperations()
    for id in nodes.keys.sorted() {
      if let n = nodes[id], n.up, let why = n.coreFailure { throw violation("node \(id) stopped: \(why)") }
    }
    guard options.hostile.isEmpty else {
      pendingViolation = nil
      return
    }
    try checkLeaders()
    if step % 25 == 0 { try checkLogMatching() }
  }

  // MARK: A hostile peer

  /// Whether the message being stepped is a hostile one (its refusal is expected).
  var sendingHostile = false

  /// Sends the next hostile message when its step has come (they are spread evenly over the
  /// faulty steps).
  private func sendHostile() throws {
    let k = result.hostileSent
    guard k < options.hostile.count, step >= k * max(1, options.steps / options.hostile.count) else { return }
    let spec = options.hostile[k]
    result.hostileSent += 1
    let up = nodes.keys.sorted().filter { nodes[$0]!.up }
    guard !up.isEmpty else { return }
    let n = nodes[up[Int(spec.bytes[0]) % up.count]]!
    let aim = n.aim
    let m = spec.message(to: n.id, term: aim.term, lastIndex: aim.lastIndex, commit: aim.commit, voters: aim.voters)
    if Self.isForgedAuthority(m, targetTerm: aim.term),
      n.raw.refusal(ofPeerMessage: m, limits: PeerMessageLimits()) == nil
    {
      // Valid Raft that only a member may send (TLS stops the rest): it can break safety, and
      // so liveness, in ways no check on the message can see.
      result.hostileForgeriesLeftOut += 1
      return
    }
    sendingHostile = true
    defer { sendingHostile = false }
    try guarded(n) { try n.step(m, now: clock) }
  }

  /// Whether `m`, passing every check, would speak with a member's authority: a leader's
  /// message at the target's term or above (entries, a snapshot, a commit index), a granted
  /// vote, an acknowledgement of entries. Forged, these can make a node commit or elect what
  /// the cluster did not; only authenticating the peer (TLS) stops them.
  static func isForgedAuthority(_ m: Message, targetTerm: UInt64) -> Bool {
    switch m.type {
    case .msgApp, .msgSnap, .msgHeartbeat: return m.term >= targetTerm
    case .msgVoteResp, .msgPreVoteResp, .msgAppResp: return !m.reject
    default: return false
    }
  }

  /// Once the hostile peer is gone (and the faults stop): the cluster must elect a leader and
  /// commit a write on a majority of its voters.
  private func settleAfterHostility() throws {
    network.heal()
    network.stopFaults()
    for id in downUntil.keys { downUntil[id] = step }
    for _ in 0..<20 {
      // A leader that is a voter of its own configuration (a removed one takes no proposals,
      // and its messages are refused: the others elect without it).
      var leader: SimNode?
      for _ in 0..<2_000 {
        leader = nodes.keys.sorted().compactMap { nodes[$0] }
          .filter { $0.up && $0.raw.raft.state == .leader && $0.confState.voters.contains($0.id) }
          .max { $0.raw.raft.term < $1.raw.raft.term }
        if leader != nil { break }
        try runStep(faults: false)
      }
      guard let leader else { break }
      let opID = nextOpID
      nextOpID += 1
      var taken = false
      try guarded(leader) {
        taken = try leader.forward(SimCommand(opID: opID, key: 0, value: opID).encoded, now: clock)
      }
      for _ in 0..<(taken ? 600 : 50) {
        try runStep(faults: false)
        let voters = leader.confState.voters
        let applied = voters.filter { nodes[$0]?.up == true && nodes[$0]!.hasApplied(op: opID) }
        if applied.count * 2 > voters.count { return }
      }
    }
    throw violation("wedged: the cluster did not commit a write once the hostile peer was gone: \(describeCluster())")
  }

  /// Lets node `n` do one or two things: tick, handle a Ready, run its workers' next job.
  private func act(on n: SimNode) throws {
    guard n.up else { return }
    if rng.chance(0.15) { n.tick() }
    if n.hasReady() && rng.chance(0.7) { try guarded(n) { try n.processReady(now: clock) } }
    guard n.up, n.mode == .async else { return }
    if !n.appendQueue.isEmpty && rng.chance(0.5) { try guarded(n) { try n.appendNext() } }
    if n.hasUnsyncedWrites && rng.chance(0.35) { try guarded(n) { try n.syncWritten() } }
    if !n.applyQueue.isEmpty && rng.chance(0.5) { n.applyNext() }
    if !n.inbox.isEmpty && rng.chance(0.6) { try guarded(n) { try n.stepInbox(now: clock) } }
  }

  /// Runs `body` on node `n`; when the machine dies before a sync (`SimulatedCrash`), crashes it.
  private func guarded(_ n: SimNode, _ body: () throws -> Void) throws {
    do {
      try body()
    } catch is SimulatedCrash {
      n.crash(&rng)
      crashed(n)
    }
  }

  private func reportSnapshot(_ m: Message, _ status: SnapshotStatus) throws {
    if trace { print("step \(step): snapshot \(m.from)->\(m.to) at \(m.snapshot!.metadata.index) \(status)") }
    guard let sender = nodes[m.from], sender.up else { return }
    try guarded(sender) { try sender.reportSnapshot(m.to, status: status, now: clock) }
  }

  private func send(_ messages: [Message]) {
    for m in messages {
      if m.type == .msgSnap {
        result.snapshotsSent += 1
        if trace {
          print("step \(step): send snapshot \(m.from)->\(m.to) at \(m.snapshot!.metadata.index) term \(m.term)")
        }
      }
      network.send(m, at: step, &rng)
    }
  }

  // MARK: Faults

  private func injectFaults() {
    if rng.chance(crashRate) {
      let up = nodes.values.filter(\.up).map(\.id).sorted()
      if !up.isEmpty {
        let n = nodes[rng.pick(up)]!
        n.crash(&rng)
        crashed(n)
      }
    }
    if rng.chance(partitionRate) {
      if network.isPartitioned {
        network.heal()
      } else {
        var side: Set<UInt64> = []
        for id in nodes.keys.sorted() where rng.chance(0.5) { side.insert(id) }
        network.partition(side)
      }
    }
  }

  /// Bookkeeping for a node that just crashed: its clients lose their answers.
  private func crashed(_ n: SimNode) {
    result.crashes += 1
    downUntil[n.id] = step + rng.within(5...60)
    for (opID, p) in pendingPuts where p.node == n.id {
      pendingPuts[opID] = nil  // the outcome stays unknown
    }
    for (ctx, r) in pendingReads.sorted(by: { $0.key < $1.key }) where r.node == n.id { dropRead(ctx, r.op) }
  }

  // MARK: Clients

  private func clientOperation() throws {
    let busy = Set(pendingPuts.values.map { history[$0.op].client } + pendingReads.values.map { history[$0.op].client })
    let idle = (0..<clients).filter { !busy.contains($0) }
    let up = nodes.values.filter(\.up).map(\.id).sorted()
    guard !idle.isEmpty, !up.isEmpty else { return }
    let client = rng.pick(idle)
    let n = nodes[rng.pick(up)]!
    let key = UInt64(rng.below(Int(keys)))
    switch rng.below(10) {
    case 0..<5:
      let opID = nextOpID
      nextOpID += 1
      let data = SimCommand(opID: opID, key: key, value: opID).encoded
      var taken = false
      if n.raw.raft.state == .leader {
        // On the leader the engine tracks it: an answer that it was not committed must hold.
        taken = true
        try guarded(n) {
          try n.propose(data, now: clock) { [self] result in
            if case .failure(let e) = result, ReplicatedLogError(e).isNotCommitted { notCommitted[opID] = "\(e)" }
          }
        }
      } else {
        // On a follower Raft forwards it to the leader (as raftkv does).
        try guarded(n) { taken = try n.forward(data, now: clock) }
      }
      guard taken else { return }  // refused at once (or the node died): it never happened
      clock += 1
      history.append(ClientOperation(client: client, key: key, kind: .put(opID), invoked: clock, returned: nil))
      pendingPuts[opID] = (history.count - 1, n.id, step + 400)
    case 5..<9:
      try read(key, client: client, on: n, deadline: step + 400)
    default:
      try changeMembership()
    }
  }

  func read(_ key: UInt64, client: Int, on n: SimNode, deadline: Int) throws {
    let ctx = nextOpID
    nextOpID += 1
    clock += 1
    history.append(ClientOperation(client: client, key: key, kind: .get(nil), invoked: clock, returned: nil))
    pendingReads[ctx] = (history.count - 1, n.id, nil, deadline)
    let node = n.id
    try guarded(n) {
      try n.readIndex(withUnsafeBytes(of: ctx.littleEndian) { Array($0) }, now: clock) { [unowned self] result in
        readAnswered(ctx, node: node, result)
      }
    }
  }

  /// Adds the spare as a learner, promotes it, or removes a voter (keeping at least as many
  /// voters as the cluster started with), on the leader. A removed node is never added back.
  private func changeMembership() throws {
    guard let leader = currentLeader else { return }
    let cs = leader.confState
    let change: ConfChangeSingle
    if cs.learners.contains(spare) {
      change = ConfChangeSingle(type: .addNode, nodeID: spare)
    } else if !cs.voters.contains(spare) {
      // A removed member's id is never used again (etcd refuses it too): its old state could
      // not be told from a fresh one.
      if leader.removedMembers.contains(spare) { return }
      change = ConfChangeSingle(type: .addLearnerNode, nodeID: spare)
    } else if cs.voters.count > options.nodes {
      change = ConfChangeSingle(type: .removeNode, nodeID: rng.pick(cs.voters.sorted()))
    } else {
      return
    }
    try guarded(leader) { try leader.proposeConfChange(.v2(ConfChangeV2(changes: [change])), now: clock) }
  }

  /// A read's answer from node `node`'s engine: the read then waits for that index to apply on
  /// the node; a failed one (lost with a leader change) has no effect.
  private func readAnswered(_ ctx: UInt64, node: UInt64, _ result: Result<UInt64, EngineError>) {
    guard let r = pendingReads[ctx], r.node == node, r.index == nil else { return }
    switch result {
    case .success(let index): pendingReads[ctx]!.index = index
    case .failure: dropRead(ctx, r.op)
    }
  }

  private func dropRead(_ ctx: UInt64, _ op: Int) {
    if trace { print("step \(step): drop read \(ctx) op \(op) client \(history[op].client)") }
    pendingReads[ctx] = nil
    history[op].returned = UInt64.max  // marked for removal (a read without an answer has no effect)
  }

  private func expireOperations() {
    for (opID, p) in pendingPuts where p.deadline <= step { pendingPuts[opID] = nil }
    for (ctx, r) in pendingReads.sorted(by: { $0.key < $1.key }) where r.deadline <= step {
      dropRead(ctx, r.op)
    }
    for (ctx, r) in pendingReads.sorted(by: { $0.key < $1.key }) {
      guard let index = r.index, let n = nodes[r.node], n.up, n.applied >= index else { continue }
      clock += 1
      let key = history[r.op].key
      history[r.op].kind = .get(n.kv[key])
      history[r.op].returned = clock
      pendingReads[ctx] = nil
    }
  }

  // MARK: What each applied entry tells

  /// Node `n` is about to apply `entries`: each must come right after the last one it applied.
  func applying(_ n: SimNode, _ entries: [Entry]) {
    var expected = n.applied + 1
    for e in entries {
      // The engine never hands out an entry twice or with a gap; the simulation checks it.
      guard e.index == expected else {
        pendingViolation = pendingViolation ?? "node \(n.id) was handed entry \(e.index) to apply after \(expected - 1)"
        return
      }
      expected += 1
      if trace && e.type != .normal, let cc = try? e.decodedConfChange() {
        print("step \(step): node \(n.id) applies conf change at \(e.index) term \(e.term): \(cc.asV2.changes)")
      }
      applied(n, e)
    }
  }

  /// Node `n` applied `e`: no other entry may ever be applied at that index, and a client's
  /// write completes when the node it went to applies it.
  func applied(_ n: SimNode, _ e: Entry) {
    if let known = appliedEntries[e.index] {
      if known != e {
        pendingViolation =
          pendingViolation
          ?? "node \(n.id) applied \(describe(e)) at index \(e.index) where \(describe(known)) was applied"
      }
    } else {
      appliedEntries[e.index] = e
    }
    guard e.type == .normal, let c = SimCommand(e.data), let p = pendingPuts[c.opID], p.node == n.id else { return }
    pendingPuts[c.opID] = nil
    clock += 1
    history[p.op].returned = clock
    acknowledged[c.opID] = e.index
  }

  /// A violation found inside a callback, raised by the next check.
  var pendingViolation: String?

  func describe(_ e: Entry) -> String {
    if let c = SimCommand(e.data) { return "[term \(e.term) put k\(c.key)=\(c.value)]" }
    return "[term \(e.term) \(e.type) \(e.data.count) bytes]"
  }

  // MARK: Checks

  /// At most one leader per term; a new leader holds every entry committed in an earlier term;
  /// the commit terms of the indexes leaders commit.
  private func checkLeaders() throws {
    if let v = pendingViolation { throw violation(v) }
    for id in nodes.keys.sorted() {
      let n = nodes[id]!
      guard n.up else { continue }
      let raft = n.raw.raft
      guard raft.state == .leader else { continue }
      let term = raft.term
      if let other = leaders[term] {
        if other != id { throw violation("two leaders in term \(term): \(other) and \(id)") }
      } else {
        leaders[term] = id
        result.elections += 1
        try checkCompleteness(n, term: term)
      }
      let commit = raft.raftLog.committed
      if commit > committedThrough {
        for i in (committedThrough + 1)...commit { commitTerm[i] = term }
        committedThrough = commit
      }
    }
  }

  private func checkCompleteness(_ n: SimNode, term: UInt64) throws {
    let log = n.raw.raft.raftLog
    let first = log.firstIndex()
    guard committedThrough >= first else { return }
    for i in first...committedThrough where (commitTerm[i] ?? .max) < term {
      guard let expected = appliedEntries[i] else { continue }
      let t = try? log.term(i)
      if t != expected.term {
        throw violation(
          "leader completeness: node \(n.id) leads term \(term) without the entry at \(i) (term \(expected.term)) "
            + "committed in term \(commitTerm[i]!); it has term \(t.map(String.init) ?? "none")")
      }
    }
  }

  /// The log matching property over every pair of running nodes: where two logs have an entry of
  /// the same term at an index, they are identical up to there.
  func checkLogMatching() throws {
    let logs = nodes.keys.sorted().compactMap { id -> (UInt64, [Entry])? in
      guard let n = nodes[id], n.up else { return nil }
      return (id, n.raw.raft.raftLog.allEntries())
    }
    for a in logs.indices {
      for b in logs.indices where b > a {
        let (x, y) = (logs[a].1, logs[b].1)
        guard let xf = x.first, let yf = y.first else { continue }
        let lo = max(xf.index, yf.index)
        let hi = min(xf.index + UInt64(x.count), yf.index + UInt64(y.count))
        guard lo < hi else { continue }
        var matchedAbove = false
        for i in stride(from: hi - 1, through: lo, by: -1) {
          let ex = x[Int(i - xf.index)]
          let ey = y[Int(i - yf.index)]
          if ex.term == ey.term { matchedAbove = true }
          if matchedAbove && ex != ey {
            throw violation(
              "log matching: nodes \(logs[a].0) and \(logs[b].0) agree on a later term but differ at \(i): "
                + "\(describe(ex)) vs \(describe(ey))")
          }
        }
      }
    }
  }

  // MARK: The end

  /// Stops the faults, restarts every node, and runs until every member has applied the same
  /// entries; then a final read of every key, and the end-of-run checks.
  private func settle() throws {
    network.heal()
    network.stopFaults()
    for id in downUntil.keys { downUntil[id] = step }
    var quiet = 0
    for _ in 0..<6_000 {
      try runStep(faults: false)
      quiet = converged() ? quiet + 1 : 0
      if quiet >= 30 { break }
    }
    guard converged() else {
      throw violation("the cluster did not converge once the faults stopped: \(describeCluster())")
    }
    // Final reads: every acknowledged write must be visible, linearizably. A read lost with a
    // leader change is retried on the new leader, as a client would after its timeout.
    var unread = Set(0..<keys)
    for _ in 0..<10 where !unread.isEmpty {
      for _ in 0..<2_000 where currentLeader == nil { try runStep(faults: false) }
      let leader = try leaderNode()
      var ops: [UInt64: Int] = [:]
      for key in unread.sorted() {
        try read(key, client: clients + Int(key), on: leader, deadline: step + 300)
        ops[key] = history.count - 1
      }
      for _ in 0..<400 where !pendingReads.isEmpty { try runStep(faults: false) }
      for (key, op) in ops where history[op].returned != .max { unread.remove(key) }
    }
    guard unread.isEmpty else { throw violation("the final reads did not complete: \(describeCluster())") }
    try checkLogMatching()
    for _ in 0..<2_000 where currentLeader == nil { try runStep(faults: false) }
    try checkEnd(try leaderNode())
  }

  /// The leader of the highest term (a removed node may go on leading a stale term alone).
  private var currentLeader: SimNode? {
    nodes.keys.sorted().compactMap { nodes[$0] }.filter { $0.up && $0.raw.raft.state == .leader }
      .max { $0.raw.raft.term < $1.raw.raft.term }
  }

  /// Each node's role, term, commit and applied index, and the leader's view of the others.
  private func describeCluster() -> String {
    let states = nodes.keys.sorted().map { id -> String in
      let n = nodes[id]!
      guard n.up else { return "\(id): down" }
      let st = n.raw.basicStatus()
      let removed = n.removedMembers.isEmpty ? "" : " removed \(n.removedMembers.sorted())"
      return
        "\(id): \(st.softState.raftState) term \(st.hardState.term) commit \(st.hardState.commit) applied \(n.applied)"
        + removed
    }
    var progress = ""
    if let l = currentLeader {
      let log = l.raw.raft.raftLog
      progress = "; leader's committed entry has term \((try? log.term(log.committed)) ?? 0)"
      progress += "; leader \(l.id) config \(l.confState.voters)/\(l.confState.learners), progress: "
      progress += l.raw.status().progress.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(
        separator: ", ")
    }
    return states.joined(separator: "; ") + progress
  }

  private func leaderNode() throws -> SimNode {
    guard let n = currentLeader else { throw violation("no leader at the end") }
    return n
  }

  /// Members: the nodes in the leader's configuration.
  private func members() -> [SimNode] {
    guard let leader = currentLeader else { return [] }
    let cs = leader.confState
    return Set(cs.voters + cs.learners).sorted().compactMap { nodes[$0] }
  }

  private func converged() -> Bool {
    let ms = members()
    guard let leader = currentLeader, !ms.isEmpty else { return false }
    let commit = leader.raw.raft.raftLog.committed
    guard leader.raw.raft.raftLog.lastIndex() == commit else { return false }
    // Heartbeats never stop, so the network is never empty: quiet means everyone applied all.
    return ms.allSatisfy { $0.up && $0.applied == commit && !$0.hasWork }
  }

  private func checkEnd(_ leader: SimNode) throws {
    let ms = members()
    for n in ms where n.kv != leader.kv {
      throw violation("node \(n.id) applied a different state than the leader \(leader.id) (\(n.kv) vs \(leader.kv))")
    }
    // The state every member must hold: the applied entries replayed in index order, each write
    // once. Every acknowledged write is in it, and its effect is what the members hold.
    var expected: [UInt64: UInt64] = [:]
    var seen: Set<UInt64> = []
    let last = appliedEntries.keys.max() ?? 0
    guard last == leader.applied, appliedEntries.count == Int(last) else {
      throw violation(
        "the applied entries are not 1...\(leader.applied) (\(appliedEntries.count) of them up to \(last))")
    }
    for i in UInt64(1)...max(last, 1) where last > 0 {
      if let c = SimCommand(appliedEntries[i]!.data), seen.insert(c.opID).inserted { expected[c.key] = c.value }
    }
    for (opID, index) in acknowledged.sorted(by: { $0.key < $1.key }) where !seen.contains(opID) {
      throw violation("the acknowledged write \(opID) (applied at \(index)) is not in the log")
    }
    for (opID, answer) in notCommitted.sorted(by: { $0.key < $1.key }) where seen.contains(opID) {
      throw violation("the write \(opID) was answered \(answer) (never committed), yet it is in the log")
    }
    for n in ms + [leader] where n.kv != expected {
      throw violation("node \(n.id) holds \(n.kv), not the replayed log's \(expected)")
    }
    let ops = history.filter { $0.returned != .max }
    if let (key, bad) = LinearizabilityChecker.check(ops) {
      throw violation(
        "the history of key \(key) is not linearizable:\n  " + bad.map(\.description).joined(separator: "\n  "))
    }
  }
}
