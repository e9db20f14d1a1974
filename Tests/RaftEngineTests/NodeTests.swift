import Dispatch
import Raft
import RaftWAL
import Synchronization
import XCTest

@testable import RaftEngine

final class NodeTests: XCTestCase {
  /// A started single-node leader (async mode) and its directory.
  func singleLeader() throws -> (Node, String) {
    var template = Array("\(NSTemporaryDirectory())/swift-raft-node-XXXXXX".utf8CString)
    let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    var config = NodeConfiguration(id: 1, peers: [1], directory: dir)
    config.tickMicroseconds = 5_000
    let network = InMemoryNetwork()
    let node = try Node(
      configuration: config, stateMachine: RecordingStateMachine(), transport: network.transport(for: 1))
    node.start()
    node.campaign()
    let deadline = Date().addingTimeInterval(10)
    while node.leader != 1 && Date() < deadline { usleep(1_000) }
    XCTAssertEqual(node.leader, 1)
    return (node, dir)
  }

  func wait(_ node: Node, _ call: (@escaping Node.Completion) -> Void) -> Result<UInt64, EngineError> {
    let result = Mutex<Result<UInt64, EngineError>?>(nil)
    let done = DispatchSemaphore(value: 0)
    call { r in
      result.withLock { $0 = r }
      done.signal()
    }
    _ = done.wait(timeout: .now() + 10)
    return result.withLock { $0 } ?? .failure(.timedOut)
  }

  /// The nice value of this process's thread named `name` (from /proc), nil when there is none.
  func niceOfThread(named name: String) -> Int? {
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return nil }
    for t in tasks {
      guard let comm = try? String(contentsOfFile: "/proc/self/task/\(t)/comm", encoding: .utf8),
        comm.trimmingCharacters(in: .newlines) == name,
        let stat = try? String(contentsOfFile: "/proc/self/task/\(t)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
      else { continue }
      // After "pid (comm)": state is field 3, nice field 19.
      let fields = stat[stat.index(after: close)...].split(separator: " ")
      return Int(fields[16])
    }
    return nil
  }

  func testTheRunLoopThreadRunsAtTheNiceIncrementItIsGiven() throws {
    let base = Int(getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0))
    for (id, increment): (UInt64, Int) in [(7301, 7), (7302, 0)] {
      var template = Array("\(NSTemporaryDirectory())/swift-raft-nice-XXXXXX".utf8CString)
      let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
      defer { try? FileManager.default.removeItem(atPath: dir) }
      var config = NodeConfiguration(id: id, peers: [id], directory: dir)
      config.tickMicroseconds = 5_000
      config.runLoopNiceIncrement = increment
      let network = InMemoryNetwork()
      let node = try Node(
        configuration: config, stateMachine: RecordingStateMachine(), transport: network.transport(for: id))
      node.start()
      defer { node.stop() }
      // Leading means the run loop has run (it sets its priority before its first turn).
      node.campaign()
      let deadline = Date().addingTimeInterval(10)
      while node.leader != id && Date() < deadline { usleep(1_000) }
      XCTAssertEqual(node.leader, id)
      XCTAssertEqual(niceOfThread(named: "raft-node-\(id)"), min(base + increment, 19), "increment \(increment)")
    }
  }

  func testAnEntryLargerThanTheLogStoresIsRefusedAndTheNodeGoesOn() throws {
    let (node, dir) = try singleLeader()
    defer {
      node.stop()
      try? FileManager.default.removeItem(atPath: dir)
    }
    let limit = node.configuration.wal.recordBytesMax
    let huge = [UInt8](repeating: 7, count: limit)
    guard case .failure(.tooLarge(let bytes, let max)) = wait(node, { node.propose(huge, completion: $0) }) else {
      return XCTFail("an entry of the record limit's size was not refused")
    }
    XCTAssertEqual(bytes, limit)
    XCTAssertLessThan(max, limit)
    // Just under the limit is stored; the node goes on.
    let fits = [UInt8](repeating: 8, count: max)
    XCTAssertNoThrow(try wait(node, { node.propose(fits, completion: $0) }).get())
    XCTAssertNoThrow(try wait(node, { node.propose([1, 2, 3], completion: $0) }).get())
  }

  func testALeaderCutOffFromItsQuorumRefusesProposalsBeyondTheUncommittedBound() throws {
    // Followers gone: nothing commits. The leader takes proposals until the uncommitted entries
    // carry `maxUncommittedEntriesSize` bytes, then refuses the rest at once (`.dropped`, which
    // raftkv answers 503 with Retry-After) instead of holding them all in memory.
    var template = Array("\(NSTemporaryDirectory())/swift-raft-uncommitted-XXXXXX".utf8CString)
    let root = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    defer { try? FileManager.default.removeItem(atPath: root) }
    let network = InMemoryNetwork()
    defer { network.shutdown() }
    var nodes: [UInt64: Node] = [:]
    for id: UInt64 in 1...3 {
      var c = NodeConfiguration(id: id, peers: [1, 2, 3], directory: "\(root)/node-\(id)")
      c.tickMicroseconds = 5_000
      c.checkQuorum = false  // the leader keeps leading once cut off
      c.maxUncommittedEntriesSize = 4 << 20
      let node = try Node(
        configuration: c, stateMachine: RecordingStateMachine(), transport: network.transport(for: id))
      network.register(id, sink: node.sink)
      nodes[id] = node
      node.start()
    }
    defer { for n in nodes.values { n.stop() } }
    nodes[1]!.campaign()
    let deadline = Date().addingTimeInterval(10)
    while nodes[1]!.leader != 1 && Date() < deadline {
      if let other = nodes[1]!.leader, other != 1 { nodes[other]!.transferLeadership(to: 1) }
      usleep(20_000)
    }
    XCTAssertEqual(nodes[1]!.leader, 1)
    for id: UInt64 in [2, 3] {
      network.unregister(id)
      nodes[id]!.stop()
      nodes[id] = nil
    }
    let refused = Atomic<Int>(0)
    let payload = [UInt8](repeating: 9, count: 512 << 10)
    let leader = nodes[1]!
    for _ in 0..<16 {
      leader.propose(payload) { r in
        if case .failure(.dropped) = r { refused.add(1, ordering: .relaxed) }
      }
      // Two status round trips through the run loop: the first is answered in the turn that
      // took the proposal (before that turn hands it to Raft), the second in a later turn; so
      // the proposal reached Raft, and a refusal was answered, before the next one goes, and
      // each is its own message.
      for _ in 0..<2 {
        let seen = DispatchSemaphore(value: 0)
        leader.status { _ in seen.signal() }
        XCTAssertEqual(seen.wait(timeout: .now() + 10), .success)
      }
    }
    // 4 MiB of 512 KiB entries: eight are taken (and wait for a quorum); the other eight are
    // refused at once.
    XCTAssertEqual(refused.load(ordering: .relaxed), 8)
  }

  func testARefusedConfChangeFailsInsteadOfSucceeding() throws {
    let (node, dir) = try singleLeader()
    defer {
      node.stop()
      try? FileManager.default.removeItem(atPath: dir)
    }
    let first = Mutex<Result<UInt64, EngineError>?>(nil)
    let second = Mutex<Result<UInt64, EngineError>?>(nil)
    let group = DispatchGroup()
    group.enter()
    group.enter()
    // Two learner additions back to back: Raft allows one pending conf change and replaces the
    // second with an empty entry.
    node.proposeConfChange(.v2(ConfChangeV2(changes: [ConfChangeSingle(type: .addLearnerNode, nodeID: 2)]))) { r in
      first.withLock { $0 = r }
      group.leave()
    }
    node.proposeConfChange(.v2(ConfChangeV2(changes: [ConfChangeSingle(type: .addLearnerNode, nodeID: 3)]))) { r in
      second.withLock { $0 = r }
      group.leave()
    }
    XCTAssertEqual(group.wait(timeout: .now() + 10), .success)
    XCTAssertNotNil(try first.withLock { $0 }?.get())
    XCTAssertEqual(second.withLock { $0 }, .failure(.dropped))
    let learners = Mutex<[UInt64]>([])
    let got = DispatchSemaphore(value: 0)
    node.status { s in
      let l = s.config.learners.sorted()
      learners.withLock { $0 = l }
      got.signal()
    }
    XCTAssertEqual(got.wait(timeout: .now() + 5), .success)
    XCTAssertEqual(learners.withLock { $0 }, [2])
  }

  func testStopAnswersEveryProposal() throws {
    let (node, dir) = try singleLeader()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let answered = Atomic<Int>(0)
    let succeeded = Atomic<Int>(0)
    for i in 0..<2_000 {
      node.propose(Array("p\(i)".utf8)) { r in
        if case .success = r { succeeded.add(1, ordering: .relaxed) }
        answered.add(1, ordering: .relaxed)
      }
    }
    node.stop()
    XCTAssertEqual(answered.load(ordering: .relaxed), 2_000, "every proposal is answered by the time stop returns")
    XCTAssertEqual(wait(node) { node.propose([1], completion: $0) }, .failure(.stopped))
    // What succeeded is durable: a restarted node has it.
    var config = NodeConfiguration(id: 1, peers: [1], directory: dir)
    config.tickMicroseconds = 5_000
    let again = try Node(
      configuration: config, stateMachine: RecordingStateMachine(), transport: InMemoryNetwork().transport(for: 1))
    XCTAssertGreaterThanOrEqual(try again.storage.lastIndex(), UInt64(succeeded.load(ordering: .relaxed)))
    try again.storage.wal.close()
  }
}

extension NodeTests {
  func testStopFromACompletionDoesNotDeadlock() throws {
    let (node, dir) = try singleLeader()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let first = wait(node) { done in
      node.propose([1]) { r in
        node.stop()  // on the apply worker's thread
        done(r)
      }
    }
    XCTAssertNotNil(try? first.get())
    let deadline = Date().addingTimeInterval(10)
    var late: Result<UInt64, EngineError> = .success(0)
    repeat {
      late = wait(node) { node.propose([2], completion: $0) }
      if late == .failure(.stopped) { break }
      usleep(2_000)
    } while Date() < deadline
    XCTAssertEqual(late, .failure(.stopped))
  }
}
