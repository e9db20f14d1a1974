import RaftTestSupport
import XCTest

@testable import RaftSim

final class SimulationTests: XCTestCase {
  func testSeedsOfBothModesAndSizesFindNoViolation() {
    for nodes in [3, 5] {
      for seed in UInt64(1)...30 {
        let o = SimulationOptions(seed: seed, nodes: nodes, steps: 2_000, mode: seed % 2 == 0 ? .sync : .async)
        let r = Simulation(o).run()
        XCTAssertNil(r.violation, o.replay)
        XCTAssertGreaterThan(r.operations, 0, o.replay)
      }
    }
  }

  func testSeedsOnTheRealWALFindNoViolation() {
    // Every node on the real WAL over the fault-injecting file system: each crash is a power
    // cut, and the restart is the WAL's own recovery.
    var crashes = 0
    for nodes in [3, 5] {
      for seed in UInt64(1)...12 {
        var o = SimulationOptions(seed: seed, nodes: nodes, steps: 2_000, mode: seed % 2 == 0 ? .sync : .async)
        o.disk = .wal
        let r = Simulation(o).run()
        XCTAssertNil(r.violation, o.replay)
        XCTAssertGreaterThan(r.acknowledgedWrites, 0, o.replay)
        crashes += r.crashes
      }
    }
    XCTAssertGreaterThan(crashes, 10, "the runs must cut the power now and then")
  }

  func testARunOnTheRealWALReplaysExactly() {
    var o = SimulationOptions(seed: 78, nodes: 3, steps: 1_500, mode: .async)
    o.disk = .wal
    let a = Simulation(o).run()
    let b = Simulation(o).run()
    XCTAssertEqual(
      [a.steps, a.operations, a.acknowledgedWrites, a.crashes, a.elections, a.snapshotsSent],
      [b.steps, b.operations, b.acknowledgedWrites, b.crashes, b.elections, b.snapshotsSent])
  }

  func testSkippingTheSyncIsCaughtOnBothDisks() throws {
    // Writes acknowledged without their sync: power cuts then lose acknowledged writes, on the
    // model disk and on the real WAL alike.
    for disk in SimDiskKind.allCases {
      let r = try runTool("raft-sim", ["--seeds", "40", "--disk", disk.rawValue, "--inject-skip-sync"])
      XCTAssertEqual(r.status, 1, "\(disk): skipping the sync went unnoticed\n\(r.stdout.suffix(500))")
      XCTAssertTrue(
        r.stdout.contains("VIOLATION") && r.stdout.contains("--inject-skip-sync"), "\(disk): \(r.stdout.suffix(500))")
    }
  }

  func testAHostilePeerNeitherStopsANodeNorWedgesTheCluster() {
    var x: UInt64 = 0x2545_F491_4F6C_DD1D
    var sent = 0
    var refused = 0
    for seed in UInt64(1)...12 {
      var options = SimulationOptions(seed: seed, nodes: 3, steps: 600, mode: seed % 2 == 0 ? .sync : .async)
      options.hostile = (0..<60).map { _ in
        HostileMessage(
          bytes: (0..<HostileMessage.size).map { _ in
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
          })
      }
      let r = Simulation(options).run()
      XCTAssertNil(r.violation, options.replay)
      XCTAssertEqual(r.hostileSent, 60, options.replay)
      sent += r.hostileSent
      refused += r.hostileRefused
    }
    // Most random hostile messages are refused; some are valid Raft (a peer may speak for a
    // member without TLS) and are stepped.
    XCTAssertGreaterThan(refused, sent / 3)
    XCTAssertLessThan(refused, sent)
  }

  func testARunReplaysExactly() {
    let o = SimulationOptions(seed: 77, nodes: 5, steps: 1_500, mode: .async)
    let a = Simulation(o).run()
    let b = Simulation(o).run()
    XCTAssertEqual(
      [a.steps, a.operations, a.acknowledgedWrites, a.crashes, a.elections, a.snapshotsSent],
      [b.steps, b.operations, b.acknowledgedWrites, b.crashes, b.elections, b.snapshotsSent])
    XCTAssertGreaterThan(a.acknowledgedWrites, 0)
  }

  func testAcknowledgingBeforeTheSyncIsCaught() throws {
    // The bug the WAL exists to prevent: responses before the fdatasync. Crashes then lose
    // acknowledged appends, and the checks (or Raft's own assertions, which stop the process:
    // raft-sim then names the seed) must notice.
    for mode in SimMode.allCases {
      let r = try runTool(
        "raft-sim", ["--seeds", "150", "--mode", mode.rawValue, "--steps", "3000", "--inject-ack-before-sync"])
      XCTAssertNotEqual(r.status, 0, "\(mode): acknowledging before the sync went unnoticed\n\(r.stdout)")
      XCTAssertTrue(
        r.stdout.contains("VIOLATION") || r.stderr.contains("crashed (a Raft assertion); replay: raft-sim --seed"),
        "\(mode): \(r.stdout.suffix(500)) \(r.stderr.suffix(500))")
    }
  }

  func testStaleReadsAreCaughtByTheLinearizabilityCheck() throws {
    // Reads answered from a node's own state, without ReadIndex, are stale under partitions and
    // lagging followers.
    let r = try runTool("raft-sim", ["--seeds", "20", "--inject-stale-reads"])
    XCTAssertEqual(r.status, 1)
    XCTAssertTrue(r.stdout.contains("is not linearizable"), r.stdout)
    XCTAssertTrue(r.stdout.contains("replay: raft-sim --seed"), r.stdout)
  }

  func testTheLinearizabilityCheckerAcceptsAndRejects() {
    func op(_ c: Int, _ kind: ClientOperation.Kind, _ i: UInt64, _ r: UInt64?) -> ClientOperation {
      ClientOperation(client: c, key: 1, kind: kind, invoked: i, returned: r)
    }
    // Concurrent write and reads: either order works.
    XCTAssertNil(
      LinearizabilityChecker.check([op(0, .put(1), 1, 4), op(1, .get(nil), 2, 3), op(2, .get(1), 3, 5)]))
    // A write that never returned may have happened...
    XCTAssertNil(LinearizabilityChecker.check([op(0, .put(1), 1, nil), op(1, .get(1), 5, 6)]))
    // ... or not.
    XCTAssertNil(LinearizabilityChecker.check([op(0, .put(1), 1, nil), op(1, .get(nil), 5, 6)]))
    // A stale read: 2 was written after 1 completed, and a later read sees 1.
    let stale = [op(0, .put(1), 1, 2), op(0, .put(2), 3, 4), op(1, .get(1), 5, 6)]
    XCTAssertEqual(LinearizabilityChecker.check(stale)?.key, 1)
    // A read of a value never written.
    XCTAssertNotNil(LinearizabilityChecker.check([op(0, .put(1), 1, 2), op(1, .get(3), 3, 4)]))
    // Reads going back in time: once a read saw 2, a later read cannot see 1.
    let back = [op(0, .put(1), 1, 2), op(0, .put(2), 3, 10), op(1, .get(2), 4, 5), op(2, .get(1), 6, 7)]
    XCTAssertNotNil(LinearizabilityChecker.check(back))
  }

  func testTheCommandLineReportsSeedsAndViolations() throws {
    let ok = try runTool("raft-sim", ["--seeds", "4", "--seed", "10", "--steps", "800"])
    XCTAssertEqual(ok.status, 0, ok.stderr)
    XCTAssertTrue(ok.stdout.hasPrefix("4 seeds, 0 violations"), ok.stdout)
    let bad = try runTool("raft-sim", ["--nodes", "4"])
    XCTAssertEqual(bad.status, 64)
    XCTAssertTrue(bad.stderr.contains("--nodes must be 3 or 5"), bad.stderr)
  }
}
