import ArgumentParser
import Dispatch
import Foundation
import Raft
import RaftEngine
import RaftWAL
import Synchronization

/// `raft-bench log`: the embedding API under a long run. Appends `--entries` entries through
/// `ReplicatedLog.append(contentsOf:)` from `--clients` tasks, tells the log every
/// `--compact-every` entries that it consumed them (`compact(through:)`), and prints the peak
/// RSS and the WAL directory's peak and final size: with compaction both stay bounded whatever
/// the total. `--reopen` then stops the log and measures opening it again (from the WAL), with
/// the application resuming at the last index (no replay) and without (a replay from the
/// snapshot).
struct LogBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "log",
    abstract: "ReplicatedLog: append many entries with compaction; peak RSS, WAL size, reopen time.")

  @Option(help: "Entries to append in all (rounded up to whole batches).")
  var entries = 10_000_000
  @Option(help: "Payload bytes per entry.")
  var entryBytes = 128
  @Option(help: "Concurrent appending tasks.")
  var clients = 16
  @Option(help: "Entries per append(contentsOf:) call.")
  var batch = 64
  @Option(help: "Compact through the applied index every this many entries (0: never).")
  var compactEvery = 100_000
  @Option(help: "Entries kept behind each compaction for slow followers.")
  var retainEntries: UInt64 = 5_000
  @Option(help: "Nodes in the in-process cluster (1 or 3).")
  var nodes = 1
  @Option(help: "Ready handling: sync or async.")
  var mode = NodeConfiguration.ReadyHandling.async
  @Option(help: "datasync | fsync | none.")
  var fsync = "datasync"
  @Option(help: "Directory for the WALs (created when missing; a fresh subdirectory is made and removed).")
  var dir = "/tmp"
  @Flag(help: "After the run, stop the log and measure reopening it.")
  var reopen = false

  func validate() throws {
    guard entries >= 1 else { throw ValidationError("--entries must be at least 1") }
    guard (0...(16 << 20)).contains(entryBytes) else {
      throw ValidationError("--entry-bytes must be from 0 to 16777216")
    }
    guard clients >= 1 else { throw ValidationError("--clients must be at least 1") }
    guard (1...ReplicatedLog<NoStateMachine>.appendBatchEntriesMax).contains(batch) else {
      throw ValidationError("--batch must be from 1 to \(ReplicatedLog<NoStateMachine>.appendBatchEntriesMax)")
    }
    guard compactEvery >= 0 else { throw ValidationError("--compact-every must not be negative") }
    guard nodes == 1 || nodes == 3 else { throw ValidationError("--nodes must be 1 or 3") }
    guard WALOptions.Fsync(rawValue: fsync) != nil else {
      throw ValidationError("--fsync must be datasync, fsync or none")
    }
  }

  func run() throws {
    let done = DispatchSemaphore(value: 0)
    let outcome = Mutex<Result<String, any Error>?>(nil)
    let bench = self
    Task {
      do {
        let line = try await bench.measure()
        outcome.withLock { $0 = .success(line) }
      } catch {
        outcome.withLock { $0 = .failure(error) }
      }
      done.signal()
    }
    done.wait()
    switch outcome.withLock({ $0 })! {
    case .success(let line): print(line)
    case .failure(let error): throw error
    }
  }

  func configuration(_ id: UInt64, root: String) -> NodeConfiguration {
    var c = NodeConfiguration(id: id, peers: Array(1...UInt64(nodes)), directory: "\(root)/node-\(id)")
    c.readyHandling = mode
    c.compactionRetainEntries = retainEntries
    c.wal.fsync = WALOptions.Fsync(rawValue: fsync)!
    c.logger.logLevel = .warning
    return c
  }

  /// Opens the cluster's logs and waits for a leader; `opened` gets the seconds the opening
  /// (WAL recovery) took.
  func openCluster(
    root: String, network: InMemoryNetwork, appliedIndex: UInt64 = 0, opened: (Double) -> Void = { _ in }
  ) async throws -> (logs: [ReplicatedLog<NoStateMachine>], leader: ReplicatedLog<NoStateMachine>) {
    var logs: [ReplicatedLog<NoStateMachine>] = []
    let start = DispatchTime.now().uptimeNanoseconds
    for id in 1...UInt64(nodes) {
      var c = configuration(id, root: root)
      c.appliedIndex = appliedIndex
      let log = try await ReplicatedLog.open(configuration: c, transport: network.transport(for: id))
      network.register(id, sink: log.sink)
      log.start()
      logs.append(log)
    }
    opened(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    logs[0].campaign()
    var leader: ReplicatedLog<NoStateMachine>?
    for await change in logs[0].leaderChanges {
      leader = logs.first { $0.id == change.leader }
      if leader != nil { break }
    }
    return (logs, leader!)
  }

  func measure() async throws -> String {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let root = "\(dir)/raft-bench-log-\(getpid())"
    try? FileManager.default.removeItem(atPath: root)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let network = InMemoryNetwork()
    defer { network.shutdown() }
    var (logs, leader) = try await openCluster(root: root, network: network)
    let walPeak = DirectorySizeSampler(path: root)
    walPeak.start()

    let counters = Counters(compactEvery: compactEvery)
    let buffer = [UInt8](repeating: 0x5A, count: entryBytes * batch)
    let payloads = (0..<batch).map { k in Payload(buffer, (k * entryBytes)..<((k + 1) * entryBytes)) }
    let (entries, batch, compactEvery, clients) = (self.entries, self.batch, self.compactEvery, self.clients)
    let log = leader
    let members = logs
    let start = DispatchTime.now().uptimeNanoseconds
    try await withThrowingTaskGroup(of: Void.self) { group in
      for _ in 0..<clients {
        group.addTask {
          while counters.claimed.add(batch, ordering: .relaxed).oldValue < entries {
            let a = try await log.append(contentsOf: payloads, timeout: .seconds(60))
            counters.appended.add(batch, ordering: .relaxed)
            guard compactEvery > 0 else { continue }
            let due = counters.nextCompaction.load(ordering: .relaxed)
            let done = counters.appended.load(ordering: .relaxed)
            if done >= due,
              counters.nextCompaction.compareExchange(
                expected: due, desired: due + compactEvery, ordering: .relaxed
              ).exchanged
            {
              // The application consumed everything it was answered for; each member's
              // application compacts its own log (a follower's waits until it applied there).
              for member in members { try await member.compact(through: a.indexes.upperBound) }
              counters.compactions.add(1, ordering: .relaxed)
            }
          }
        }
      }
      try await group.waitForAll()
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let lastIndex = leader.appliedIndex
    walPeak.stop()
    let finalWAL = DirectorySizeSampler.size(of: root)
    let peakRSS = peakRSSBytes()
    var fields: [(String, String)] = [
      ("bench", "\"log\""), ("mode", "\"\(mode)\""), ("nodes", "\(nodes)"),
      ("entries", "\(counters.appended.load(ordering: .relaxed))"),
      ("entry_bytes", "\(entryBytes)"), ("batch", "\(batch)"), ("clients", "\(clients)"),
      ("compact_every", "\(compactEvery)"), ("compactions", "\(counters.compactions.load(ordering: .relaxed))"),
      ("seconds", String(format: "%.2f", seconds)),
      (
        "entries_per_sec",
        String(format: "%.0f", Double(min(entries, counters.appended.load(ordering: .relaxed))) / seconds)
      ),
      ("peak_rss_mib", String(format: "%.1f", Double(peakRSS) / 1_048_576)),
      ("wal_dir_peak_mib", String(format: "%.1f", Double(walPeak.peak) / 1_048_576)),
      ("wal_dir_final_mib", String(format: "%.1f", Double(finalWAL) / 1_048_576)),
      ("first_index", "\(leader.firstIndex)"), ("last_index", "\(lastIndex)"),
    ]
    if reopen {
      for l in logs { await l.shutdown() }
      let format = { (seconds: Double) in String(format: "%.3f", seconds) }
      // Resuming at the last index: nothing is replayed into the state machine.
      var t = DispatchTime.now().uptimeNanoseconds
      (logs, leader) = try await openCluster(root: root, network: network, appliedIndex: lastIndex) {
        fields.append(("reopen_open_seconds", format($0)))
      }
      try await leader.waitUntilApplied(lastIndex, timeout: .seconds(600))
      fields.append(("reopen_resume_ready_seconds", format(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9)))
      for l in logs { await l.shutdown() }
      // Without: every entry above the snapshot is applied again.
      t = DispatchTime.now().uptimeNanoseconds
      (logs, leader) = try await openCluster(root: root, network: network)
      try await leader.waitUntilApplied(lastIndex, timeout: .seconds(600))
      fields.append(("reopen_replay_ready_seconds", format(Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9)))
      fields.append(("peak_rss_after_reopen_mib", String(format: "%.1f", Double(peakRSSBytes()) / 1_048_576)))
    }
    for l in logs { await l.shutdown() }
    return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
  }
}

/// The run's shared counters.
final class Counters: Sendable {
  /// Entries claimed by the clients (a client appends a batch after claiming it).
  let claimed = Atomic<Int>(0)
  /// Entries appended (committed and applied on the leader).
  let appended = Atomic<Int>(0)
  /// The appended count at which the next compaction is due.
  let nextCompaction: Atomic<Int>
  let compactions = Atomic<Int>(0)
  init(compactEvery: Int) { nextCompaction = Atomic(compactEvery) }
}

/// The process's peak resident set, in bytes.
func peakRSSBytes() -> Int {
  var usage = rusage()
  getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
  return usage.ru_maxrss * 1024
}

/// Samples a directory tree's size every 100 ms on a thread of its own and keeps the peak.
final class DirectorySizeSampler: Sendable {
  let path: String
  private let state = Mutex((peak: 0, stopped: false))
  private let finished = DispatchSemaphore(value: 0)

  init(path: String) { self.path = path }

  var peak: Int { state.withLock { $0.peak } }

  func start() {
    Foundation.Thread.detachNewThread { [self] in
      while !state.withLock({ $0.stopped }) {
        let size = Self.size(of: path)
        state.withLock { $0.peak = max($0.peak, size) }
        // A sampling period, not a wait for an event: the sampler only observes.
        usleep(100_000)
      }
      finished.signal()
    }
  }

  func stop() {
    state.withLock { $0.stopped = true }
    finished.wait()
    let size = Self.size(of: path)
    state.withLock { $0.peak = max($0.peak, size) }
  }

  /// The bytes of the regular files under `path` (allocated size, as `du` counts).
  static func size(of path: String) -> Int {
    guard let walker = FileManager.default.enumerator(atPath: path) else { return 0 }
    var total = 0
    while let name = walker.nextObject() as? String {
      var st = stat()
      if lstat("\(path)/\(name)", &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { total += Int(st.st_blocks) * 512 }
    }
    return total
  }
}
