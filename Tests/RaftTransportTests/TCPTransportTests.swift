import Dispatch
import Foundation
import NIOCore
import NIOPosix
import Raft
import Synchronization
import XCTest

@testable import RaftTransport

/// What a transport under test delivered and reported.
final class Recorder: Sendable {
  let messages = Mutex<[Message]>([])
  let unreachable = Mutex<[UInt64]>([])
  let snapshotStatus = Mutex<[(UInt64, SnapshotStatus)]>([])
  /// What the delegate's `backlogged` answers, and how often it was asked.
  let backlogged = Atomic<Bool>(false)
  let backlogChecks = Atomic<Int>(0)
  /// The snapshot data check the delegate passes on (nil: none).
  let snapshotDataCheck: (@Sendable ([UInt8]) -> String?)?

  init(snapshotDataCheck: (@Sendable ([UInt8]) -> String?)? = nil) {
    self.snapshotDataCheck = snapshotDataCheck
  }

  var delegate: TransportDelegate {
    TransportDelegate(
      deliver: { ms in self.messages.withLock { $0 += ms } },
      reportUnreachable: { p in self.unreachable.withLock { $0.append(p) } },
      reportSnapshot: { p, s in self.snapshotStatus.withLock { $0.append((p, s)) } },
      snapshotDataCheck: snapshotDataCheck,
      backlogged: {
        self.backlogChecks.add(1, ordering: .relaxed)
        return self.backlogged.load(ordering: .relaxed)
      })
  }

  var count: Int { messages.withLock { $0.count } }

  /// Waits up to `seconds` for `condition`.
  func wait(_ seconds: Double = 10, _ condition: (Recorder) -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      if condition(self) { return true }
      usleep(2_000)
    }
    return condition(self)
  }
}

final class TCPTransportTests: XCTestCase {
  let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

  override func tearDown() {
    try? group.syncShutdownGracefully()
  }

  private let loopback = PeerAddress(host: "127.0.0.1", port: 0)

  /// A started transport for node `id` listening on a free port.
  private func makeTransport(
    _ id: UInt64, _ recorder: Recorder, options: TCPTransportOptions = TCPTransportOptions(), port: Int = 0
  ) throws -> TCPTransport {
    let t = try TCPTransport(
      id: id, listenAddress: PeerAddress(host: "127.0.0.1", port: port), options: options, group: group)
    try t.start(delegate: recorder.delegate)
    return t
  }

  private func address(_ t: TCPTransport) -> PeerAddress { PeerAddress(host: "127.0.0.1", port: t.localPort!) }

  /// Nodes 1 and 2, peers of each other, connected from 1 to 2 (shut down after the test).
  private func connectedPair(_ options: TCPTransportOptions, receiver rb: Recorder = Recorder()) throws -> (
    TCPTransport, TCPTransport, Recorder, Recorder
  ) {
    let ra = Recorder()
    let a = try makeTransport(1, ra, options: options)
    let b = try makeTransport(2, rb, options: options)
    addTeardownBlock {
      a.shutdown()
      b.shutdown()
    }
    a.addPeer(2, address: address(b))
    b.addPeer(1, address: address(a))
    XCTAssertTrue(connected(a, to: 2, rb))
    return (a, b, ra, rb)
  }

  /// Sends heartbeats from `a` to `peer` until one arrives (messages sent before the
  /// connection is up are dropped, as Raft expects).
  private func connected(_ a: TCPTransport, to peer: UInt64, _ recorder: Recorder) -> Bool {
    recorder.wait { r in
      a.send([self.heartbeat(a.id, peer, commit: 0)])
      return r.count > 0
    }
  }

  private func heartbeat(_ from: UInt64, _ to: UInt64, commit: UInt64) -> Message {
    Message(type: .msgHeartbeat, to: to, from: from, term: 1, commit: commit)
  }

  func testMessagesArriveInOrderAcrossManyFrames() throws {
    var options = TCPTransportOptions()
    options.frameBytesTarget = 256  // many frames
    let (a, b, ra, rb) = try connectedPair(options)
    let entries = (1...20).map { Entry(term: 1, index: UInt64($0), data: Array(repeating: UInt8($0), count: 100)) }
    var sent: [Message] = []
    for k in 1...500 {
      sent.append(
        Message(
          type: .msgApp, to: 2, from: 1, term: 1, logTerm: 1, index: UInt64(k), entries: k % 50 == 0 ? entries : []))
      if k % 7 == 0 {
        a.send(sent.suffix(7))
      }
    }
    a.send(Array(sent.suffix(500 % 7)))
    XCTAssertTrue(rb.wait { $0.messages.withLock { $0.filter { $0.type == .msgApp }.count } >= 500 })
    let got = rb.messages.withLock { $0.filter { $0.type == .msgApp } }
    XCTAssertEqual(got.map(\.index), sent.map(\.index))
    XCTAssertTrue(got == sent, "the messages arrived changed")
    // And the other way.
    b.send([Message(type: .msgAppResp, to: 1, from: 2, term: 1, index: 9)])
    XCTAssertTrue(ra.wait { $0.messages.withLock { $0.contains { $0.type == .msgAppResp && $0.index == 9 } } })
  }

  func testABackloggedNodeStopsTheTransportReadingUntilItCatchesUp() throws {
    var options = TCPTransportOptions()
    options.frameBytesTarget = 256  // many frames
    let (a, _, _, rb) = try connectedPair(options)
    rb.backlogged.store(true, ordering: .relaxed)
    let before = rb.count  // what connecting delivered
    let sent = (1...400).map { k in
      Message(
        type: .msgApp, to: 2, from: 1, term: 1, logTerm: 1, index: UInt64(k),
        entries: [Entry(term: 1, index: UInt64(k), data: Array(repeating: 7, count: 200))])
    }
    for k in stride(from: 0, to: 400, by: 4) { a.send(Array(sent[k..<(k + 4)])) }
    // The first frame is delivered; then the node says it is behind, and the transport stops:
    // while it keeps asking (every millisecond), nothing more arrives.
    XCTAssertTrue(rb.wait { $0.count > before })
    let delivered = rb.count
    let checks = rb.backlogChecks.load(ordering: .relaxed)
    XCTAssertTrue(rb.wait { $0.backlogChecks.load(ordering: .relaxed) >= checks + 50 }, "the transport stopped asking")
    XCTAssertEqual(rb.count, delivered, "messages were delivered while the node was backlogged")
    XCTAssertLessThan(delivered, before + 400)
    // Caught up: everything arrives, in order.
    rb.backlogged.store(false, ordering: .relaxed)
    XCTAssertTrue(rb.wait { $0.messages.withLock { $0.filter { !$0.entries.isEmpty }.count } >= 400 })
    // (Connecting's probes may still trickle in: only this test's appends are compared.)
    XCTAssertEqual(rb.messages.withLock { $0.filter { !$0.entries.isEmpty }.map(\.index) }, sent.map(\.index))
  }

  func testASnapshotIsStreamedInChunksAndReportedFinished() throws {
    var options = TCPTransportOptions()
    options.snapshotChunkBytes = 64 << 10
    let (a, _, ra, rb) = try connectedPair(options)
    var data = [UInt8](repeating: 0, count: 3 << 20 + 123)
    for i in data.indices { data[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 9) }
    let snapshot = Snapshot(
      data: data, metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2, 3]), index: 77, term: 3))
    let heartbeat = heartbeat(1, 2, commit: 5)
    a.send([Message(type: .msgSnap, to: 2, from: 1, term: 3, snapshot: snapshot), heartbeat])
    XCTAssertTrue(rb.wait { $0.messages.withLock { $0.contains { $0.type == .msgSnap } } })
    let snap = rb.messages.withLock { $0.first { $0.type == .msgSnap } }!
    XCTAssertEqual(snap.snapshot, snapshot)
    XCTAssertEqual(snap.from, 1)
    XCTAssertEqual(snap.term, 3)
    XCTAssertTrue(rb.wait { $0.messages.withLock { $0.contains(heartbeat) } })
    XCTAssertTrue(ra.wait { $0.snapshotStatus.withLock { $0.count == 1 } })
    let status = ra.snapshotStatus.withLock { $0 }
    XCTAssertEqual(status.first?.0, 2)
    XCTAssertEqual(status.first?.1, .finish)
  }

  func testASnapshotWhoseDataTheStateMachineRefusesIsNotDeliveredAndFails() throws {
    let (a, _, ra, rb) = try connectedPair(
      TCPTransportOptions(),
      receiver: Recorder(snapshotDataCheck: { $0.first == 0xBA ? "not a snapshot of ours" : nil }))
    func snap(_ first: UInt8, index: UInt64) -> Message {
      Message(
        type: .msgSnap, to: 2, from: 1, term: 3,
        snapshot: Snapshot(
          data: [first, 1, 2, 3],
          metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2]), index: index, term: 3)
        ))
    }
    a.send([snap(0xBA, index: 10)])
    XCTAssertTrue(ra.wait { $0.snapshotStatus.withLock { $0.count == 1 } })
    XCTAssertEqual(ra.snapshotStatus.withLock { $0.first?.1 }, .failure)
    // The connection comes back, and a snapshot that decodes goes through: each attempt waits
    // for its own report (a failure while the connection is still down is tried again).
    var finished = false
    for _ in 0..<20 where !finished {
      XCTAssertTrue(ra.wait { _ in a.connectedPeers.contains(2) })
      let reports = ra.snapshotStatus.withLock { $0.count }
      a.send([snap(0x01, index: 11)])
      XCTAssertTrue(ra.wait { $0.snapshotStatus.withLock { $0.count } > reports })
      finished = ra.snapshotStatus.withLock { $0.last?.1 == .finish }
    }
    XCTAssertTrue(finished, "the snapshot that decodes never went through")
    let delivered = rb.messages.withLock { $0.filter { $0.type == .msgSnap } }
    XCTAssertFalse(delivered.isEmpty)
    XCTAssertTrue(delivered.allSatisfy { $0.snapshot?.metadata.index == 11 }, "a refused snapshot was delivered")
  }

  func testDisconnectClosesThePeersConnectionsAndItRedials() throws {
    let (a, b, _, rb) = try connectedPair(TCPTransportOptions())
    let first = b.inboundConnections(from: 1)
    XCTAssertEqual(first.count, 1)
    b.disconnect(peer: 1)
    XCTAssertTrue(rb.wait { _ in b.inboundConnections(from: 1).isDisjoint(with: first) })
    // The dialler redials: messages flow again.
    let before = rb.count
    XCTAssertTrue(
      rb.wait { r in
        a.send([self.heartbeat(1, 2, commit: 7)])
        return r.messages.withLock { $0.dropFirst(before).contains { $0.commit == 7 } }
      })
  }

  func testAnUnreachablePeerIsReportedAndASnapshotToItFails() throws {
    let ra = Recorder()
    let a = try makeTransport(1, ra)
    defer { a.shutdown() }
    // A port nobody listens on: bind one and close it.
    let probe = try makeTransport(9, Recorder())
    let deadPort = probe.localPort!
    probe.shutdown()
    a.addPeer(2, address: PeerAddress(host: "127.0.0.1", port: deadPort))
    a.send([heartbeat(1, 2, commit: 0)])
    a.send([
      Message(
        type: .msgSnap, to: 2, from: 1, term: 1, snapshot: Snapshot(data: [1], metadata: SnapshotMetadata(index: 1)))
    ])
    XCTAssertTrue(ra.wait { $0.unreachable.withLock { $0.count >= 2 && $0.allSatisfy { $0 == 2 } } })
    XCTAssertTrue(ra.wait { $0.snapshotStatus.withLock { $0.count == 1 && $0[0].1 == .failure } })
    // A message to a peer the transport does not know is dropped without a report.
    a.send([heartbeat(1, 5, commit: 0)])
    XCTAssertFalse(ra.unreachable.withLock { $0.contains(5) })
  }

  func testAFullQueueDropsAndReportsInsteadOfBlocking() throws {
    // A peer that accepts the connection and never reads: the socket fills, then the queue.
    let stalled = try ServerBootstrap(group: group)
      .childChannelOption(.autoRead, value: false)
      .childChannelOption(.socketOption(.so_rcvbuf), value: 4096)
      .bind(host: "127.0.0.1", port: 0).wait()
    defer { try? stalled.close().wait() }
    let ra = Recorder()
    var options = TCPTransportOptions()
    options.queueMessagesMax = 64
    options.queueBytesMax = 256 << 10
    options.writeBufferHighWatermarkBytes = 64 << 10
    let a = try makeTransport(1, ra, options: options)
    defer { a.shutdown() }
    a.addPeer(2, address: PeerAddress(host: "127.0.0.1", port: stalled.localAddress!.port!))
    let connected = Recorder()
    XCTAssertTrue(connected.wait { _ in a.connectedPeers == [2] })
    let big = Entry(term: 1, index: 1, data: [UInt8](repeating: 7, count: 16 << 10))
    let start = DispatchTime.now().uptimeNanoseconds
    var sends = 0
    while ra.unreachable.withLock({ $0.isEmpty }) && sends < 100_000 {
      a.send([Message(type: .msgApp, to: 2, from: 1, term: 1, entries: [big])])
      sends += 1
      if sends % 64 == 0 { usleep(1_000) }
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    XCTAssertFalse(ra.unreachable.withLock { $0.isEmpty }, "no drop after \(sends) sends")
    XCTAssertLessThan(seconds, 30)
  }

  func testMalformedBytesCloseTheConnectionAndDeliverNothing() throws {
    let rb = Recorder()
    let b = try makeTransport(2, rb)
    defer { b.shutdown() }
    b.addPeer(1, address: PeerAddress(host: "127.0.0.1", port: 1))  // node 1 is a peer of node 2
    func frame(_ kind: UInt8, version: UInt8 = 1, _ body: [UInt8]) -> [UInt8] {
      var out: [UInt8] = []
      let n = UInt32(body.count + 2)
      out += [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), version, kind]
      return out + body
    }
    func u64(_ v: UInt64) -> [UInt8] { (0..<8).reversed().map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
    let hello = frame(1, u64(1) + u64(2))
    let cases: [(String, [UInt8])] = [
      ("garbage", Array("GET / HTTP/1.1\r\n\r\n".utf8)),
      ("huge length", [0x7f, 0xff, 0xff, 0xff, 1, 2]),
      ("bad version", frame(1, version: 9, u64(1) + u64(2))),
      ("unknown kind", frame(42, [])),
      ("messages before hello", frame(2, RaftCodec.encodeMessages([heartbeat(1, 2, commit: 1)]))),
      ("hello to another node", frame(1, u64(1) + u64(3))),
      ("hello from a local thread id", frame(1, u64(localAppendThread) + u64(2))),
      (
        "hello from a node that is not a peer",
        frame(1, u64(7) + u64(2)) + frame(2, RaftCodec.encodeMessages([heartbeat(7, 2, commit: 1)]))
      ),
      ("bad codec bytes", hello + frame(2, [1, 5, 0xff, 0xff])),
      ("a message claiming another sender", hello + frame(2, RaftCodec.encodeMessages([heartbeat(3, 2, commit: 1)]))),
      (
        "a local message type",
        hello + frame(2, RaftCodec.encodeMessages([Message(type: .msgStorageAppendResp, to: 2, from: 1, term: 1)]))
      ),
      ("a chunk of no stream", hello + frame(4, u64(5) + [1, 2, 3])),
      (
        "a snapshot over the announced length",
        hello
          + frame(
            3,
            u64(1) + u64(2)
              + RaftCodec.encodeMessage(
                Message(
                  type: .msgSnap, to: 2, from: 1, term: 1, snapshot: Snapshot(metadata: SnapshotMetadata(index: 4))))
          ) + frame(4, u64(1) + [1, 2, 3])
      ),
    ]
    for (name, bytes) in cases {
      let channel = try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: b.localPort!).wait()
      try channel.writeAndFlush(ByteBuffer(bytes: bytes)).wait()
      let closed = expectation(description: name)
      channel.closeFuture.whenComplete { _ in closed.fulfill() }
      wait(for: [closed], timeout: 10)
    }
    XCTAssertEqual(rb.count, 0)
    // The transport still serves well-behaved peers.
    let a = try makeTransport(1, Recorder())
    defer { a.shutdown() }
    b.addPeer(1, address: address(a))
    a.addPeer(2, address: address(b))
    XCTAssertTrue(connected(a, to: 2, rb))
  }

  func testAPeerThatRestartsIsRedialledAndARemovedPeerGetsNothing() throws {
    let (ra, rb) = (Recorder(), Recorder())
    var options = TCPTransportOptions()
    options.reconnectBackoffMaxMilliseconds = 200
    let a = try makeTransport(1, ra, options: options)
    defer { a.shutdown() }
    var b = try makeTransport(2, rb, options: options)
    let port = b.localPort!
    b.addPeer(1, address: address(a))
    a.addPeer(2, address: address(b))
    XCTAssertTrue(
      rb.wait { _ in
        a.send([self.heartbeat(1, 2, commit: 1)])
        return rb.count > 0
      })
    b.shutdown()
    let rb2 = Recorder()
    b = try makeTransport(2, rb2, options: options, port: port)
    defer { b.shutdown() }
    b.addPeer(1, address: address(a))
    XCTAssertTrue(
      rb2.wait { _ in
        a.send([self.heartbeat(1, 2, commit: 2)])
        return rb2.count > 0
      }, "not redialled")
    XCTAssertEqual(a.peers, [2: PeerAddress(host: "127.0.0.1", port: port)])
    a.removePeer(2)
    XCTAssertEqual(a.peers, [:])
    usleep(100_000)
    let before = rb2.count
    for _ in 0..<10 { a.send([heartbeat(1, 2, commit: 3)]) }
    usleep(200_000)
    XCTAssertEqual(rb2.count, before)
    // A removed peer's own messages are refused too (it may not know it was removed).
    let beforeA = ra.count
    for _ in 0..<20 {
      b.send([Message(type: .msgVote, to: 1, from: 2, term: 9)])
      usleep(20_000)
    }
    XCTAssertEqual(ra.count, beforeA, "messages from a removed peer were delivered")
  }

  func testPeerAddressesParseOrSayWhatIsWrong() throws {
    XCTAssertEqual(try PeerAddress(parsing: "http://127.0.0.1:12379"), PeerAddress(host: "127.0.0.1", port: 12379))
    XCTAssertEqual(try PeerAddress(parsing: "localhost:22379/"), PeerAddress(host: "localhost", port: 22379))
    XCTAssertEqual(try PeerAddress(parsing: "tcp://[::1]:5"), PeerAddress(host: "::1", port: 5))
    XCTAssertEqual(PeerAddress(host: "::1", port: 5).description, "http://[::1]:5")
    for bad in ["", "http://", "127.0.0.1", "http://h:0", "http://h:70000", "ftp://h:1", "http://h:x", "http://:1"] {
      XCTAssertThrowsError(try PeerAddress(parsing: bad), bad) { error in
        XCTAssertTrue("\(error)".contains("bad peer address"), "\(error)")
      }
    }
  }
}
