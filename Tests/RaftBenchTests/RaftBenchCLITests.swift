import Foundation
import RaftTestSupport
import XCTest

/// `raft-bench` as its users run it: flags, exit codes, the JSON lines.
final class RaftBenchCLITests: XCTestCase {
  func raftBench(_ args: [String]) throws -> ToolRun { try runTool("raft-bench", args) }

  func scratch() throws -> String {
    let d = try makeTestDirectory("raft-bench-test")
    addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
    return d
  }

  func testBadFlagsExitWithUsageErrorAndSayWhy() throws {
    let cases: [([String], String)] = [
      (["--nodes", "0"], "--nodes"),
      (["--nodes", "1,x"], "--nodes"),
      (["--io", "floppy"], "--io"),
      (["--fsync", "sometimes"], "--fsync"),
      (["--ready-handling", "maybe"], "--ready-handling"),
      (["--duration", "1", "--count", "10"], "--count"),
      (["--payload", "-1"], "--payload"),
      (["--batch-max-entries", "0"], "batchEntriesMax"),
      (["--bogus"], "--bogus"),
      (["--net-delay-us", "-1"], "--net-delay-us"),
      (["--net-delay-us", "soon"], "--net-delay-us"),
      (["--net-jitter-us", "20000000"], "--net-jitter-us"),
      (["--state-machine", "sqlite"], "--state-machine"),
      (["--key-space", "0"], "--key-space"),
      (["--batch", "0"], "--batch"),
      (["--rate", "-5"], "--rate"),
      (["--compact-every", "-1"], "--compact-every"),
      (["--run-loop-nice", "20"], "--run-loop-nice"),
      (["--run-loop-nice", "-1"], "--run-loop-nice"),
      (["--dir", "/proc/raft-bench"], "--dir"),
    ]
    for (args, mention) in cases {
      let r = try raftBench(args)
      XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
      XCTAssertTrue(r.stderr.contains("Error:"), "\(args): \(r.stderr)")
      XCTAssertTrue(r.stderr.contains(mention), "\(args) should mention \(mention): \(r.stderr)")
      XCTAssertEqual(r.stdout, "", "\(args): nothing on stdout")
    }
  }

  func testLogBenchBoundsItsLogByCompactingAndSaysSo() throws {
    for (args, mention) in [
      (["log", "--entries", "0"], "--entries"), (["log", "--batch", "70000"], "--batch"),
      (["log", "--nodes", "2"], "--nodes"), (["log", "--compact-every", "-1"], "--compact-every"),
    ] {
      let r = try raftBench(args)
      XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
      XCTAssertTrue(r.stderr.contains(mention), "\(args) should mention \(mention): \(r.stderr)")
    }
    let dir = try scratch()
    let r = try raftBench([
      "log", "--entries", "19200", "--compact-every", "5000", "--retain-entries", "100", "--fsync", "none",
      "--dir", "\(dir)/new", "--reopen",
    ])
    XCTAssertEqual(r.status, 0, r.stderr)
    let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    XCTAssertEqual(json?["entries"] as? Int, 19_200)
    XCTAssertEqual(json?["compactions"] as? Int, 3)
    let first = try XCTUnwrap(json?["first_index"] as? Int)
    let last = try XCTUnwrap(json?["last_index"] as? Int)
    XCTAssertGreaterThan(first, 15_000 - 100, "the log was compacted behind the last compaction: \(r.stdout)")
    XCTAssertGreaterThanOrEqual(last, 19_200)
    for key in [
      "peak_rss_mib", "wal_dir_peak_mib", "wal_dir_final_mib", "reopen_open_seconds", "reopen_replay_ready_seconds",
    ] {
      XCTAssertNotNil(json?[key], "\(key) in \(r.stdout)")
    }
  }

  func testJSONLinesCarryTheDocumentedKeys() throws {
    let r = try raftBench([
      "--nodes", "1", "--clients", "4", "--duration", "0.3", "--warmup", "0.1", "--fsync", "none", "--json",
      "--dir", try scratch(),
    ])
    XCTAssertEqual(r.status, 0, r.stderr)
    let lines = r.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 3, "the floor, then sync and async: \(r.stdout)")
    var modes: [String] = []
    for line in lines {
      let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
      for key in [
        "ready_handling", "nodes", "payload", "clients", "entries_per_sec", "bytes_per_sec", "latency_us", "fsyncs",
        "entries_per_fsync", "cpu_user_s", "cpu_sys_s", "cpu_us_per_entry", "net_delay_us", "state_machine", "batch",
        "rate", "compact_every",
      ] {
        XCTAssertNotNil(object[key], "\(key) missing in \(line)")
      }
      let latency = try XCTUnwrap(object["latency_us"] as? [String: Double])
      let p50 = try XCTUnwrap(latency["p50"])
      let p90 = try XCTUnwrap(latency["p90"])
      let p99 = try XCTUnwrap(latency["p99"])
      let p999 = try XCTUnwrap(latency["p999"])
      let max = try XCTUnwrap(latency["max"])
      XCTAssertTrue(0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max, "\(latency)")
      XCTAssertGreaterThan(try XCTUnwrap(object["entries_per_sec"] as? Double), 0)
      XCTAssertEqual(object["payload"] as? Int, 128)
      XCTAssertEqual(object["clients"] as? Int, 4)
      modes.append(try XCTUnwrap(object["ready_handling"] as? String))
    }
    XCTAssertEqual(modes, ["floor", "sync", "async"])
    XCTAssertTrue(r.stderr.contains("[3/3]"), "progress goes to stderr: \(r.stderr)")
  }

  func testEveryNodeCompactsItsLogEveryCompactEveryEntries() throws {
    for (every, expected) in [(5_000, 1...8), (0, 0...0)] {
      let r = try raftBench([
        "--nodes", "1", "--clients", "16", "--count", "30000", "--warmup", "0", "--fsync", "none", "--no-floor",
        "--ready-handling", "sync", "--compact-every", "\(every)", "--json", "--dir", try scratch(),
      ])
      XCTAssertEqual(r.status, 0, r.stderr)
      let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
      XCTAssertEqual(object["compact_every"] as? Int, every)
      // 30,000 entries and the election's: a compaction at each 5,000 applied.
      let compactions = try XCTUnwrap(object["compactions"] as? Int)
      XCTAssertTrue(expected.contains(compactions), "every \(every): \(compactions) compactions")
      if every > 0 { XCTAssertGreaterThanOrEqual(compactions, 4, "every \(every)") }
    }
  }

  func testCountMeasuresUntilThatManyEntriesAreAcknowledged() throws {
    let r = try raftBench([
      "--ready-handling", "async", "--nodes", "3", "--clients", "8", "--count", "500", "--warmup", "0", "--no-floor",
      "--fsync", "none", "--json", "--dir", try scratch(),
    ])
    XCTAssertEqual(r.status, 0, r.stderr)
    let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    XCTAssertEqual(object["nodes"] as? Int, 3)
    XCTAssertGreaterThanOrEqual(try XCTUnwrap(object["entries"] as? Int), 500)
  }

  func testTheTableComparesAsyncWithSync() throws {
    let r = try raftBench([
      "--nodes", "1", "--clients", "2", "--duration", "0.3", "--warmup", "0", "--no-floor", "--fsync", "none",
      "--dir", try scratch(),
    ])
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("sync 1 node 2 clients"), r.stdout)
    XCTAssertTrue(r.stdout.contains("async 1 node 2 clients"), r.stdout)
    XCTAssertTrue(r.stdout.contains("async / sync:"), r.stdout)
  }

  func testDirIsCreatedWhenMissing() throws {
    let dir = try scratch() + "/not/yet/there"
    let r = try raftBench([
      "--ready-handling", "async", "--nodes", "1", "--clients", "2", "--count", "50", "--warmup", "0", "--no-floor",
      "--fsync", "none", "--json", "--dir", dir,
    ])
    XCTAssertEqual(r.status, 0, r.stderr)
    var isDirectory: ObjCBool = false
    XCTAssertTrue(FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) && isDirectory.boolValue)
  }

  /// The knobs of "where asynchronous writes pay" reach the run and its JSON line: network delay,
  /// the kv state machine, batches per call, and an open loop.
  func testNetworkDelayStateMachineBatchAndRateReachTheRun() throws {
    let r = try raftBench([
      "--ready-handling", "async", "--nodes", "3", "--net-delay-us", "500", "--net-jitter-us", "100", "--state-machine",
      "kv", "--key-space", "10", "--batch", "4", "--rate", "400", "--duration", "0.5", "--warmup", "0.2", "--no-floor",
      "--fsync", "none", "--json", "--dir", try scratch(),
    ])
    XCTAssertEqual(r.status, 0, r.stderr)
    let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    XCTAssertEqual(object["net_delay_us"] as? Int, 500)
    XCTAssertEqual(object["state_machine"] as? String, "kv")
    XCTAssertEqual(object["batch"] as? Int, 4)
    XCTAssertEqual(object["rate"] as? Int, 400)
    let entries = try XCTUnwrap(object["entries"] as? Int)
    XCTAssertEqual(entries % 4, 0, "whole batches are counted: \(entries)")
    // 400 calls/s of 4 entries for 0.5 s: about 800 entries, whatever the latency (open loop).
    XCTAssertGreaterThan(entries, 400)
    XCTAssertLessThan(entries, 1600)
    // A one-way delay of 500 us (+ up to 100 us) makes every commit wait for at least one round trip.
    let latency = try XCTUnwrap(object["latency_us"] as? [String: Double])
    XCTAssertGreaterThan(try XCTUnwrap(latency["p50"]), 1000)
    XCTAssertGreaterThan(try XCTUnwrap(object["cpu_us_per_entry"] as? Double), 0)
  }
}
