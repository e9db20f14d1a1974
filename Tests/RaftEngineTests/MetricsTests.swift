import MetricsTestKit
import Raft
import RaftWAL
import XCTest

@testable import RaftEngine

final class MetricsTests: XCTestCase {
  func testTheEngineRecordsLatenciesBatchesAndInboxDepth() async throws {
    var template = Array("\(NSTemporaryDirectory())/swift-raft-metrics-XXXXXX".utf8CString)
    let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let metrics = TestMetrics()
    var config = NodeConfiguration(id: 7, peers: [7], directory: dir)
    config.tickMicroseconds = 5_000
    config.metricsFactory = metrics
    let network = InMemoryNetwork()
    let log = try ReplicatedLog(configuration: config, transport: network.transport(for: 7))
    log.start()
    log.node.campaign()
    var appended = 0
    for _ in 0..<400 where appended < 20 {
      do {
        _ = try await log.append([1, 2, 3])
        appended += 1
      } catch {
        try await Task.sleep(nanoseconds: 5_000_000)
      }
    }
    XCTAssertEqual(appended, 20)
    await log.shutdown()

    let d = [("node", "7")]
    XCTAssertGreaterThanOrEqual(try metrics.expectTimer("raft_proposal_to_commit", d).values.count, 20)
    XCTAssertGreaterThanOrEqual(try metrics.expectTimer("raft_commit_to_apply", d).values.count, 20)
    let syncs = try metrics.expectTimer("raft_wal_batch_sync", d).values
    XCTAssertFalse(syncs.isEmpty)
    XCTAssertTrue(syncs.allSatisfy { $0 > 0 })
    XCTAssertFalse(try metrics.expectRecorder("raft_wal_batch_entries", d).values.isEmpty)
    XCTAssertTrue(try metrics.expectRecorder("raft_wal_batch_bytes", d).values.allSatisfy { $0 > 0 })
    XCTAssertFalse(try metrics.expectTimer("raft_ready_handling", d).values.isEmpty)
    XCTAssertFalse(try metrics.expectRecorder("raft_inbox_depth", d).values.isEmpty)
    network.shutdown()
  }
}
