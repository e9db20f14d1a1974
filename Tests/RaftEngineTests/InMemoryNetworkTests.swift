import Raft
import Synchronization
import XCTest

@testable import RaftEngine

final class InMemoryNetworkTests: XCTestCase {
  /// Collects what each node receives.
  final class Inboxes: Sendable {
    let received = Mutex<[UInt64: [Message]]>([:])
    func sink(_ id: UInt64) -> MessageSink {
      { ms in self.received.withLock { $0[id, default: []] += ms } }
    }
    func of(_ id: UInt64) -> [Message] { received.withLock { $0[id] ?? [] } }
  }

  func msg(_ from: UInt64, _ to: UInt64, _ index: UInt64) -> Message {
    Message(type: .msgApp, to: to, from: from, term: 1, index: index)
  }

  func waitUntil(_ condition: () -> Bool) {
    let deadline = Date().addingTimeInterval(5)
    while !condition() && Date() < deadline { usleep(1000) }
  }

  func testDeliversInOrderPerPairEvenWhenTheDelayChanges() {
    let net = InMemoryNetwork()
    defer { net.shutdown() }
    let inboxes = Inboxes()
    for id: UInt64 in 1...3 { net.register(id, sink: inboxes.sink(id)) }
    let t1 = net.transport(for: 1)
    net.setDelay(20_000_000, from: 1, to: 2)
    t1.send([msg(1, 2, 1), msg(1, 3, 1)])
    net.setDelay(0, from: 1, to: 2)
    t1.send([msg(1, 2, 2), msg(1, 3, 2)])  // must not overtake index 1 to node 2
    XCTAssertEqual(inboxes.of(3).map(\.index), [1, 2], "node 3's messages were never delayed")
    XCTAssertEqual(inboxes.of(2).map(\.index), [])
    waitUntil { inboxes.of(2).count == 2 }
    XCTAssertEqual(inboxes.of(2).map(\.index), [1, 2])
    XCTAssertEqual(net.stats, .init(sent: 4, delivered: 4, dropped: 0))
  }

  func testJitterDelaysButNeverReordersAPair() {
    let net = InMemoryNetwork(seed: 7)
    defer { net.shutdown() }
    let inboxes = Inboxes()
    for id: UInt64 in 1...2 { net.register(id, sink: inboxes.sink(id)) }
    net.setDelay(1_000_000)
    net.setJitter(2_000_000)
    let start = Date()
    for k: UInt64 in 1...200 { net.transport(for: 1).send([msg(1, 2, k)]) }
    waitUntil { inboxes.of(2).count == 200 }
    XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.001, "nothing arrives before the base delay")
    XCTAssertEqual(inboxes.of(2).map(\.index), Array(1...200), "jitter never reorders one pair")
  }

  func testPartitionsIsolationAndHealing() {
    let net = InMemoryNetwork()
    let inboxes = Inboxes()
    for id: UInt64 in 1...3 { net.register(id, sink: inboxes.sink(id)) }
    net.partition([[1], [2, 3]])
    net.transport(for: 1).send([msg(1, 2, 1)])
    net.transport(for: 2).send([msg(2, 3, 1), msg(2, 1, 1)])
    XCTAssertEqual(inboxes.of(2).count, 0)
    XCTAssertEqual(inboxes.of(1).count, 0)
    XCTAssertEqual(inboxes.of(3).map(\.index), [1])
    net.heal()
    net.isolate(3)
    net.transport(for: 1).send([msg(1, 2, 2), msg(1, 3, 2)])
    XCTAssertEqual(inboxes.of(2).map(\.index), [2])
    XCTAssertEqual(inboxes.of(3).map(\.index), [1])
    net.heal()
    net.unregister(2)
    net.transport(for: 1).send([msg(1, 2, 3), msg(1, 3, 3)])
    XCTAssertEqual(inboxes.of(2).map(\.index), [2], "a stopped node receives nothing")
    XCTAssertEqual(inboxes.of(3).map(\.index), [1, 3])
    XCTAssertEqual(net.stats.dropped, 4)
  }

  func testDropRateIsSeededAndApproximate() {
    func run(seed: UInt64) -> [UInt64] {
      let net = InMemoryNetwork(seed: seed)
      let inboxes = Inboxes()
      net.register(2, sink: inboxes.sink(2))
      net.setDropRate(0.3)
      net.transport(for: 1).send((1...2000).map { msg(1, 2, $0) })
      return inboxes.of(2).map(\.index)
    }
    let a = run(seed: 7)
    XCTAssertEqual(a, run(seed: 7), "the same seed drops the same messages")
    XCTAssertNotEqual(a, run(seed: 8))
    XCTAssertEqual(Double(a.count), 1400, accuracy: 100)
    XCTAssertEqual(a, a.sorted(), "survivors keep their order")
  }
}
