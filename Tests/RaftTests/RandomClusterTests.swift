import XCTest

@testable import Raft

/// Seeded random runs of in-memory clusters (synchronous and asynchronous storage writes) over a
/// lossy, reordering network, checking Raft's safety properties after every step: at most one
/// leader per term, and every node applies the same entry at a given index.
final class RandomClusterTests: XCTestCase {
  final class SimNode {
    let id: UInt64
    let storage: MemoryStorage
    let node: RawNode
    let async: Bool
    /// Storage thread queues of the asynchronous mode (processed in order, later).
    var appendQueue: [Message] = []
    var applyQueue: [Message] = []
    var applied: [UInt64: Entry] = [:]
    var lastApplied: UInt64

    init(id: UInt64, voters: [UInt64], async: Bool, seed: UInt64) throws {
      self.id = id
      self.async = async
      storage = MemoryStorage()
      try storage.applySnapshot(
        Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: voters), index: 1, term: 1)))
      var cfg = Config(id: id, electionTick: 10, heartbeatTick: 1, storage: storage)
      cfg.asyncStorageWrites = async
      cfg.preVote = seed % 2 == 0
      cfg.checkQuorum = seed % 3 == 0
      cfg.randomSeed = seed &* 31 &+ id
      cfg.maxSizePerMsg = 64
      cfg.maxInflightMsgs = 4
      node = try RawNode(config: cfg)
      lastApplied = 1
    }
  }

  struct Violation: Error, CustomStringConvertible { var description: String }

  func run(seed: UInt64, async: Bool, steps: Int) throws -> (committed: UInt64, leaders: Int) {
    var rng = SplitMix64(seed: seed)
    let ids: [UInt64] = [1, 2, 3]
    let nodes = try ids.map { try SimNode(id: $0, voters: ids, async: async, seed: seed) }
    var network: [Message] = []
    var leaderOfTerm: [UInt64: UInt64] = [:]
    var proposals = 0

    func apply(_ n: SimNode, _ entries: [Entry]) throws {
      for e in entries {
        guard e.index > n.lastApplied else { continue }
        if e.index != n.lastApplied + 1 {
          throw Violation(description: "node \(n.id) applied \(e.index) after \(n.lastApplied)")
        }
        n.applied[e.index] = e
        n.lastApplied = e.index
        for other in nodes where other !== n {
          if let o = other.applied[e.index], o != e {
            throw Violation(description: "nodes \(n.id) and \(other.id) applied different entries at \(e.index)")
          }
        }
      }
    }

    for _ in 0..<steps {
      let action = Int.random(in: 0..<100, using: &rng)
      let n = nodes[Int.random(in: 0..<nodes.count, using: &rng)]
      switch action {
      case 0..<30:
        n.node.tick()
      case 30..<45:
        proposals += 1
        try? n.node.propose(Array("p\(proposals)".utf8))
      case 45..<85:
        guard !network.isEmpty else { continue }
        // Deliver a random message (reordering across the network); drop 10%.
        let i = Int.random(in: 0..<network.count, using: &rng)
        let m = network.remove(at: i)
        if Int.random(in: 0..<10, using: &rng) == 0 { continue }
        try? nodes[Int(m.to) - 1].node.step(m)
      default:
        // Storage threads of the asynchronous mode.
        if !n.appendQueue.isEmpty {
          let m = n.appendQueue.removeFirst()
          if m.term != 0 || m.vote != 0 || m.commit != 0 {
            try n.storage.setHardState(HardState(term: m.term, vote: m.vote, commit: m.commit))
          }
          if let snap = m.snapshot { try n.storage.applySnapshot(snap) }
          try n.storage.append(m.entries)
          for r in m.responses {
            if r.to == n.id { try n.node.step(r) } else { network.append(r) }
          }
        }
        if !n.applyQueue.isEmpty {
          let m = n.applyQueue.removeFirst()
          try apply(n, m.entries)
          for r in m.responses { try n.node.step(r) }
        }
      }
      // Handle Readys.
      for n in nodes where n.node.hasReady() {
        let rd = n.node.ready()
        if let soft = rd.softState, soft.raftState == .leader {
          let term = n.node.basicStatus().hardState.term
          if let other = leaderOfTerm[term], other != n.id {
            throw Violation(description: "two leaders in term \(term): \(other) and \(n.id)")
          }
          leaderOfTerm[term] = n.id
        }
        if n.async {
          for m in rd.messages {
            switch m.to {
            case localAppendThread: n.appendQueue.append(m)
            case localApplyThread: n.applyQueue.append(m)
            default: network.append(m)
            }
          }
        } else {
          if !rd.snapshot.isEmpty { try n.storage.applySnapshot(rd.snapshot) }
          if !rd.hardState.isEmpty { try n.storage.setHardState(rd.hardState) }
          try n.storage.append(rd.entries)
          network += rd.messages
          try apply(n, rd.committedEntries)
          n.node.advance(rd)
        }
      }
    }
    return (nodes.map(\.lastApplied).max()!, leaderOfTerm.count)
  }

  /// Runs 40 seeds in the given mode; every run must stay safe, and together they must commit.
  func assertClustersStaySafe(async: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
    var committed: UInt64 = 0
    for seed in UInt64(1)...40 {
      do {
        committed += try run(seed: seed, async: async, steps: 3000).committed
      } catch let v as Violation {
        XCTFail("seed \(seed) (\(async ? "async" : "sync")): \(v)", file: file, line: line)
      }
    }
    XCTAssertGreaterThan(committed, 40 * 5, "the clusters made progress", file: file, line: line)
  }

  func testSynchronousClustersStaySafe() throws { try assertClustersStaySafe(async: false) }

  func testAsynchronousStorageWritesClustersStaySafe() throws { try assertClustersStaySafe(async: true) }
}
