import Foundation
import Histogram
import RaftEngine

/// Prints the suite's results: a table on stdout, or one JSON object per line.
struct Report {
  let json: Bool
  let payload: Int

  /// One configuration as `--json` prints it.
  struct Line: Encodable {
    struct Latency: Encodable {
      var p50: Double
      var p90: Double
      var p99: Double
      var p999: Double
      var max: Double
    }
    var ready_handling: String
    var nodes: Int
    var payload: Int
    var clients: Int
    var entries: UInt64
    var seconds: Double
    var entries_per_sec: Double
    var bytes_per_sec: Double
    var latency_us: Latency
    var fsyncs: UInt64
    var fsyncs_per_sec: Double
    var entries_per_fsync: Double
    var cpu_user_s: Double
    var cpu_sys_s: Double
    var io: String
    var fsync: String
    var batch_max_entries: Int
    var batch_max_bytes: Int
    var batch_linger_us: Int
    /// Entries/s over the floor's for the same batch size (nil without a floor).
    var of_floor: Double?
    /// (user + sys) CPU seconds of the whole process per acknowledged entry, in microseconds.
    var cpu_us_per_entry: Double
    var net_delay_us: Int
    var net_jitter_us: Int
    var state_machine: String
    /// Entries per propose call.
    var batch: Int
    var compact_every: Int
    /// Compactions of the leader's log over the run (nil for the floor).
    var compactions: Int?
    /// Open-loop propose calls per second (0: closed loop).
    var rate: Int
    /// Propose calls that failed in the measured window.
    var failures: Int
    /// Wake-ups of the leader's engine threads (run loop, append and apply workers) per WAL
    /// batch.
    var wakeups_per_batch: Double
    /// The same by thread: run loop, append worker, apply worker.
    var wakeups_per_batch_by_thread: [Double]
  }

  private static let columnWidths = [36, 11, 7, 8, 8, 8, 9, 9, 9, 9, 7, 7, 7, 6, 8]

  func columns() -> String {
    row([
      "configuration", "entries/s", "MB/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "fsyncs/s",
      "ent/fsync", "usr s", "sys s", "cpu/e", "wk/b", "of floor",
    ])
  }

  private func row(_ cells: [String]) -> String {
    var s = ""
    for (k, cell) in cells.enumerated() {
      s += k == 0 ? pad(cell, Self.columnWidths[k], left: true) : " " + pad(cell, Self.columnWidths[k])
    }
    return s
  }

  private static func us(_ h: Histogram<UInt64>, _ p: Double) -> Double { Double(h.valueAtPercentile(p)) / 1000 }

  private static func latency(_ h: Histogram<UInt64>) -> Line.Latency {
    Line.Latency(
      p50: us(h, 50), p90: us(h, 90), p99: us(h, 99), p999: us(h, 99.9), max: Double(h.max) / 1000)
  }

  func emit(_ r: RunBench.Row, floor: FloorOutcome?) {
    let label: String
    let line: Line
    switch r {
    case .run(let o):
      let k = o.plan.knobs
      label = o.plan.label
      line = Line(
        ready_handling: o.plan.mode.rawValue, nodes: o.plan.nodes, payload: o.plan.payload, clients: o.plan.clients,
        entries: o.entries, seconds: o.seconds, entries_per_sec: o.entriesPerSecond, bytes_per_sec: o.bytesPerSecond,
        latency_us: Self.latency(o.latency), fsyncs: o.fsyncs, fsyncs_per_sec: o.fsyncsPerSecond,
        entries_per_fsync: o.entriesPerFsync, cpu_user_s: o.cpu.user, cpu_sys_s: o.cpu.system, io: k.io.rawValue,
        fsync: k.fsync.rawValue, batch_max_entries: k.batchMaxEntries, batch_max_bytes: k.batchMaxBytes,
        batch_linger_us: k.batchLingerUs,
        of_floor: floor.map { o.entriesPerSecond / max($0.entriesPerSecond, 1e-9) },
        cpu_us_per_entry: o.cpuMicrosecondsPerEntry, net_delay_us: o.plan.netDelayUs,
        net_jitter_us: o.plan.netJitterUs, state_machine: o.plan.stateMachine.rawValue, batch: o.plan.batch,
        compact_every: o.plan.compactEvery, compactions: o.compactions,
        rate: o.plan.rate, failures: o.failures, wakeups_per_batch: o.wakeupsPerBatch,
        wakeups_per_batch_by_thread: [
          o.wakeupsByThread.runLoop, o.wakeupsByThread.appendWorker, o.wakeupsByThread.applyWorker,
        ].map { o.batches > 0 ? Double($0) / Double(o.batches) : 0 })
    case .floor(let f):
      let eps = f.entriesPerSecond
      label = "floor \(f.entriesPerBatch) x \(f.payload) B"
      line = Line(
        ready_handling: "floor", nodes: 0, payload: f.payload, clients: f.entriesPerBatch, entries: f.entries,
        seconds: f.seconds, entries_per_sec: eps, bytes_per_sec: eps * Double(f.payload),
        latency_us: Self.latency(f.latency), fsyncs: f.fsyncs,
        fsyncs_per_sec: f.seconds > 0 ? Double(f.fsyncs) / f.seconds : 0,
        entries_per_fsync: f.fsyncs > 0 ? Double(f.entries) / Double(f.fsyncs) : 0, cpu_user_s: f.cpu.user,
        cpu_sys_s: f.cpu.system, io: "posix", fsync: f.fsync.rawValue, batch_max_entries: f.entriesPerBatch,
        batch_max_bytes: f.entriesPerBatch * f.payload, batch_linger_us: 0, of_floor: 1,
        cpu_us_per_entry: f.entries > 0 ? (f.cpu.user + f.cpu.system) / Double(f.entries) * 1e6 : 0, net_delay_us: 0,
        net_jitter_us: 0, state_machine: "none", batch: f.entriesPerBatch, compact_every: 0, compactions: nil, rate: 0,
        failures: 0,
        wakeups_per_batch: 0, wakeups_per_batch_by_thread: [])
    }
    if !json {
      print(
        row([
          label, grouped(line.entries_per_sec), fixed(line.bytes_per_sec / 1e6, 1), fixed(line.latency_us.p50, 0),
          fixed(line.latency_us.p90, 0), fixed(line.latency_us.p99, 0), fixed(line.latency_us.p999, 0),
          fixed(line.latency_us.max, 0), grouped(line.fsyncs_per_sec),
          line.fsyncs > 0 ? fixed(line.entries_per_fsync, 1) : "-", fixed(line.cpu_user_s, 2),
          fixed(line.cpu_sys_s, 2), fixed(line.cpu_us_per_entry, 2),
          line.ready_handling == "floor" ? "-" : fixed(line.wakeups_per_batch, 1),
          line.of_floor.map { fixed($0, 2) } ?? "-",
        ]))
    }
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      if let data = try? encoder.encode(line), let s = String(data: data, encoding: .utf8) {
        print(s)
        fflush(nil)  // a reader of the pipe sees each line as it comes
      }
    }
  }

  /// async / sync for each configuration measured both ways.
  func comparisons(_ outcomes: [RunOutcome]) {
    var printed = false
    for a in outcomes where a.plan.mode == .async {
      guard let s = outcomes.first(where: { $0.plan.mode == .sync && $0.plan.matches(a.plan) }) else { continue }
      if !printed {
        print("async / sync:")
        printed = true
      }
      var label = String(a.plan.label.dropFirst("async ".count))
      if let section = a.plan.section, section.hasSuffix("--batch-max-entries") {
        label += " batch<=\(a.plan.knobs.batchMaxEntries)"
      } else if let section = a.plan.section, section.hasSuffix("--batch-linger-us") {
        label += " linger \(a.plan.knobs.batchLingerUs)us"
      }
      print(
        "  \(pad(label, 36, left: true)) throughput \(fixed(a.entriesPerSecond / max(s.entriesPerSecond, 1e-9), 2))x,"
          + " p50 \(fixed(Self.us(a.latency, 50) / max(Self.us(s.latency, 50), 1e-9), 2))x,"
          + " p99 \(fixed(Self.us(a.latency, 99) / max(Self.us(s.latency, 99), 1e-9), 2))x,"
          + " cpu/entry \(fixed(a.cpuMicrosecondsPerEntry, 2)) vs \(fixed(s.cpuMicrosecondsPerEntry, 2)) us")
    }
  }

  /// The write path's goals, where this run measured what they need.
  func goals(_ outcomes: [RunOutcome], floors: [Int: FloorOutcome]) {
    func find(_ mode: NodeConfiguration.ReadyHandling, _ nodes: Int, _ clients: Int) -> RunOutcome? {
      outcomes.first {
        $0.plan.mode == mode && $0.plan.nodes == nodes && $0.plan.clients == clients && $0.plan.rate == 0
          && $0.plan.batch == 1
      }
    }
    func ratio(_ a: Double, _ b: Double) -> String { fixed(a / max(b, 1e-9), 2) }
    var lines: [String] = []
    if let a = find(.async, 1, 256), let s = find(.sync, 1, 256), a.plan.knobs.fsync == .none {
      lines.append(
        "fsync none, 1 node 256 clients: sync \(grouped(s.entriesPerSecond)) / async \(grouped(a.entriesPerSecond)) "
          + "entries/s (goal 2,000,000), cpu/entry \(fixed(s.cpuMicrosecondsPerEntry, 2)) / "
          + "\(fixed(a.cpuMicrosecondsPerEntry, 2)) us (goal 0.5), async \(ratio(a.entriesPerSecond, s.entriesPerSecond))x "
          + "sync (goal 0.95)")
    } else if let a = find(.async, 1, 256) {
      var s = "1 node async 256 clients: \(grouped(a.entriesPerSecond)) entries/s (goal 1,000,000)"
      if let f = floors[256] { s += ", \(ratio(a.entriesPerSecond, f.entriesPerSecond)) of the floor (goal 0.80)" }
      if let sy = find(.sync, 1, 256) { s += ", \(ratio(a.entriesPerSecond, sy.entriesPerSecond))x sync (goal 1)" }
      lines.append(s)
    }
    if let a = find(.async, 1, 1), let f = floors[1] {
      let r = Self.us(a.latency, 50) / max(Self.us(f.latency, 50), 1e-9)
      lines.append(
        "1 node async 1 client: p50 \(fixed(Self.us(a.latency, 50), 0)) us, \(fixed(r, 2))x one write + fdatasync"
          + " (\(fixed(Self.us(f.latency, 50), 0)) us; goal 1.3x)")
    }
    for a in outcomes
    where a.plan.mode == .async && a.plan.nodes == 3 && a.plan.netDelayUs == 250 && a.plan.stateMachine == .kv {
      guard let s = outcomes.first(where: { $0.plan.mode == .sync && $0.plan.matches(a.plan) }) else { continue }
      lines.append(
        "3 nodes +250us kv: async \(ratio(a.entriesPerSecond, s.entriesPerSecond))x sync (goal 1.3), p50 "
          + "\(ratio(Self.us(a.latency, 50), Self.us(s.latency, 50)))x (goal 0.75)")
    }
    let behind = outcomes.filter { a in
      a.plan.mode == .async
        && outcomes.contains {
          $0.plan.mode == .sync && $0.plan.matches(a.plan) && a.entriesPerSecond < 0.95 * $0.entriesPerSecond
        }
    }
    let pairs = outcomes.filter { a in
      a.plan.mode == .async && outcomes.contains { $0.plan.mode == .sync && $0.plan.matches(a.plan) }
    }
    if !pairs.isEmpty {
      lines.append(
        "rows where async is more than 5% behind sync: \(behind.count) of \(pairs.count) (goal 0)"
          + (behind.isEmpty
            ? "" : ": " + behind.map { String($0.plan.label.dropFirst("async ".count)) }.joined(separator: "; ")))
    }
    guard !lines.isEmpty else { return }
    print("goals:")
    for l in lines { print("  " + l) }
  }
}
