import Dispatch
import Raft
import RaftWAL
import Synchronization
import XCTest

@testable import RaftEngine

/// A state machine that records what it applies.
final class RecordingStateMachine: StateMachine, Sendable {
  let log = Mutex<[(index: UInt64, data: [UInt8])]>([])
  func apply(index: UInt64, term: UInt64, data: Payload) { log.withLock { $0.append((index, Array(data))) } }
  func restore(snapshot: Snapshot) { log.withLock { $0 = [] } }
  var values: [[UInt8]] { log.withLock { $0.map(\.data) } }
  var indexes: [UInt64] { log.withLock { $0.map(\.index) } }
}

/// An in-process cluster over an `InMemoryNetwork`, each node with its own WAL directory.
final class TestCluster {
  let network = InMemoryNetwork()
  let mode: NodeConfiguration.ReadyHandling
  let storageThreads: NodeConfiguration.StorageThreads
  let ids: [UInt64]
  let root: String
  var nodes: [UInt64: Node] = [:]
  var machines: [UInt64: RecordingStateMachine] = [:]

  init(
    size: Int, mode: NodeConfiguration.ReadyHandling, storageThreads: NodeConfiguration.StorageThreads = .auto
  ) throws {
    self.mode = mode
    self.storageThreads = storageThreads
    ids = (1...UInt64(size)).map { $0 }
    var template = Array("\(NSTemporaryDirectory())/swift-raft-cluster-XXXXXX".utf8CString)
    root = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    for id in ids { try startNode(id) }
  }

  func startNode(_ id: UInt64) throws {
    var c = NodeConfiguration(id: id, peers: ids, directory: "\(root)/node-\(id)")
    c.readyHandling = mode
    c.storageThreads = storageThreads
    c.tickMicroseconds = 5_000
    c.wal.segmentBytes = 1 << 20
    c.wal.recordBytesMax = 64 << 10
    let sm = RecordingStateMachine()
    let node = try Node(configuration: c, stateMachine: sm, transport: network.transport(for: id))
    network.register(id, sink: node.sink)
    nodes[id] = node
    machines[id] = sm
    node.start()
  }

  func stopNode(_ id: UInt64) {
    network.unregister(id)
    nodes[id]?.stop()
    nodes[id] = nil
  }

  func shutdown() {
    for id in Array(nodes.keys) { stopNode(id) }
    network.shutdown()
    try? FileManager.default.removeItem(atPath: root)
  }

  /// Waits until a node that is running sees itself as leader; returns it.
  func waitForLeader(excluding: Set<UInt64> = [], timeout: Double = 10) -> UInt64? {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      for (id, node) in nodes where !excluding.contains(id) && node.leader == id { return id }
      usleep(2_000)
    }
    return nil
  }

  /// Proposes each value on `leader` and waits for all completions.
  func proposeAll(_ values: [[UInt8]], on leader: UInt64) -> [Result<UInt64, EngineError>] {
    let results = Mutex<[Int: Result<UInt64, EngineError>]>([:])
    let group = DispatchGroup()
    for (k, v) in values.enumerated() {
      group.enter()
      nodes[leader]!.propose(v) { r in
        results.withLock { $0[k] = r }
        group.leave()
      }
    }
    _ = group.wait(timeout: .now() + 20)
    return results.withLock { r in values.indices.map { r[$0] ?? .failure(.timedOut) } }
  }

  /// Waits until every running node has applied `count` values.
  func waitApplied(_ count: Int, timeout: Double = 20) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      if nodes.keys.allSatisfy({ machines[$0]!.values.count >= count }) { return true }
      usleep(2_000)
    }
    return false
  }
}

final class ClusterTests: XCTestCase {
  func values(_ range: Range<Int>) -> [[UInt8]] { range.map { Array("value-\($0)".utf8) } }

  func checkCommitAndApply(
    size: Int, mode: NodeConfiguration.ReadyHandling, storageThreads: NodeConfiguration.StorageThreads = .auto
  ) throws -> [[UInt8]] {
    let cluster = try TestCluster(size: size, mode: mode, storageThreads: storageThreads)
    defer { cluster.shutdown() }
    cluster.nodes[1]!.campaign()
    let leader = try XCTUnwrap(cluster.waitForLeader(), "\(size) nodes, \(mode): no leader")
    let results = cluster.proposeAll(values(0..<300), on: leader)
    let indexes = results.compactMap { try? $0.get() }
    XCTAssertEqual(indexes.count, 300, "\(mode): \(results.filter { (try? $0.get()) == nil }.prefix(3))")
    XCTAssertEqual(indexes, indexes.sorted(), "proposals commit in order")
    XCTAssertTrue(cluster.waitApplied(300), "\(mode): not every node applied everything")
    let reference = cluster.machines[leader]!.values
    XCTAssertEqual(reference, values(0..<300))
    for id in cluster.ids {
      XCTAssertEqual(cluster.machines[id]!.values, reference, "node \(id) applied a different sequence")
    }
    // Followers refuse proposals and name the leader.
    if size > 1 {
      let follower = cluster.ids.first { $0 != leader }!
      let r = cluster.proposeAll([[1]], on: follower)
      XCTAssertEqual(
        r.first.map { if case .failure(let e) = $0 { return e } else { return .dropped } }, .notLeader(leader: leader))
    }
    return reference
  }

  func testOneNodeCommitsAndAppliesInBothModes() throws {
    let a = try checkCommitAndApply(size: 1, mode: .async)
    let s = try checkCommitAndApply(size: 1, mode: .sync)
    XCTAssertEqual(a, s)
  }

  func testThreeNodesCommitAndApplyTheSameSequenceInBothModes() throws {
    let a = try checkCommitAndApply(size: 3, mode: .async)
    let s = try checkCommitAndApply(size: 3, mode: .sync)
    XCTAssertEqual(a, s)
  }

  func testOneStorageThreadAndTwoCommitAndApplyTheSameSequence() throws {
    let one = try checkCommitAndApply(size: 3, mode: .async, storageThreads: .one)
    let two = try checkCommitAndApply(size: 3, mode: .async, storageThreads: .two)
    XCTAssertEqual(one, two)
  }

  func testKillingTheLeaderLosesNothingAndTheRestartedNodeCatchesUp() throws {
    for mode in NodeConfiguration.ReadyHandling.allCases {
      let cluster = try TestCluster(size: 3, mode: mode)
      defer { cluster.shutdown() }
      cluster.nodes[1]!.campaign()
      let first = try XCTUnwrap(cluster.waitForLeader())
      let before = cluster.proposeAll(values(0..<100), on: first)
      XCTAssertEqual(before.compactMap { try? $0.get() }.count, 100, "\(mode)")
      cluster.stopNode(first)
      // While there is no leader, proposals to the survivors fail with a clear error.
      let during = cluster.proposeAll([[9]], on: cluster.ids.first { $0 != first }!)
      if case .failure(let e) = during[0] {
        switch e {
        case .notLeader: break
        default: XCTFail("\(mode): \(e)")
        }
      }
      let second = try XCTUnwrap(cluster.waitForLeader(excluding: [first], timeout: 20), "\(mode): no new leader")
      let after = cluster.proposeAll(values(100..<200), on: second)
      XCTAssertEqual(after.compactMap { try? $0.get() }.count, 100, "\(mode)")
      // The old leader restarts from its WAL and catches up.
      try cluster.startNode(first)
      XCTAssertTrue(cluster.waitApplied(200), "\(mode): the restarted node did not catch up")
      for id in cluster.ids {
        XCTAssertEqual(cluster.machines[id]!.values, values(0..<200), "\(mode): node \(id)")
      }
    }
  }
}
