import ArgumentParser
import Dispatch
import Raft
import RaftEngine
import RaftWAL
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// `raft-bench engine`: closed-loop clients proposing through a `Node` cluster in one process
/// (in-memory transport, one WAL directory per node), for sync and async Ready handling.
///
/// A first cut of issue 5's suite: no HdrHistogram, sweep, JSON or floor yet.
struct EngineBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "engine",
    abstract: "Write path through the engine: sync vs async Ready handling, closed-loop clients.")

  @Option(help: "sync, async or both.")
  var readyHandling = "both"
  @Option(help: "Nodes in the in-process cluster.")
  var nodes = 1
  @Option(help: "Concurrent closed-loop clients (each keeps one proposal in flight).")
  var clients = 256
  @Option(help: "Entry payload in bytes.")
  var payload = 128
  @Option(help: "Measured time per configuration, in milliseconds.")
  var durationMs = 3000
  @Option(help: "Directory for the WALs (a fresh subdirectory is made and removed).")
  var dir = "/tmp"
  @Option(help: "WAL I/O path: uring or posix.")
  var io = "uring"

  func validate() throws {
    guard ["sync", "async", "both"].contains(readyHandling) else {
      throw ValidationError("--ready-handling must be sync, async or both")
    }
    guard (1...7).contains(nodes) else { throw ValidationError("--nodes must be between 1 and 7") }
    guard (1...100_000).contains(clients) else { throw ValidationError("--clients must be between 1 and 100000") }
    guard (0...(1 << 20)).contains(payload) else { throw ValidationError("--payload must be at most 1 MiB") }
    guard WALOptions.IO(rawValue: io) != nil else { throw ValidationError("--io must be uring or posix") }
  }

  func run() throws {
    let modes: [NodeConfiguration.ReadyHandling] =
      readyHandling == "both" ? [.sync, .async] : [NodeConfiguration.ReadyHandling(rawValue: readyHandling)!]
    print("raft-bench engine: \(nodes) node(s), \(clients) clients, \(payload) B entries, \(durationMs) ms, io \(io)")
    print(
      pad("mode", 6, left: true) + pad("entries/s", 12) + pad("MB/s", 8) + pad("p50 us", 9) + pad("p99 us", 9)
        + pad("syncs/s", 9) + pad("ent/sync", 9))
    var results: [String: Double] = [:]
    for mode in modes {
      let (eps, line) = try measure(mode)
      results[mode.rawValue] = eps
      print(line)
    }
    if let s = results["sync"], let a = results["async"], s > 0 {
      print("async / sync: \(fixed(a / s, 2))")
    }
  }

  func measure(_ mode: NodeConfiguration.ReadyHandling) throws -> (Double, String) {
    var template = Array("\(dir)/raft-bench-engine-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
      throw ValidationError("cannot create a directory under \(dir)")
    }
    let root = String(cString: made)
    defer { removeTree(root) }
    let network = InMemoryNetwork()
    defer { network.shutdown() }
    let ids = (1...UInt64(nodes)).map { $0 }
    var cluster: [UInt64: Node] = [:]
    for id in ids {
      var c = NodeConfiguration(id: id, peers: ids, directory: "\(root)/node-\(id)")
      c.readyHandling = mode
      c.wal.io = WALOptions.IO(rawValue: io)!
      c.snapshotEntries = 0
      var logger = c.logger
      logger.logLevel = .warning
      c.logger = logger
      let node = try Node(configuration: c, stateMachine: NullStateMachine(), transport: network.transport(for: id))
      network.register(id, sink: node.sink)
      cluster[id] = node
      node.start()
    }
    defer { for n in cluster.values { n.stop() } }
    let leader = cluster[1]!
    leader.campaign()
    let deadline = monotonicNanoseconds() + 10_000_000_000
    while leader.leader != 1 && monotonicNanoseconds() < deadline { usleep(1000) }
    guard leader.leader == 1 else { throw ValidationError("no leader elected") }

    let data = [UInt8](repeating: 0x5A, count: payload)
    let state = Mutex<(done: Int, measuring: Bool, latencies: Samples)>((0, false, Samples()))
    let running = Atomic<Bool>(true)
    let stopped = DispatchGroup()
    @Sendable func client(_ started: UInt64) {
      leader.propose(data) { result in
        let now = monotonicNanoseconds()
        if case .success = result {
          state.withLock { s in
            if s.measuring {
              s.done += 1
              s.latencies.add(now - started)
            }
          }
        }
        if running.load(ordering: .relaxed) {
          client(now)
        } else {
          stopped.leave()
        }
      }
    }
    for _ in 0..<clients {
      stopped.enter()
      client(monotonicNanoseconds())
    }
    usleep(500_000)  // warm up
    let syncsBefore = leader.storage.wal.stats.syncs
    let entriesBefore = leader.storage.wal.stats.entries
    state.withLock { $0.measuring = true }
    let t0 = monotonicNanoseconds()
    usleep(UInt32(durationMs) * 1000)
    state.withLock { $0.measuring = false }
    let seconds = Double(monotonicNanoseconds() - t0) / 1e9
    let syncs = leader.storage.wal.stats.syncs - syncsBefore
    let walEntries = leader.storage.wal.stats.entries - entriesBefore
    running.store(false, ordering: .relaxed)
    _ = stopped.wait(timeout: .now() + 10)
    let (done, latencies) = state.withLock { ($0.done, $0.latencies) }
    let eps = Double(done) / seconds
    let line =
      pad(mode.rawValue, 6, left: true) + pad(grouped(eps), 12) + pad(fixed(eps * Double(payload) / 1e6, 1), 8)
      + pad(fixed(Double(latencies.percentile(50)) / 1000, 0), 9)
      + pad(fixed(Double(latencies.percentile(99)) / 1000, 0), 9) + pad(grouped(Double(syncs) / seconds), 9)
      + pad(syncs > 0 ? fixed(Double(walEntries) / Double(syncs), 1) : "-", 9)
    return (eps, line)
  }
}

/// Applies nothing: the benchmark measures the write path.
final class NullStateMachine: StateMachine, Sendable {
  func apply(index: UInt64, term: UInt64, data: [UInt8]) {}
  func restore(snapshot: Snapshot) {}
}
