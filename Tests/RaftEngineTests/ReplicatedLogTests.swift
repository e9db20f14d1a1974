import Raft
import RaftEngine
import RaftWAL
import XCTest

final class ReplicatedLogTests: XCTestCase {
  func attempt(_ log: ReplicatedLog, _ data: [UInt8]) async -> Result<UInt64, EngineError> {
    do {
      return .success(try await log.append(data))
    } catch {
      return .failure(error)
    }
  }

  func testSingleNodeAppendStreamReadBarrierAndRestart() async throws {
    var template = Array("\(NSTemporaryDirectory())/swift-raft-log-XXXXXX".utf8CString)
    let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for mode in NodeConfiguration.ReadyHandling.allCases {
      let network = InMemoryNetwork()
      var config = NodeConfiguration(id: 1, peers: [1], directory: "\(dir)/\(mode)")
      config.readyHandling = mode
      config.tickMicroseconds = 5_000
      let log = try ReplicatedLog(configuration: config, transport: network.transport(for: 1))
      network.register(1, sink: log.sink)
      log.start()
      log.node.campaign()
      var first: UInt64 = 0
      for _ in 0..<200 {
        if case .success(let index) = await attempt(log, Array("a".utf8)) {
          first = index
          break
        }
        try await Task.sleep(nanoseconds: 5_000_000)
      }
      XCTAssertGreaterThan(first, 0, "\(mode): never became leader")
      var indexes = [first]
      for i in 0..<49 { indexes.append(try await log.append(Array("v\(i)".utf8))) }
      XCTAssertEqual(indexes, Array(first..<(first + 50)), "\(mode)")
      let barrier = try await log.readBarrier()
      XCTAssertGreaterThanOrEqual(barrier, indexes.last!)
      XCTAssertGreaterThanOrEqual(log.appliedIndex, barrier)
      var streamed: [CommittedEntry] = []
      for await e in log.committed {
        streamed.append(e)
        if streamed.count == 50 { break }
      }
      XCTAssertEqual(streamed.map(\.index), indexes)
      XCTAssertEqual(streamed.last.map { Array($0.data) }, Array("v48".utf8))
      await log.shutdown()
      let late = await attempt(log, [1])
      XCTAssertEqual(late, .failure(.stopped))

      // Restarted from its WAL, the node applies the same entries again and goes on.
      let again = try ReplicatedLog(configuration: config, transport: network.transport(for: 1))
      network.register(1, sink: again.sink)
      again.start()
      again.node.campaign()
      var replayed: [CommittedEntry] = []
      for await e in again.committed {
        replayed.append(e)
        if replayed.count == 50 { break }
      }
      XCTAssertEqual(replayed, streamed, "\(mode)")
      await again.shutdown()
      network.shutdown()
    }
  }
}
