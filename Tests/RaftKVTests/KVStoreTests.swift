import Foundation
import Logging
import Raft
import RaftTestSupport
import XCTest

@testable import RaftKV

final class KVStoreTests: XCTestCase {
  func testCommandsRoundTripAndBadBytesThrow() throws {
    let put = KVCommand(op: .put, requestID: 1 << 50 | 7, key: Array("k/é".utf8), value: [0, 1, 2])
    XCTAssertEqual(try KVCommand(decoding: put.encoded()), put)
    let del = KVCommand(op: .delete, requestID: 0, key: [9])
    XCTAssertEqual(try KVCommand(decoding: del.encoded()), del)
    for bad: [UInt8] in [
      [], [2, 1, 0, 0], [1, 3, 0, 0], [1, 1], [1, 1, 0x80], [1, 1, 0, 5, 1], [1, 2, 0, 1, 9, 9],
    ] {
      XCTAssertThrowsError(try KVCommand(decoding: bad), "\(bad)")
    }
    let ctx = MemberContext(requestID: 42, url: "http://127.0.0.1:42379")
    XCTAssertEqual(try MemberContext(decoding: ctx.encoded()), ctx)
    XCTAssertThrowsError(try MemberContext(decoding: [7]))
  }

  func testSnapshotsRoundTripAndRestoreTheMembers() throws {
    let changed = MembersLog()
    let store = KVStore(
      localID: 1, initialMembers: [1: "http://a:1"], logger: Logger(label: "t"),
      membersChanged: { changed.record($0) }, removedSelf: {})
    store.apply(index: 1, term: 1, data: Payload(KVCommand(op: .put, requestID: 1, key: [1], value: [2]).encoded()))
    store.apply(index: 2, term: 1, data: Payload(KVCommand(op: .put, requestID: 2, key: [3], value: []).encoded()))
    store.applyConfChange(
      .v1(ConfChange(type: .addNode, nodeID: 2, context: MemberContext(requestID: 3, url: "http://b:2").encoded())),
      index: 3, term: 1)
    let data = try XCTUnwrap(store.snapshotData())
    let decoded = try KVStore.decodeSnapshot(data)
    XCTAssertEqual(decoded.data, [[1]: [2], [3]: []])
    XCTAssertEqual(decoded.members, [1: "http://a:1", 2: "http://b:2"])
    XCTAssertEqual(changed.last, [1: "http://a:1", 2: "http://b:2"])

    let other = KVStore(
      localID: 3, initialMembers: [:], logger: Logger(label: "t"), membersChanged: { changed.record($0) },
      removedSelf: {})
    other.restore(snapshot: Snapshot(data: data, metadata: SnapshotMetadata(index: 3, term: 1)))
    XCTAssertEqual(other.value(of: [1]), [2])
    XCTAssertEqual(other.members, [1: "http://a:1", 2: "http://b:2"])
    XCTAssertEqual(other.applied.load(ordering: .relaxed), 3)
    XCTAssertEqual(other.restoredSnapshots, 1)
    // Equal states give equal bytes.
    XCTAssertEqual(other.snapshotData(), data)
  }

  func testWritesStillWaitingAtTheirDeadlineFailTimedOutAndOthersDoNot() {
    let store = KVStore(
      localID: 1, initialMembers: [:], logger: Logger(label: "t"), membersChanged: { _ in }, removedSelf: {})
    let results = ResultsLog()
    for (id, deadline) in [(1, 100), (2, 200), (3, 300)] as [(UInt64, UInt64)] {
      store.expect(id, deadlineNanoseconds: deadline) { results.record(id, $0) }
    }
    // Request 2's entry is applied before its deadline: it succeeds, and never times out.
    store.apply(index: 7, term: 1, data: Payload(KVCommand(op: .put, requestID: 2, key: [1], value: [2]).encoded()))
    XCTAssertEqual(store.failExpired(nowNanoseconds: 99), 0)
    XCTAssertEqual(store.failExpired(nowNanoseconds: 250), 1)
    XCTAssertEqual(results.all, [2: .success(7), 1: .failure(.timedOut)])
    XCTAssertEqual(store.waitingRequests, 1)
    XCTAssertEqual(store.failExpired(nowNanoseconds: 1_000), 1)
    XCTAssertEqual(results.all, [2: .success(7), 1: .failure(.timedOut), 3: .failure(.timedOut)])
    XCTAssertEqual(store.waitingRequests, 0)
    // A request answered otherwise (failed by the engine) is not answered again at its deadline.
    store.expect(4, deadlineNanoseconds: 2_000) { results.record(4, $0) }
    store.fail(4, .noLeader)
    XCTAssertEqual(store.failExpired(nowNanoseconds: 3_000), 0)
    XCTAssertEqual(results.all[4], .failure(.noLeader))
    XCTAssertEqual(results.count, 4)
  }

  func testSnapshotKeysAreInByteOrderThenShorterFirst() {
    // Keys that share 8-byte prefixes, hold zero bytes, or are prefixes of one another.
    var rng = SeededRandom(seed: 11)
    var data: [KVKey: [UInt8]] = [:]
    let alphabet: [UInt8] = [0, 1, 2, 0x7f, 0xff]
    for _ in 0..<2_000 {
      let count = Int(rng.next() % 13)
      data[KVKey((0..<count).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })] = []
    }
    let bytes = KVStore.encodeSnapshot(data: data, members: [:])
    // version, 0 members, the key count (a 2-byte varint), then (length, key, 0) each.
    var k = 4
    var keys: [[UInt8]] = []
    while k < bytes.count {
      let n = Int(bytes[k])
      keys.append(Array(bytes[(k + 1)..<(k + 1 + n)]))
      k += n + 2
    }
    let expected = data.keys.map(\.bytes).sorted { a, b in
      for (x, y) in zip(a, b) where x != y { return x < y }
      return a.count < b.count
    }
    XCTAssertEqual(keys.count, data.count)
    XCTAssertEqual(keys, expected)
  }

  func testUnreadableSnapshotsThrowAndNeverTrap() {
    XCTAssertThrowsError(try KVStore.decodeSnapshot([]))
    XCTAssertThrowsError(try KVStore.decodeSnapshot([1, 0, 0, 0]))  // trailing byte
    XCTAssertThrowsError(try KVStore.decodeSnapshot([1, 0, 0xff, 0xff, 0xff, 0x0f]))  // count beyond the size
    // Seeded random bytes and random truncations of a good snapshot: errors, never traps.
    let good = KVStore.encodeSnapshot(data: [[1, 2]: [3], [4]: [5, 6, 7]], members: [1: "u", 9: "v"])
    var rng = SeededRandom(seed: 7)
    for _ in 0..<20_000 {
      var bytes = good
      switch rng.next() % 3 {
      case 0: bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
      case 1: bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
      default: bytes = (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
      }
      _ = try? KVStore.decodeSnapshot(bytes)
      _ = try? KVCommand(decoding: bytes)
    }
  }

  func testARemovalOfThisMemberIsSignalled() {
    let removed = MembersLog()
    let store = KVStore(
      localID: 2, initialMembers: [1: "a", 2: "b"], logger: Logger(label: "t"), membersChanged: { _ in },
      removedSelf: { removed.record([:]) })
    store.applyConfChange(.v1(ConfChange(type: .removeNode, nodeID: 1)), index: 5, term: 1)
    XCTAssertEqual(removed.count, 0)
    store.applyConfChange(.v1(ConfChange(type: .removeNode, nodeID: 2)), index: 6, term: 1)
    XCTAssertEqual(removed.count, 1)
    XCTAssertEqual(store.members, [:])
  }

  func testPrometheusTextFormat() {
    let m = PrometheusMetrics()
    m.makeCounter(label: "requests total", dimensions: [("code", "2\"0\\4")]).increment(by: 3)
    m.makeCounter(label: "requests total", dimensions: [("code", "2\"0\\4")]).increment(by: 1)
    m.makeTimer(label: "lat", dimensions: []).recordNanoseconds(300_000)
    m.makeRecorder(label: "depth", dimensions: [("n", "1")], aggregate: false).record(Int64(5))
    let text = m.render()
    XCTAssertTrue(text.contains("# TYPE requests_total counter\nrequests_total{code=\"2\\\"0\\\\4\"} 4\n"), text)
    XCTAssertTrue(text.contains("lat_seconds_bucket{le=\"0.00025\"} 0\nlat_seconds_bucket{le=\"0.0005\"} 1\n"), text)
    XCTAssertTrue(
      text.contains("lat_seconds_bucket{le=\"+Inf\"} 1\nlat_seconds_sum 0.0003\nlat_seconds_count 1\n"), text)
    XCTAssertTrue(text.contains("# TYPE depth gauge\ndepth{n=\"1\"} 5.0\n"), text)
    // Known metrics carry their HELP line (swift-prometheus emits it before TYPE).
    m.makeMeter(label: "raft_term", dimensions: [("node", "1")]).set(Int64(7))
    XCTAssertTrue(
      m.render().contains("# HELP raft_term The node's current Raft term.\n# TYPE raft_term gauge\n"), m.render())
  }
}

/// Records what a callback saw.
final class ResultsLog: @unchecked Sendable {
  private var results: [UInt64: Result<UInt64, KVError>] = [:]
  private var calls = 0
  private let lock = NSLock()
  func record(_ id: UInt64, _ r: Result<UInt64, KVError>) {
    lock.withLock {
      results[id] = r
      calls += 1
    }
  }
  var all: [UInt64: Result<UInt64, KVError>] { lock.withLock { results } }
  /// How many answers were given (more than the requests: one was answered twice).
  var count: Int { lock.withLock { calls } }
}

final class MembersLog: @unchecked Sendable {
  private var seen: [[UInt64: String]] = []
  private let lock = NSLock()
  func record(_ m: [UInt64: String]) { lock.withLock { seen.append(m) } }
  var last: [UInt64: String]? { lock.withLock { seen.last } }
  var count: Int { lock.withLock { seen.count } }
}
