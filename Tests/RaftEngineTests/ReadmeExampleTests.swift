import RaftEngine
import XCTest

/// The ReplicatedLog example of README.md, kept compiling and running.
final class EngineReadmeExampleTests: XCTestCase {
  func testReadmeExample() async throws {
    var template = Array("\(NSTemporaryDirectory())/swift-raft-readme-XXXXXX".utf8CString)
    let root = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    defer { try? FileManager.default.removeItem(atPath: root) }
    var received: [UInt8] = []

    // --- README ---
    let network = InMemoryNetwork()  // three nodes in one process; raftkv uses TCP
    var logs: [ReplicatedLog<NoStateMachine>] = []  // or your LogStateMachine, for responses
    for id: UInt64 in 1...3 {
      var config = NodeConfiguration(id: id, peers: [1, 2, 3], directory: "\(root)/node-\(id)")
      config.readyHandling = .async  // or .sync: the etcd/raftexample baseline
      let log = try await ReplicatedLog.open(configuration: config, transport: network.transport(for: id))
      network.register(id, sink: log.sink)
      log.start()
      logs.append(log)
    }
    logs[0].campaign()
    let leaderID = try await logs[0].waitForLeader()
    let leader = logs.first { $0.id == leaderID }!
    let appended = try await leader.append(Array("hello".utf8))  // committed and applied here
    _ = try await leader.readBarrier()  // local reads are linearizable from here on
    reading: for try await batch in logs[2].entries(from: 1) {  // every node: same entries, same order
      for entry in batch where entry.index == appended.index {
        received = Array(entry.data)
        break reading
      }
    }
    try await leader.compact(through: appended.index)  // consumed: memory and disk are reclaimed
    for log in logs { await log.shutdown() }
    network.shutdown()
    // --- end ---

    XCTAssertEqual(received, Array("hello".utf8))
  }
}
