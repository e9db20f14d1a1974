import Dispatch
import MetricsTestKit
import Raft
import RaftWAL
import Synchronization
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

  /// A transport that sends nothing and records which peers' connections the node closed.
  final class ClosingTransport: Transport, Sendable {
    let closed = Mutex<[UInt64]>([])
    /// Signalled once per disconnect.
    let disconnects = DispatchSemaphore(value: 0)
    func send(_ messages: [Message]) {}
    func disconnect(peer: UInt64) {
      closed.withLock { $0.append(peer) }
      disconnects.signal()
    }
  }

  func testARefusedPeerMessageIsCountedByKindAndItsPeerDisconnected() throws {
    var template = Array("\(NSTemporaryDirectory())/swift-raft-refused-XXXXXX".utf8CString)
    let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let metrics = TestMetrics()
    var config = NodeConfiguration(id: 7, peers: [7, 8, 9], directory: dir)
    config.metricsFactory = metrics
    let transport = ClosingTransport()
    let log = try ReplicatedLog(configuration: config, transport: transport)
    log.start()
    // A heartbeat committing far past the log, and one that skips entries.
    log.node.sink([Message(type: .msgHeartbeat, to: 7, from: 8, term: 1, commit: 1_000_000)])
    log.node.sink([
      Message(
        type: .msgApp, to: 7, from: 9, term: 1, logTerm: 1, index: 3,
        entries: [Entry(term: 1, index: 4), Entry(term: 1, index: 9)])
    ])
    for _ in 0..<2 { XCTAssertEqual(transport.disconnects.wait(timeout: .now() + 10), .success) }
    XCTAssertEqual(transport.closed.withLock { $0 }, [8, 9])
    let d = [("node", "7")]
    XCTAssertEqual(
      try metrics.expectCounter("raft_peer_messages_refused_total", d + [("kind", "commit")]).totalValue, 1)
    XCTAssertEqual(
      try metrics.expectCounter("raft_peer_messages_refused_total", d + [("kind", "entries")]).totalValue, 1)
    // The node goes on: it still answers.
    let term = Mutex<UInt64?>(nil)
    let answered = DispatchSemaphore(value: 0)
    log.node.status { st in
      term.withLock { $0 = st.basic.hardState.term }
      answered.signal()
    }
    XCTAssertEqual(answered.wait(timeout: .now() + 10), .success)
    XCTAssertEqual(term.withLock { $0 }, 1, "the term of the bootstrap, untouched")
    log.node.stop()
  }

  func testAWriteTheWALRefusesIsAnInternalFailureNotADiskFailure() {
    XCTAssertEqual(
      EngineError(storageError: WALError.invalidRequest("entries are not consecutive")),
      .internalFailure("the WAL refused a write: entries are not consecutive"))
    XCTAssertEqual(
      EngineError(storageError: WALError.io(operation: "fdatasync", file: "seg-1", errno: EIO)),
      .storage(WALError.io(operation: "fdatasync", file: "seg-1", errno: EIO)))
    XCTAssertTrue("\(EngineError.internalFailure("x"))".contains("not the disk"))
  }
}
