import Foundation
import Raft
import RaftTestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// A process that dials a member's raft port as an attacker would, without any credentials: its
/// hello names a real member, then it sends well-formed frames of its choosing.
final class ForgedPeer {
  private let fd: Int32

  /// Connects to 127.0.0.1:`port` and says hello as member `from` to member `to`.
  init(port: Int, claiming from: UInt64, to: UInt64) throws {
    fd = try connectToLoopback(port: port)
    var body: [UInt8] = []
    Self.append(from, to: &body)
    Self.append(to, to: &body)
    try write(frame: 1, body)
  }

  deinit { close(fd) }

  /// Sends one `messages` frame holding `messages`.
  func send(_ messages: [Message]) throws {
    try write(frame: 2, RaftCodec.encodeMessages(messages))
  }

  /// Waits up to `seconds` for the member to close the connection; true when it did.
  func waitForClose(seconds: Double) -> Bool {
    var tv = timeval(tv_sec: 0, tv_usec: 100_000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let deadline = Date().addingTimeInterval(seconds)
    var buffer = [UInt8](repeating: 0, count: 256)
    while Date() < deadline {
      let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n == 0 { return true }
      if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { return true }
    }
    return false
  }

  /// length u32 | version 1 | kind | body (the transport's frame).
  private func write(frame kind: UInt8, _ body: [UInt8]) throws {
    var bytes: [UInt8] = []
    let length = UInt32(body.count + 2)
    for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: length >> shift)) }
    bytes += [1, kind] + body
    var sent = 0
    while sent < bytes.count {
      let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      guard n > 0 else { throw HTTPClientError(description: "send to a raft port: errno \(errno)") }
      sent += n
    }
  }

  private static func append(_ v: UInt64, to out: inout [UInt8]) {
    for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> shift)) }
  }
}

/// The attacks of an unauthenticated peer on a plain-TCP cluster, each replayed against a fresh
/// 3-member raftkv cluster of real processes: the member refuses the message and closes the
/// connection, every member keeps running, the cluster elects and commits again, and every
/// member applies what it commits (none is left behind, stopped but serving stale reads).
final class HostilePeerTests: XCTestCase {
  /// What the attack sees of the cluster.
  struct Scene {
    var leader: UInt64
    var followers: [UInt64]
    var term: UInt64
    var lastIndex: UInt64
    var commit: UInt64
  }

  /// One forged message: sent to `member` over a connection claiming to be `claiming`. The
  /// member closes the connection of a malformed message; one whose term only leads too far
  /// is well formed (an honest member pushed ahead by an attacker sends such), and its
  /// connection stays.
  struct Forgery {
    var member: UInt64
    var claiming: UInt64
    var message: Message
    var closes = true
  }

  func testHeartbeatCommittingFarBeyondTheLogIsRefused() throws {
    try replay { s in
      [
        Forgery(
          member: s.followers[0], claiming: s.leader,
          message: Message(
            type: .msgHeartbeat, to: s.followers[0], from: s.leader, term: s.term, commit: s.lastIndex + 1_000_000))
      ]
    }
  }

  func testAppendWhoseFirstEntryIsFarPastTheLogIsRefused() throws {
    try replay { s in
      [
        Forgery(
          member: s.followers[0], claiming: s.leader,
          message: Message(
            type: .msgApp, to: s.followers[0], from: s.leader, term: s.term, logTerm: s.term, index: s.lastIndex,
            entries: [Entry(term: s.term, index: s.lastIndex + 100, data: [1])], commit: s.commit))
      ]
    }
  }

  func testAppendRewritingTheCommittedIndexWithAHigherTermIsRefused() throws {
    try replay { s in
      [
        Forgery(
          member: s.followers[0], claiming: s.leader,
          message: Message(
            type: .msgApp, to: s.followers[0], from: s.leader, term: s.term + 1, logTerm: s.term, index: s.commit,
            entries: [Entry(term: s.term + 1, index: s.commit, data: [6, 6, 6])], commit: s.commit))
      ]
    }
  }

  func testEmptyProposalToTheLeaderIsRefused() throws {
    try replay { s in
      [
        Forgery(
          member: s.leader, claiming: s.followers[0],
          message: Message(type: .msgProp, to: s.leader, from: s.followers[0])),
        Forgery(
          member: s.leader, claiming: s.followers[1],
          message: Message(type: .msgProp, to: s.leader, from: s.followers[1], term: s.term)),
      ]
    }
  }

  func testAppendWithNonConsecutiveEntriesIsRefusedAndNeverReachesTheStorage() throws {
    try replay { s in
      [
        Forgery(
          member: s.followers[0], claiming: s.leader,
          message: Message(
            type: .msgApp, to: s.followers[0], from: s.leader, term: s.term, logTerm: s.term, index: s.lastIndex,
            entries: [
              Entry(term: s.term, index: s.lastIndex + 1, data: [1]),
              Entry(term: s.term, index: s.lastIndex + 3, data: [2]),
            ],
            commit: s.commit))
      ]
    }
  }

  func testATermThatWouldWedgeTheClusterIsRefused() throws {
    try replay { s in
      // A transfer-forced vote at 2^64 - 2 to every member, from each other member.
      let all = [s.leader] + s.followers
      return all.map { target in
        let from = all.first { $0 != target }!
        return Forgery(
          member: target, claiming: from,
          message: Message(
            type: .msgVote, to: target, from: from, term: UInt64.max - 1, logTerm: s.term, index: s.lastIndex,
            context: Array("CampaignTransfer".utf8)), closes: false)
      }
    }
  }

  func testConfChangeProposalsThatDoNotDecodeOrCannotApplyAreRefused() throws {
    try replay { s in
      let removeEveryone = ConfChangeV2(
        changes: ([s.leader] + s.followers).map { ConfChangeSingle(type: .removeNode, nodeID: $0) })
      return [
        Forgery(
          member: s.leader, claiming: s.followers[0],
          message: Message(
            type: .msgProp, to: s.leader, from: s.followers[0],
            entries: [Entry(type: .confChangeV2, data: [0xFF, 0xFF])])),
        Forgery(
          member: s.leader, claiming: s.followers[1],
          message: Message(
            type: .msgProp, to: s.leader, from: s.followers[1],
            entries: [Entry(type: .confChangeV2, data: removeEveryone.encoded())])),
      ]
    }
  }

  /// Starts a fresh cluster, commits a write, sends the forgeries, and checks the outcome.
  private func replay(
    _ forge: (Scene) -> [Forgery], file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let cluster = try KVCluster(size: 3)
    defer { cluster.shutdown() }
    for id: UInt64 in 1...3 { try cluster.start(id) }
    let leader = try XCTUnwrap(cluster.waitForLeader(), "no leader\n\(cluster.logs())", file: file, line: line)
    XCTAssertTrue(cluster.putEventually(leader, "before", "the attack"), cluster.logs(), file: file, line: line)
    try waitForApplied(cluster, through: try statusNumber(cluster, leader, "commit"), file: file, line: line)
    let scene = Scene(
      leader: leader, followers: [UInt64(1), 2, 3].filter { $0 != leader },
      term: try statusNumber(cluster, leader, "term"), lastIndex: try statusNumber(cluster, leader, "last_index"),
      commit: try statusNumber(cluster, leader, "commit"))

    for f in forge(scene) {
      let peer = try ForgedPeer(port: cluster.raftPorts[f.member]!, claiming: f.claiming, to: f.member)
      try peer.send([f.message])
      if f.closes {
        XCTAssertTrue(
          peer.waitForClose(seconds: 10),
          "member \(f.member) kept the connection of a forged \(f.message.type)\n\(cluster.logs())", file: file,
          line: line)
      }
    }

    for id: UInt64 in 1...3 {
      XCTAssertTrue(
        cluster.processes[id]?.isRunning ?? false, "member \(id) exited\n\(cluster.logs())", file: file, line: line)
    }
    // The cluster elects (if it must) and commits again; every member applies it.
    XCTAssertTrue(
      cluster.putEventually(scene.followers[1], "after", "the attack"), "no write after the attack\n\(cluster.logs())",
      file: file, line: line)
    let newLeader = try XCTUnwrap(cluster.waitForLeader(), "no leader\n\(cluster.logs())", file: file, line: line)
    try waitForApplied(cluster, through: try statusNumber(cluster, newLeader, "commit"), file: file, line: line)
    for id: UInt64 in 1...3 {
      XCTAssertEqual(cluster.get(id, "after")?.text, "the attack", "member \(id)", file: file, line: line)
      // Far from the end of the term space: at most one catch-up step above the free bound
      // (and a few elections).
      let term = try statusNumber(cluster, id, "term")
      XCTAssertLessThan(
        term, PeerMessageLimits.termFreeMax + PeerMessageLimits.termStepMax + 1_000, "member \(id)'s term", file: file,
        line: line)
    }
    XCTAssertTrue(
      try String(contentsOfFile: "\(cluster.dir)/member-\(scene.followers[0]).log", encoding: .utf8).contains(
        "refused a message from a peer")
        || (try String(contentsOfFile: "\(cluster.dir)/member-\(scene.leader).log", encoding: .utf8)).contains(
          "refused a message from a peer"),
      "no member logged the refusal\n\(cluster.logs())", file: file, line: line)
  }

  private func statusNumber(
    _ cluster: KVCluster, _ id: UInt64, _ field: String, file: StaticString = #filePath, line: UInt = #line
  ) throws -> UInt64 {
    let st = try XCTUnwrap(cluster.status(id), "member \(id) has no status", file: file, line: line)
    let n = try XCTUnwrap(
      st[field] as? NSNumber, "member \(id)'s status has no \(field): \(st)", file: file, line: line)
    return n.uint64Value
  }

  /// Waits until every member applied through `index`.
  private func waitForApplied(
    _ cluster: KVCluster, through index: UInt64, file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let deadline = Date().addingTimeInterval(20)
    while Date() < deadline {
      let applied = (1...UInt64(3)).map { id in
        (cluster.status(id)?["applied"] as? NSNumber)?.uint64Value ?? 0
      }
      if applied.allSatisfy({ $0 >= index }) { return }
      usleep(50_000)
    }
    XCTFail("not every member applied through \(index)\n\(cluster.logs())", file: file, line: line)
  }
}
