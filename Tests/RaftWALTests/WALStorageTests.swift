import Raft
import XCTest

@testable import RaftWAL

final class WALStorageTests: XCTestCase {
  func testSurvivesRestartAndDrivesARawNode() throws {
    let dir = makeTemporaryDirectory("storage")
    defer { removeDirectory(dir) }

    // A single-voter node: campaign, propose, persist every Ready through the WAL storage.
    func runNode(_ storage: WALStorage, proposals: Int) throws -> UInt64 {
      var config = Config(id: 1, electionTick: 10, heartbeatTick: 1, storage: storage)
      config.maxInflightMsgs = 256
      let node = try RawNode(config: config)
      if try storage.lastIndex() == 0 {
        try node.bootstrap([Peer(id: 1)])
      }
      var proposed = 0
      var applied: UInt64 = 0
      for _ in 0..<10_000 {
        if proposed < proposals, node.basicStatus().softState.raftState == .leader {
          try node.propose(Array("value \(proposed)".utf8))
          proposed += 1
        }
        guard node.hasReady() else {
          if proposed == proposals { break }
          // Campaign once the bootstrap configuration entry is applied.
          if node.basicStatus().softState.raftState != .leader { try node.campaign() }
          continue
        }
        let rd = node.ready()
        try storage.save(
          entries: rd.entries, hardState: rd.hardState.isEmpty ? nil : rd.hardState,
          snapshot: rd.hasSnapshot ? rd.snapshot : nil)
        for m in rd.messages where m.to == 1 { try node.step(m) }
        if let last = rd.committedEntries.last { applied = last.index }
        node.advance(rd)
      }
      return applied
    }

    let first = try WALStorage(wal: try WAL(directory: dir, options: smallOptions()))
    let applied = try runNode(first, proposals: 50)
    XCTAssertGreaterThanOrEqual(applied, 50)
    let last = try first.lastIndex()
    let hs = try first.initialState().0
    let snapIndex = applied - 10
    try first.createSnapshot(snapIndex, confState: ConfState(voters: [1]), data: Array("app state".utf8))
    try first.compact(snapIndex - 5)
    try first.wal.close()

    let second = try WALStorage(wal: try WAL(directory: dir, options: smallOptions()))
    XCTAssertEqual(try second.lastIndex(), last)
    // As with etcd's WAL, a restarted storage starts at the snapshot: the entries kept below it
    // for slow followers before the restart are not reloaded.
    XCTAssertEqual(try second.firstIndex(), snapIndex + 1)
    XCTAssertEqual(try second.initialState().0, hs)
    XCTAssertEqual(try second.snapshot().data, Array("app state".utf8))
    XCTAssertEqual(try second.snapshot().metadata.confState.voters, [1])
    let tail = try second.entries(lo: snapIndex + 1, hi: last + 1, maxSize: noLimit)
    XCTAssertEqual(tail.map(\.index), Array((snapIndex + 1)...last))
    XCTAssertEqual(tail.last?.data, Payload(Array("value 49".utf8)))
    // The restarted node keeps going from the recovered log.
    XCTAssertGreaterThanOrEqual(try runNode(second, proposals: 10), last + 10)
    try second.wal.close()
  }
}
