import ArgumentParser
import Foundation
import RaftEngine
import RaftEngineOptions
import RaftWAL

/// What applies the benchmark's entries.
enum StateMachineChoice: String, ExpressibleByArgument, CaseIterable, Sendable {
  /// Nothing: the write path alone.
  case null
  /// RaftKV's store: each entry a PUT of a random key (`--key-space`) with the payload as value.
  case kv
}

/// `raft-bench` (the default subcommand): the write path through the engine, sync against async
/// Ready handling, against the disk's floor, all measured in one run.
struct RunBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run",
    abstract: "Sync vs async Ready handling on the write path, against the raw disk floor (the default).",
    discussion: """
      Each configuration starts an in-process cluster (in-memory transport; each node has its own \
      WAL directory under --dir), elects node 1, and runs closed-loop clients against it: each \
      client keeps one proposal in flight and proposes again when it is acknowledged (committed \
      and applied on the leader). Latency runs from the proposal to its acknowledgement. fsyncs \
      and entries per fsync are the leader's WAL; CPU seconds are the whole process's.

      With no options: sync and async, on 1 node and on 3 nodes with 256 clients, and on 1 node \
      with 1 client, after the floor for the same batch sizes (256 x and 1 x the payload, one \
      write + fdatasync each, on a zero-filled file in the same directory).
      """)

  @Option(help: "Ready handling to measure: sync, async or both.")
  var readyHandling = ReadyHandlingChoice.both
  @Option(help: "Cluster sizes, comma-separated (default: 1,3; with --sweep: 1).")
  var nodes: IntList?
  @Option(
    help:
      "Closed-loop client counts, comma-separated (default: 256, plus 1 on 1 node when --nodes and --clients are not given)."
  )
  var clients: IntList?
  @Option(help: "Entry payload in bytes.")
  var payload = 128
  @Option(help: "Measured seconds per configuration (default 5; with --sweep 2).")
  var duration: Double?
  @Option(help: "Measure until this many entries are acknowledged instead of for --duration.")
  var count: Int?
  @Option(help: "Seconds of load before measuring (default 1; with --sweep 0.5).")
  var warmup: Double?
  @Option(
    help:
      "Directory for the WALs and the floor's file (created when missing; a fresh subdirectory is made and removed).")
  var dir = "/tmp"
  @Option(help: "One-way delay of every message on the in-memory network, in microseconds (still ordered per pair).")
  var netDelayUs = 0
  @Option(help: "Uniform random jitter added to each message's delay, in microseconds.")
  var netJitterUs = 0
  @Option(help: "What applies the entries: null (nothing) or kv (RaftKV's store, a PUT of a random key per entry).")
  var stateMachine = StateMachineChoice.null
  @Option(help: "Keys the kv state machine draws from.")
  var keySpace = 100_000
  @Option(
    help:
      "Compact every node's log each this many applied entries, keeping 5,000 behind, as an application that snapshots does (0: never; the log in memory then grows through the run)."
  )
  var compactEvery = 100_000
  @Option(help: "Entries per propose call: a client proposes this many and waits for the whole batch.")
  var batch = 1
  @Option(
    help:
      "Open loop: this many propose calls per second in total (0: closed loop). Latency runs from each call's intended time."
  )
  var rate = 0
  @Flag(inversion: .prefixedNo, help: "Measure the raw write + fdatasync floor for the same batch sizes.")
  var floor = true
  @Flag(
    help:
      "Sweep clients, then --batch-max-entries, then --batch-linger-us, then --net-delay-us (on 3 nodes), one table each."
  )
  var sweep = false
  @Flag(help: "One JSON object per configuration on stdout (progress stays on stderr).")
  var json = false
  @OptionGroup(title: "Engine, WAL and Raft knobs")
  var knobs: EngineKnobs

  func validate() throws {
    if let nodes, let bad = nodes.values.first(where: { !(1...7).contains($0) }) {
      throw ValidationError("--nodes: \(bad) is not between 1 and 7")
    }
    if let clients, let bad = clients.values.first(where: { !(1...100_000).contains($0) }) {
      throw ValidationError("--clients: \(bad) is not between 1 and 100000")
    }
    guard (0...(1 << 20)).contains(payload) else { throw ValidationError("--payload must be between 0 and 1048576") }
    if let duration, !(duration > 0 && duration <= 3600) {
      throw ValidationError("--duration must be more than 0 and at most 3600 seconds")
    }
    if let warmup, !(warmup >= 0 && warmup <= 600) {
      throw ValidationError("--warmup must be between 0 and 600 seconds")
    }
    if let count {
      guard count >= 1 else { throw ValidationError("--count must be at least 1") }
      guard duration == nil else { throw ValidationError("give --duration or --count, not both") }
    }
    guard (0...10_000_000).contains(netDelayUs) else {
      throw ValidationError("--net-delay-us must be between 0 and 10000000")
    }
    guard (0...10_000_000).contains(netJitterUs) else {
      throw ValidationError("--net-jitter-us must be between 0 and 10000000")
    }
    guard (1...100_000_000).contains(keySpace) else {
      throw ValidationError("--key-space must be between 1 and 100000000")
    }
    guard (0...1_000_000_000).contains(compactEvery) else {
      throw ValidationError("--compact-every must be between 0 and 1000000000")
    }
    guard (1...65_536).contains(batch) else { throw ValidationError("--batch must be between 1 and 65536") }
    guard (0...100_000_000).contains(rate) else { throw ValidationError("--rate must be between 0 and 100000000") }
    do {
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    } catch {
      throw ValidationError("--dir \(dir) cannot be created: \(error.localizedDescription)")
    }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue,
      access(dir, W_OK) == 0
    else { throw ValidationError("--dir \(dir) is not a writable directory") }
  }

  /// One line of the report: a configuration or a floor.
  enum Row {
    case run(RunOutcome)
    case floor(FloorOutcome)
  }

  func run() throws {
    let plans = makePlans()
    let floorBatches = floor ? uniqued(plans.map(\.floorBatch)) : []
    let progress = Progress(steps: plans.count + floorBatches.count)
    let root = try makeScratchDirectory(under: dir, prefix: "raft-bench")
    defer { removeTree(root) }
    let report = Report(json: json, payload: payload)
    if !json {
      print(header())
      print(report.columns())
    }
    var floors: [Int: FloorOutcome] = [:]
    var outcomes: [RunOutcome] = []
    var section = ""
    var failures = 0
    for plan in plans {
      if floor && floors[plan.floorBatch] == nil {
        progress.next()
        let f = try runFloor(
          entriesPerBatch: plan.floorBatch, payload: payload, fsync: knobs.fsync,
          seconds: max(1, min(plan.durationSeconds, 3)), root: root, progress: progress)
        floors[plan.floorBatch] = f
        progress.clear()
        report.emit(.floor(f), floor: nil)
      }
      if let s = plan.section, s != section {
        section = s
        if !json {
          progress.clear()
          print("-- \(s)")
        }
      }
      progress.next()
      let dirForRun = "\(root)/run-\(outcomes.count + 1)"
      let outcome: RunOutcome
      do {
        outcome = try runCluster(plan, root: dirForRun, progress: progress)
      } catch {
        // Say so and go on with the other configurations; the exit status tells.
        progress.clear()
        FileHandle.standardError.write(Data("raft-bench: \(plan.label) failed: \(error)\n".utf8))
        failures += 1
        removeTree(dirForRun)
        continue
      }
      removeTree(dirForRun)
      outcomes.append(outcome)
      progress.clear()
      report.emit(.run(outcome), floor: floors[plan.floorBatch])
    }
    progress.clear()
    if !json {
      report.comparisons(outcomes)
      if !sweep { report.goals(outcomes, floors: floors) }
    }
    if failures > 0 { throw ExitCode.failure }
  }

  private func header() -> String {
    let k = knobs
    return "raft-bench: \(payload) B entries, io \(k.io) (\(k.uringWrites) writes), fsync \(k.fsync), "
      + "batches <= \(k.batchMaxEntries) entries / \(k.batchMaxBytes) B, linger \(k.batchLingerUs) us, "
      + "\(k.maxInflightBatches) batches in flight, ring \(k.ringDepth)\(k.sqpoll ? " sqpoll" : ""), "
      + "crc32c \(CRC32C.usesHardware ? "sse4.2" : "table"), dir \(dir)"
      + (netDelayUs > 0 || netJitterUs > 0 ? ", net delay \(netDelayUs) us + jitter \(netJitterUs) us" : "")
      + ", state machine \(stateMachine)\(stateMachine == .kv ? " (\(keySpace) keys)" : "")"
      + (batch > 1 ? ", \(batch) entries per propose" : "") + (rate > 0 ? ", open loop \(rate) proposals/s" : "")
  }

  /// The configurations to run, in order.
  func makePlans() -> [RunPlan] {
    let modes = readyHandling.modes
    let duration = count != nil ? 600 : (self.duration ?? (sweep ? 2 : 5))
    let warmup = self.warmup ?? (sweep ? 0.5 : 1)
    func plan(
      _ mode: NodeConfiguration.ReadyHandling, _ nodes: Int, _ clients: Int, _ knobs: EngineKnobs,
      section: String? = nil, netDelayUs: Int? = nil
    ) -> RunPlan {
      RunPlan(
        mode: mode, nodes: nodes, clients: clients, payload: payload, knobs: knobs, durationSeconds: duration,
        count: count, warmupSeconds: warmup, section: section, netDelayUs: netDelayUs ?? self.netDelayUs,
        netJitterUs: netJitterUs, stateMachine: stateMachine, keySpace: keySpace, compactEvery: compactEvery,
        batch: batch, rate: rate)
    }
    if sweep {
      let nodeCounts = nodes?.values ?? [1]
      let clientCounts = clients?.values ?? [1, 4, 16, 64, 256, 1024]
      let atClients = clients?.values.max() ?? 256
      var plans: [RunPlan] = []
      for n in nodeCounts {
        let nodesLabel = "\(n) node\(n == 1 ? "" : "s")"
        for c in clientCounts {
          for m in modes { plans.append(plan(m, n, c, knobs, section: "\(nodesLabel): --clients")) }
        }
        for b in [16, 64, 256, 1024, 4096] {
          var k = knobs
          k.batchMaxEntries = b
          for m in modes {
            plans.append(plan(m, n, atClients, k, section: "\(nodesLabel), \(atClients) clients: --batch-max-entries"))
          }
        }
        for l in [0, 20, 100, 500] {
          var k = knobs
          k.batchLingerUs = l
          for m in modes {
            plans.append(plan(m, n, atClients, k, section: "\(nodesLabel), \(atClients) clients: --batch-linger-us"))
          }
        }
      }
      // Where asynchronous writes pay: the network's share of each round trip grows.
      for d in [0, 100, 250, 500, 1000] {
        for m in modes {
          plans.append(
            plan(m, 3, atClients, knobs, section: "3 nodes, \(atClients) clients: --net-delay-us", netDelayUs: d))
        }
      }
      return plans
    }
    var plans: [RunPlan] = []
    for n in nodes?.values ?? [1, 3] {
      for c in clients?.values ?? [256] {
        for m in modes { plans.append(plan(m, n, c, knobs)) }
      }
    }
    if nodes == nil && clients == nil {
      for m in modes { plans.append(plan(m, 1, 1, knobs)) }  // the latency goal
    }
    return plans
  }

}

/// `values` without repeats, in first-seen order.
func uniqued(_ values: [Int]) -> [Int] {
  var seen = Set<Int>()
  return values.filter { seen.insert($0).inserted }
}
