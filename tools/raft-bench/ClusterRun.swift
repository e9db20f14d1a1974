import ArgumentParser
import Dispatch
import Histogram
import Raft
import RaftEngine
import RaftEngineOptions
import RaftKV
import RaftWAL
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// One configuration of the suite: a cluster, its clients, how long to measure.
struct RunPlan {
  var mode: NodeConfiguration.ReadyHandling
  var nodes: Int
  var clients: Int
  var payload: Int
  var knobs: EngineKnobs
  /// Measure for this long, or until `count` entries are done (whichever is given).
  var durationSeconds: Double
  var count: Int?
  var warmupSeconds: Double
  /// The sweep table this configuration belongs to (nil outside a sweep).
  var section: String? = nil
  /// One-way delay of every message, and its uniform jitter, in microseconds.
  var netDelayUs = 0
  var netJitterUs = 0
  var stateMachine = StateMachineChoice.null
  var keySpace = 100_000
  /// Applied entries between two compactions of every node's log (0: never).
  var compactEvery = 100_000
  /// Entries per propose call.
  var batch = 1
  /// Propose calls per second in total (0: closed loop, `clients` proposals in flight).
  var rate = 0

  var label: String {
    var s = "\(mode) \(nodes) node\(nodes == 1 ? "" : "s") "
    s += rate > 0 ? "\(grouped(Double(rate)))/s" : "\(clients) client\(clients == 1 ? "" : "s")"
    if batch > 1 { s += " x\(batch)" }
    if netDelayUs > 0 || netJitterUs > 0 { s += " +\(netDelayUs)us" }
    if stateMachine != .null { s += " \(stateMachine)" }
    return s
  }

  /// The floor's batch for this configuration: what one fsync carries at most when every client's
  /// proposal rides in it.
  var floorBatch: Int { rate > 0 ? batch : clients * batch }

  /// Whether `other` is the same configuration but for the Ready handling.
  func matches(_ other: RunPlan) -> Bool {
    nodes == other.nodes && clients == other.clients && section == other.section
      && knobs.batchMaxEntries == other.knobs.batchMaxEntries && knobs.batchLingerUs == other.knobs.batchLingerUs
      && netDelayUs == other.netDelayUs && netJitterUs == other.netJitterUs && stateMachine == other.stateMachine
      && batch == other.batch && rate == other.rate && payload == other.payload && compactEvery == other.compactEvery
  }
}

/// What one configuration measured.
struct RunOutcome {
  var plan: RunPlan
  /// Proposals acknowledged (committed and applied on the leader) in the measured window.
  var entries: UInt64
  var seconds: Double
  /// Proposal to acknowledgement, in nanoseconds.
  var latency: Histogram<UInt64>
  /// The leader's WAL in the measured window.
  var fsyncs: UInt64
  var walEntries: UInt64
  var cpu: CPUTime
  /// Propose calls that failed in the measured window (refused, dropped, busy).
  var failures: Int
  /// The leader's WAL batches, and its engine threads' wake-ups, in the measured window.
  var batches: UInt64
  var wakeups: UInt64
  /// The same, by thread: run loop, append worker, apply worker.
  var wakeupsByThread: Node.Wakeups
  /// Compactions of the leader's log over the whole run (`--compact-every`).
  var compactions: Int

  /// Wake-ups of the leader's engine threads per WAL batch.
  var wakeupsPerBatch: Double { batches > 0 ? Double(wakeups) / Double(batches) : 0 }

  /// CPU seconds (user + system, the whole process) per acknowledged entry, in microseconds.
  var cpuMicrosecondsPerEntry: Double { entries > 0 ? (cpu.user + cpu.system) / Double(entries) * 1e6 : 0 }

  var entriesPerSecond: Double { seconds > 0 ? Double(entries) / seconds : 0 }
  var bytesPerSecond: Double { entriesPerSecond * Double(plan.payload) }
  var fsyncsPerSecond: Double { seconds > 0 ? Double(fsyncs) / seconds : 0 }
  var entriesPerFsync: Double { fsyncs > 0 ? Double(walEntries) / Double(fsyncs) : 0 }
}

/// Latencies of acknowledgements in nanoseconds: 1 ns to 100 s, 3 significant digits.
func makeLatencyHistogram() -> Histogram<UInt64> {
  Histogram<UInt64>(highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
}

/// User and system CPU seconds of this process (`getrusage`).
struct CPUTime {
  var user: Double
  var system: Double

  static func now() -> CPUTime {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return CPUTime(
      user: Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6,
      system: Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6)
  }

  static func - (a: CPUTime, b: CPUTime) -> CPUTime { CPUTime(user: a.user - b.user, system: a.system - b.system) }
}

/// Applies nothing: the benchmark measures the write path.
final class NullStateMachine: StateMachine, Sendable {
  func apply(index: UInt64, term: UInt64, data: Payload) {}
  func restore(snapshot: Snapshot) {}
}

/// The benchmark's application: applies through `inner` and, every `every` applied entries, asks
/// its node to compact its log there (`Node.compact`, with an empty snapshot: the benchmark's
/// state needs none), as an application that snapshots its state does. So the log held in
/// memory stays bounded, as in a deployment, instead of growing through the whole run (which
/// measured the heap's growth: page faults and array copies, about 7% of sync mode's samples).
final class CompactingStateMachine: StateMachine, Sendable {
  let inner: StateMachine & Sendable
  let every: UInt64
  /// The node to compact (set once it exists; cleared when the run ends, which breaks the
  /// node -> machine -> node cycle).
  private let node = Mutex<Node?>(nil)
  /// The applied index from which the next compaction is asked for (the apply thread's).
  private let nextCompaction: Atomic<UInt64>
  /// Compactions the node completed.
  let compactions = Atomic<Int>(0)

  init(_ inner: StateMachine & Sendable, every: Int) {
    self.inner = inner
    self.every = UInt64(every)
    nextCompaction = Atomic(UInt64(every))
  }

  func attach(_ n: Node?) { node.withLock { $0 = n } }

  func apply(index: UInt64, term: UInt64, data: Payload) { inner.apply(index: index, term: term, data: data) }
  func restore(snapshot: Snapshot) { inner.restore(snapshot: snapshot) }
  func snapshotData() -> [UInt8]? { inner.snapshotData() }
  func applyConfChange(_ change: AnyConfChange, index: UInt64, term: UInt64) {
    inner.applyConfChange(change, index: index, term: term)
  }
  var appliesEmptyEntries: Bool { inner.appliesEmptyEntries }

  func applied(through index: UInt64) {
    inner.applied(through: index)
    guard every > 0, index >= nextCompaction.load(ordering: .relaxed) else { return }
    nextCompaction.store(index + every, ordering: .relaxed)
    node.withLock { $0 }?.compact(through: index) { [self] result in
      if case .success = result { compactions.add(1, ordering: .relaxed) }
    }
  }
}

/// Runs one configuration: an in-process cluster (in-memory transport, one WAL directory per
/// node under `root`), `clients` closed-loop clients on the leader, each keeping one proposal in
/// flight; a warm-up, then the measured window.
func runCluster(_ plan: RunPlan, root: String, progress: Progress) throws -> RunOutcome {
  let network = InMemoryNetwork()
  defer { network.shutdown() }
  if plan.netDelayUs > 0 { network.setDelay(UInt64(plan.netDelayUs) * 1000) }
  if plan.netJitterUs > 0 { network.setJitter(UInt64(plan.netJitterUs) * 1000) }
  let ids = (1...UInt64(plan.nodes)).map { $0 }
  var cluster: [UInt64: Node] = [:]
  var machines: [UInt64: CompactingStateMachine] = [:]
  defer {
    for n in cluster.values { n.stop() }
    for m in machines.values { m.attach(nil) }
  }
  for id in ids {
    var c = NodeConfiguration(id: id, peers: ids, directory: "\(root)/node-\(id)")
    c.readyHandling = plan.mode
    plan.knobs.configure(&c, payload: plan.payload)
    c.snapshotEntries = 0  // the benchmark measures the write path, not snapshots
    c.logger.logLevel = .warning
    let inner: StateMachine & Sendable =
      switch plan.stateMachine {
      case .null: NullStateMachine()
      case .kv: KVBenchmarkStateMachine(keySpace: plan.keySpace)
      }
    let machine = CompactingStateMachine(inner, every: plan.compactEvery)
    machines[id] = machine
    let node = try Node(configuration: c, stateMachine: machine, transport: network.transport(for: id))
    machine.attach(node)
    network.register(id, sink: node.sink)
    cluster[id] = node
    node.start()
  }
  // Node 1 campaigns (again while the bootstrap conf changes are still being applied); the
  // clients go to whichever node leads.
  var leader: Node?
  let electionDeadline = monotonicNanoseconds() + 10_000_000_000
  var nextCampaign: UInt64 = 0
  while leader == nil && monotonicNanoseconds() < electionDeadline {
    if let l = cluster[1]!.leader, let n = cluster[l], n.leader == l {
      leader = n
    } else {
      if monotonicNanoseconds() >= nextCampaign {
        cluster[1]!.campaign()
        nextCampaign = monotonicNanoseconds() + 300_000_000
      }
      usleep(1000)
    }
  }
  guard let leader else { throw BenchError("\(plan.label): no leader elected within 10 s") }

  let load = Load(leader: leader, plan: plan)
  if plan.rate > 0 {
    load.startOpenLoop()
  } else {
    for _ in 0..<plan.clients { load.closedLoopClient(monotonicNanoseconds()) }
  }

  progress.phase(plan.label + ": warming up")
  usleep(UInt32(plan.warmupSeconds * 1e6))
  let wal = leader.storage.wal
  let statsBefore = (wal.stats.syncs, wal.stats.entries, wal.stats.batches, leader.wakeups)
  let cpuBefore = CPUTime.now()
  load.shared.withLock { $0.measuring = true }
  let t0 = monotonicNanoseconds()
  let end = t0 + UInt64(plan.durationSeconds * 1e9)
  var lastReport = (at: t0, done: UInt64(0))
  while true {
    usleep(50_000)
    let now = monotonicNanoseconds()
    let done = load.shared.withLock { $0.done }
    if let count = plan.count {
      if done >= UInt64(count) { break }
    } else if now >= end {
      break
    }
    if now - lastReport.at >= 250_000_000 {
      let rate = Double(done - lastReport.done) / (Double(now - lastReport.at) / 1e9)
      let elapsed = Double(now - t0) / 1e9
      let of =
        plan.count.map { "\(grouped(Double(done)))/\(grouped(Double($0))) entries" }
        ?? "\(fixed(elapsed, 1))/\(fixed(plan.durationSeconds, 1)) s"
      progress.phase("\(plan.label): \(of), \(grouped(rate)) entries/s")
      lastReport = (now, done)
    }
  }
  let (entries, latency, failures, lastFailure) = load.shared.withLock { s in
    s.measuring = false
    return (s.done, s.latency, s.failuresMeasured, s.lastFailure)
  }
  let seconds = Double(monotonicNanoseconds() - t0) / 1e9
  let cpu = CPUTime.now() - cpuBefore
  let fsyncs = wal.stats.syncs - statsBefore.0
  let walEntries = wal.stats.entries - statsBefore.1
  let batches = wal.stats.batches - statsBefore.2
  let wakeupsAfter = leader.wakeups
  let byThread = Node.Wakeups(
    runLoop: wakeupsAfter.runLoop - statsBefore.3.runLoop,
    appendWorker: wakeupsAfter.appendWorker - statsBefore.3.appendWorker,
    applyWorker: wakeupsAfter.applyWorker - statsBefore.3.applyWorker)
  if !load.stop(timeoutSeconds: 30) {
    throw BenchError("\(plan.label): proposals still unanswered 30 s after the clients stopped")
  }
  if entries == 0 {
    throw BenchError(
      "\(plan.label): no proposal was acknowledged (\(failures) failed, last: \(String(describing: lastFailure)))")
  }
  return RunOutcome(
    plan: plan, entries: entries, seconds: seconds, latency: latency, fsyncs: fsyncs, walEntries: walEntries, cpu: cpu,
    failures: failures, batches: batches, wakeups: byThread.total, wakeupsByThread: byThread,
    compactions: machines[leader.id]?.compactions.load(ordering: .relaxed) ?? 0)
}

/// What the floor measured: one write + fdatasync of `entriesPerBatch` payloads at a time.
struct FloorOutcome {
  var payload: Int
  var entriesPerBatch: Int
  var fsync: WALOptions.Fsync
  var entries: UInt64
  var seconds: Double
  var fsyncs: UInt64
  /// One batch's write + sync, in nanoseconds.
  var latency: Histogram<UInt64>
  var cpu: CPUTime

  var entriesPerSecond: Double { seconds > 0 ? Double(entries) / seconds : 0 }
}

/// The raw floor on the same directory: pwritev + fdatasync (or what `--fsync` says) of one
/// batch of `entriesPerBatch` x `payload` bytes at a time, to a zero-filled file, no Raft, no
/// framing.
func runFloor(
  entriesPerBatch: Int, payload: Int, fsync: WALOptions.Fsync, seconds: Double, root: String, progress: Progress
) throws -> FloorOutcome {
  progress.phase("floor \(entriesPerBatch) x \(payload) B: preparing")
  let runner = try FloorRunner(
    directory: "\(root)/floor", bytes: max(entriesPerBatch * payload, 1), fileBytes: 64 << 20, mode: fsync)
  defer { runner.close() }
  runner.warmUp()
  progress.phase("floor \(entriesPerBatch) x \(payload) B: measuring")
  var samples = Samples()
  let cpuBefore = CPUTime.now()
  let turn = runner.turn(milliseconds: Int(seconds * 1000), entriesPerBatch: entriesPerBatch, into: &samples)
  let cpu = CPUTime.now() - cpuBefore
  var latency = makeLatencyHistogram()
  for v in samples.values { latency.record(v) }
  return FloorOutcome(
    payload: payload, entriesPerBatch: entriesPerBatch, fsync: fsync, entries: turn.entries, seconds: turn.seconds,
    fsyncs: turn.syncs, latency: latency, cpu: cpu)
}

/// A failed run, said plainly.
struct BenchError: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}

/// A fresh directory under `parent` (removed by the caller).
func makeScratchDirectory(under parent: String, prefix: String) throws -> String {
  var template = Array("\(parent)/\(prefix)-XXXXXX".utf8CString)
  guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
    throw ValidationError("cannot create a directory under \(parent): \(String(cString: strerror(errno)))")
  }
  return String(cString: made)
}
