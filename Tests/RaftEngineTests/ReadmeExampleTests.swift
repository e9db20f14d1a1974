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
    var logs: [ReplicatedLog] = []
    for id: UInt64 in 1...3 {
      var config = NodeConfiguration(id: id, peers: [1, 2, 3], directory: "\(root)/node-\(id)")
      config.readyHandling = .async  // or .sync: the etcd/raftexample baseline
      let log = try ReplicatedLog(configuration: config, transport: network.transport(for: id))
      network.register(id, sink: log.sink)
      log.start()
      logs.append(log)
    }
    logs[0].node.campaign()
    while logs[0].leader == nil { try await Task.sleep(nanoseconds: 1_000_000) }
    let leader = logs.first { $0.node.id == logs[0].leader }!
    let index = try await leader.append(Array("hello".utf8))  // committed and applied here
    _ = try await leader.readBarrier()  // local reads are linearizable from here on
    for await entry in logs[2].committed where entry.index == index {
      received = Array(entry.data)  // every node applies the same entries in the same order
      break
    }
    for log in logs { await log.shutdown() }
    network.shutdown()
    // --- end ---

    XCTAssertEqual(received, Array("hello".utf8))
  }
}
