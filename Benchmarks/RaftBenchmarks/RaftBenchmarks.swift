import Benchmark
import Foundation
import Raft
import RaftEngine
import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

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
  // Time is measured without malloc counting (the interposer's hooks would be part of the
  // figure); allocations are counted in separate runs of the same loop.
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock, .throughput],
    scalingFactor: .kilo,
    maxDuration: .seconds(3),
    maxIterations: 1_000_000
  )

  for (name, voters) in [("single-voter", [UInt64(1)]), ("two-voters", [UInt64(1), 2])] {
    for (suffix, metrics) in [("", [BenchmarkMetric.wallClock, .throughput]), (" (allocations)", [.mallocCountTotal])] {
      Benchmark("RawNode propose+ready+advance \(name)\(suffix)", configuration: .init(metrics: metrics)) { benchmark in
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

  // The engine core: a batch of 256 x 128 B entries from the proposal to its completion (the
  // Ready, the write, its durable acknowledgement, the commit, the apply job, the completion),
  // in memory, single voter, both Ready handling modes (`InMemoryEngine`). One iteration is one
  // batch; figures per entry are the figures per iteration / 256. The client's side is counted
  // too: the array of payload views (into a buffer the client keeps) and the completion.
  // Allocation budget: at most 0.05 per entry (12.8 per batch). The counts are checked against
  // the static thresholds in Thresholds/ with no tolerance: one allocation more fails
  // `tools/bench` (`benchmark thresholds check`).
  for mode in [NodeConfiguration.ReadyHandling.async, .sync] {
    Benchmark(
      // (No spaces: the plugin writes threshold files with them replaced and reads them back
      // without.)
      "CoreProposeBatch256x128B-\(mode)-allocations",
      configuration: .init(
        metrics: [.mallocCountTotal], scalingFactor: .one,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
    ) { benchmark in
      let engine = try InMemoryEngine(readyHandling: mode)
      let buffer = [UInt8](repeating: 0x5A, count: 256 * 128)
      let completion: ProposalCompletion = { result in
        if case .failure(let e) = result { preconditionFailure("a batch failed: \(e)") }
      }
      benchmark.startMeasurement()
      for _ in benchmark.scaledIterations {
        let payloads = (0..<256).map { k in Payload(buffer, (k * 128)..<((k + 1) * 128)) }
        try engine.proposeBatch(payloads, completion: completion)
      }
      benchmark.stopMeasurement()
    }
    Benchmark(
      "Core propose 256x128B batch, \(mode)",
      configuration: .init(metrics: [.wallClock, .throughput], scalingFactor: .one)
    ) { benchmark in
      let engine = try InMemoryEngine(readyHandling: mode)
      let buffer = [UInt8](repeating: 0x5A, count: 256 * 128)
      let completion: ProposalCompletion = { result in
        if case .failure(let e) = result { preconditionFailure("a batch failed: \(e)") }
      }
      benchmark.startMeasurement()
      for _ in benchmark.scaledIterations {
        let payloads = (0..<256).map { k in Payload(buffer, (k * 128)..<((k + 1) * 128)) }
        try engine.proposeBatch(payloads, completion: completion)
      }
      benchmark.stopMeasurement()
    }
  }

  // The binary codec: a MsgApp carrying 64 entries of 128 bytes (the shape of a replication
  // batch), encoded into a reused buffer and decoded back.
  let payload = [UInt8](repeating: 0xAB, count: 128)
  let entries = (1...64).map { Entry(term: 7, index: 1_000 + UInt64($0), data: payload) }
  let app = Message(type: .msgApp, to: 2, from: 1, term: 7, logTerm: 7, index: 1_000, entries: entries, commit: 990)
  let encoded = RaftCodec.encodeMessage(app)

  Benchmark("Codec encode MsgApp 64x128B") { benchmark in
    var buffer: [UInt8] = []
    buffer.reserveCapacity(encoded.count)
    for _ in benchmark.scaledIterations {
      buffer.removeAll(keepingCapacity: true)
      RaftCodec.encodeMessage(app, into: &buffer)
      blackHole(buffer.count)
    }
  }

  Benchmark("Codec decode MsgApp 64x128B") { benchmark in
    for _ in benchmark.scaledIterations {
      blackHole(try RaftCodec.decodeMessage(encoded).entries.count)
    }
  }

  for size in [128, 4096] {
    let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    Benchmark("CRC32C \(size)B (\(CRC32C.usesHardware ? "sse4.2" : "table"))") { benchmark in
      for _ in benchmark.scaledIterations {
        blackHole(CRC32C.checksum(bytes))
      }
    }
  }

  // The CPU side of a WAL append: 256 entries of 128 B framed, checksummed and written to the page
  // cache (posix, fsync none: no disk wait; raft-bench wal measures the disk).
  Benchmark("WAL append 256x128B (posix, fsync none)", configuration: .init(metrics: [.wallClock, .mallocCountTotal])) {
    benchmark in
    var template = Array("/tmp/raft-benchmark-wal-XXXXXX".utf8CString)
    let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    var options = WALOptions()
    options.io = .posix
    options.fsync = .none
    options.segmentBytes = 256 << 20
    let wal = try WAL(directory: dir, options: options)
    let payload = [UInt8](repeating: 0x5A, count: 128)
    var index: UInt64 = 1
    var entries: [Entry] = []
    entries.reserveCapacity(256)
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
      entries.removeAll(keepingCapacity: true)
      for _ in 0..<256 {
        entries.append(Entry(term: 1, index: index, data: payload))
        index += 1
      }
      try wal.append(entries: entries)
      try wal.submit()
    }
    benchmark.stopMeasurement()
    try wal.close()
    for name in try FileManager.default.contentsOfDirectory(atPath: dir) { unlink(dir + "/" + name) }
    rmdir(dir)
  }
}
