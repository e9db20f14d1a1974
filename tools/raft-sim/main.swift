import ArgumentParser
import Dispatch
import Foundation
import RaftSim

#if canImport(Glibc)
  import Glibc
#endif

extension SimMode: ExpressibleByArgument {}
extension SimDiskKind: ExpressibleByArgument {}

/// `raft-sim`: runs seeded, deterministic cluster simulations and reports the seeds that broke
/// an invariant, each with the command that replays it.
@main
struct RaftSimCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "raft-sim",
    abstract: "Deterministic simulation of Raft clusters under faults, with safety and linearizability checks.",
    discussion: """
      Each seed draws its faults (drops, duplicates, delays, partitions, crashes that lose unsynced \
      writes) and its client load. Without --mode, even seeds run sync and odd seeds async Ready handling.
      Exit status: 0 when no seed found a violation, 1 otherwise.
      """)

  @Option(help: "How many seeds to run (from --seed on).")
  var seeds = 1
  @Option(help: "The first seed.")
  var seed: UInt64 = 1
  @Option(help: "Voters in the initial cluster: 3 or 5 (one spare node joins and leaves).")
  var nodes = 3
  @Option(help: "Steps of faults and load per seed, before the cluster settles.")
  var steps = 3_000
  @Option(help: "Ready handling: sync or async (default: by seed parity).")
  var mode: SimMode?
  @Option(
    help: """
      Each node's disk: model (what the WAL keeps, modelled; fast) or wal (the real WAL over an in-memory \
      file system that loses unsynced data at each crash, torn and reordered).
      """)
  var disk: SimDiskKind = .model
  @Flag(help: "Print one line per seed, not only the failing ones.")
  var verbose = false
  @Flag(
    help: ArgumentHelp(
      "Inject a bug on purpose (responses before the sync), to see the checks catch it.", visibility: .hidden))
  var injectAckBeforeSync = false
  @Flag(
    help: ArgumentHelp(
      "Inject a bug on purpose (reads without ReadIndex), to see the checks catch it.", visibility: .hidden))
  var injectStaleReads = false
  @Flag(
    help: ArgumentHelp(
      "Inject a bug on purpose (writes acknowledged without their sync), to see the checks catch it.",
      visibility: .hidden))
  var injectSkipSync = false

  func validate() throws {
    guard seeds >= 1 else { throw ValidationError("--seeds must be at least 1") }
    guard nodes == 3 || nodes == 5 else { throw ValidationError("--nodes must be 3 or 5") }
    guard (1...10_000_000).contains(steps) else { throw ValidationError("--steps must be from 1 to 10000000") }
  }

  func run() throws {
    CrashReport.install()
    let start = DispatchTime.now().uptimeNanoseconds
    var violations = 0
    var operations = 0
    var acknowledged = 0
    var notCommitted = 0
    var crashes = 0
    var snapshots = 0
    for k in 0..<UInt64(seeds) {
      let s = seed &+ k
      var options = SimulationOptions(seed: s, nodes: nodes, steps: steps, mode: mode ?? (s % 2 == 0 ? .sync : .async))
      options.acknowledgeBeforeSync = injectAckBeforeSync
      options.staleReads = injectStaleReads
      options.disk = disk
      options.skipSync = injectSkipSync
      CrashReport.set("raft-sim: seed \(s) crashed (a Raft assertion); replay: \(options.replay)\n")
      let r = Simulation(options).run()
      operations += r.operations
      acknowledged += r.acknowledgedWrites
      notCommitted += r.notCommittedWrites
      crashes += r.crashes
      snapshots += r.snapshotsSent
      if let v = r.violation {
        violations += 1
        print("seed \(s) (\(options.mode.rawValue), \(nodes) nodes): VIOLATION \(v)\n  replay: \(options.replay)")
      } else if verbose {
        print(
          "seed \(s) (\(options.mode.rawValue)): ok, \(r.steps) steps, \(r.operations) operations, "
            + "\(r.acknowledgedWrites) acknowledged writes, \(r.crashes) crashes, \(r.elections) elections, "
            + "\(r.snapshotsSent) snapshots sent")
      }
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    print(
      "\(seeds) seeds, \(violations) violations (\(nodes) nodes, \(steps) steps each, disk \(disk.rawValue); "
        + "\(operations) operations, "
        + "\(acknowledged) acknowledged writes, \(notCommitted) answered never committed, \(crashes) crashes, "
        + "\(snapshots) snapshots sent; "
        + "\(String(format: "%.1f", seconds)) s)")
    if violations > 0 { throw ExitCode(1) }
  }
}

/// Names the seed that was running when the process dies on a trap (Raft's own assertions stop
/// the process: a corrupted log, a commit index out of range), so that it can be replayed.
enum CrashReport {
  nonisolated(unsafe) static var line = UnsafeMutablePointer<CChar>.allocate(capacity: 512)
  nonisolated(unsafe) static var length = 0

  static func set(_ text: String) {
    let bytes = Array(text.utf8.prefix(511))
    for (k, b) in bytes.enumerated() { line[k] = CChar(bitPattern: b) }
    length = bytes.count
  }

  static func install() {
    for sig in [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS] {
      signal(sig) { sig in
        _ = write(2, CrashReport.line, CrashReport.length)
        signal(sig, SIG_DFL)
        raise(sig)
      }
    }
  }
}
