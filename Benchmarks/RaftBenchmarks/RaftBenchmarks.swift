import Benchmark
import Raft

// The in-memory propose path, equivalent to etcd-raft's BenchmarkRawNode: one iteration proposes
// a 3-byte entry, then handles Readys (persist to MemoryStorage, answer the leader's messages as
// the followers would, apply, advance) until none is left.

/// A RawNode that is leader of `voters`, with its MemoryStorage, ready for proposals.
final class ProposeLoop {
  let storage = MemoryStorage()
  let node: RawNode
  var readies = 0

  init(voters: [UInt64]) throws {
    try storage.applySnapshot(
      Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: voters), index: 1, term: 1)))
    var config = Config(id: 1, electionTick: 10, heartbeatTick: 1, storage: storage)
    config.randomSeed = 1
    node = try RawNode(config: config)
    try node.campaign()
    _ = try stabilize()
  }

  /// Handles Readys until the node has none; returns the last applied index (0 if none).
  @discardableResult
  func stabilize() throws -> UInt64 {
    var applied: UInt64 = 0
    while node.hasReady() {
      readies += 1
      let rd = node.ready()
      if !rd.hardState.isEmpty { try storage.setHardState(rd.hardState) }
      for m in rd.messages {
        switch m.type {
        case .msgVote:
          try node.step(Message(type: .msgVoteResp, to: m.from, from: m.to, term: m.term))
        case .msgApp:
          let index = m.entries.last?.index ?? m.index
          try node.step(Message(type: .msgAppResp, to: m.from, from: m.to, term: m.term, index: index))
        default:
          break
        }
      }
      try storage.append(rd.entries)
      if let last = rd.committedEntries.last { applied = last.index }
      node.advance(rd)
    }
    return applied
  }
}

let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock, .mallocCountTotal, .throughput],
    scalingFactor: .kilo,
    maxDuration: .seconds(3),
    maxIterations: 1_000_000
  )

  for (name, voters) in [("single-voter", [UInt64(1)]), ("two-voters", [UInt64(1), 2])] {
    Benchmark("RawNode propose+ready+advance \(name)") { benchmark in
      let loop = try ProposeLoop(voters: voters)
      let payload: [UInt8] = Array("foo".utf8)
      benchmark.startMeasurement()
      for _ in benchmark.scaledIterations {
        try loop.node.propose(payload)
        blackHole(try loop.stabilize())
      }
      benchmark.stopMeasurement()
    }
  }
}
