import Raft
import RaftWAL
import Synchronization
import XCTest

@testable import RaftEngine

/// A state machine whose state (the list of applied values) goes into snapshots.
final class SnapshottingStateMachine: StateMachine, Sendable {
  let values = Mutex<[[UInt8]]>([])
  let restores = Atomic<Int>(0)

  func apply(index: UInt64, term: UInt64, data: Payload) { values.withLock { $0.append(Array(data)) } }

  func snapshotData() -> [UInt8]? {
    values.withLock { vs in
      var out: [UInt8] = []
      for v in vs {
        out.append(UInt8(v.count))
        out += v
      }
      return out
    }
  }

  func restore(snapshot: Snapshot) {
    restores.add(1, ordering: .relaxed)
    var vs: [[UInt8]] = []
    var i = 0
    let d = snapshot.data
    while i < d.count {
      let n = Int(d[i])
      vs.append(Array(d[(i + 1)..<(i + 1 + n)]))
      i += 1 + n
    }
    values.withLock { $0 = vs }
  }
}

final class CompactionTests: XCTestCase {
  func testTheLogIsCompactedAndALaggingFollowerCatchesUpFromASnapshot() throws {
    for mode in NodeConfiguration.ReadyHandling.allCases {
      var template = Array("\(NSTemporaryDirectory())/swift-raft-compact-XXXXXX".utf8CString)
      let root = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
      defer { try? FileManager.default.removeItem(atPath: root) }
      let network = InMemoryNetwork()
      defer { network.shutdown() }
      var nodes: [UInt64: Node] = [:]
      var machines: [UInt64: SnapshottingStateMachine] = [:]
      func start(_ id: UInt64, peers: [UInt64] = [1, 2, 3]) throws {
        var c = NodeConfiguration(id: id, peers: peers, directory: "\(root)/node-\(id)")
        c.readyHandling = mode
        c.tickMicroseconds = 5_000
        c.snapshotEntries = 50
        c.compactionRetainEntries = 10
        c.wal.segmentBytes = 64 << 10
        c.wal.recordBytesMax = 16 << 10
        let sm = SnapshottingStateMachine()
        let node = try Node(configuration: c, stateMachine: sm, transport: network.transport(for: id))
        network.register(id, sink: node.sink)
        nodes[id] = node
        machines[id] = sm
        node.start()
      }
      for id: UInt64 in 1...3 { try start(id) }
      defer { for n in nodes.values { n.stop() } }
      nodes[1]!.campaign()
      var deadline = Date().addingTimeInterval(10)
      while nodes[1]!.leader != 1 && Date() < deadline {
        // On a loaded machine another node may win first: ask it to hand over.
        if let other = nodes[1]!.leader, other != 1 { nodes[other]!.transferLeadership(to: 1) }
        usleep(20_000)
      }
      XCTAssertEqual(nodes[1]!.leader, 1, "\(mode)")
      // Node 3 goes away before the entries are written.
      network.unregister(3)
      nodes[3]!.stop()
      nodes[3] = nil

      let group = DispatchGroup()
      let ok = Atomic<Int>(0)
      for i in 0..<300 {
        group.enter()
        nodes[1]!.propose(Array("v\(i)".utf8)) { r in
          if case .success = r { ok.add(1, ordering: .relaxed) }
          group.leave()
        }
      }
      XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
      XCTAssertEqual(ok.load(ordering: .relaxed), 300, "\(mode)")
      // The leader's log was compacted behind a snapshot (async: on the append worker, shortly).
      deadline = Date().addingTimeInterval(10)
      func compacted() throws -> Bool {
        try nodes[1]!.storage.firstIndex() >= 200 && nodes[1]!.storage.snapshot().metadata.index >= 250
      }
      while try !compacted() && Date() < deadline { usleep(2_000) }
      XCTAssertGreaterThanOrEqual(try nodes[1]!.storage.firstIndex(), 200, "\(mode)")
      XCTAssertGreaterThanOrEqual(try nodes[1]!.storage.snapshot().metadata.index, 250, "\(mode)")

      // Node 3 comes back: its log is behind the leader's first index, so it gets a snapshot.
      try start(3)
      deadline = Date().addingTimeInterval(20)
      while machines[3]!.values.withLock({ $0.count }) < 300 && Date() < deadline { usleep(2_000) }
      let expected = (0..<300).map { Array("v\($0)".utf8) }
      XCTAssertEqual(machines[3]!.values.withLock { $0 }, expected, "\(mode): node 3 did not catch up")
      XCTAssertGreaterThanOrEqual(machines[3]!.restores.load(ordering: .relaxed), 1, "\(mode): no snapshot installed")
      XCTAssertEqual(machines[2]!.values.withLock { $0 }, expected, "\(mode)")

      // A new member, node 4, joins on an empty disk (no bootstrap): the log it needs is
      // compacted, so it starts from a snapshot, and its own later snapshots must carry the
      // configuration that snapshot gave it.
      let added = DispatchSemaphore(value: 0)
      nodes[1]!.proposeConfChange(.v1(ConfChange(type: .addNode, nodeID: 4))) { _ in added.signal() }
      XCTAssertEqual(added.wait(timeout: .now() + 10), .success)
      try start(4, peers: [])
      deadline = Date().addingTimeInterval(20)
      while machines[4]!.values.withLock({ $0.count }) < 300 && Date() < deadline { usleep(2_000) }
      XCTAssertEqual(machines[4]!.values.withLock { $0 }, expected, "\(mode): node 4 did not catch up")
      let installed = try nodes[4]!.storage.snapshot().metadata.index
      XCTAssertGreaterThan(installed, 0, "\(mode): node 4 did not start from a snapshot")
      for i in 300..<400 {
        group.enter()
        nodes[1]!.propose(Array("v\(i)".utf8)) { _ in group.leave() }
      }
      XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
      deadline = Date().addingTimeInterval(10)
      while try nodes[4]!.storage.snapshot().metadata.index <= installed && Date() < deadline { usleep(2_000) }
      let own = try nodes[4]!.storage.snapshot().metadata
      XCTAssertGreaterThan(own.index, installed, "\(mode): node 4 took no snapshot of its own")
      XCTAssertEqual(own.confState.voters.sorted(), [1, 2, 3, 4], "\(mode): node 4's snapshot lost the configuration")
    }
  }
}
