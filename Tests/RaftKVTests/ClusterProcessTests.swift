import Dispatch
import Foundation
import RaftTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// raftkv end to end: real processes on loopback, talked to over HTTP.
final class ClusterProcessTests: XCTestCase {
  func testAWriteForwardedToALeaderThatDropsItFailsAtTheFollowerAtOnce() throws {
    // The leader takes a proposal only while nothing else is uncommitted (a 1-byte limit):
    // concurrent writes through a follower are forwarded and most are dropped there. Each is
    // answered 503 with Retry-After right away, not at its 60 s deadline (the clients give up
    // at 40 s: without the answer they would get nothing).
    let cluster = try KVCluster(size: 3, args: ["--max-uncommitted-bytes", "1", "--request-timeout", "60"])
    defer { cluster.shutdown() }
    for id: UInt64 in 1...3 { try cluster.start(id) }
    let leader = try XCTUnwrap(cluster.waitForLeader(), "no leader\n\(cluster.logs())")
    XCTAssertTrue(cluster.waitUntilAllFollow(leader), "not every member knows the leader")
    let follower = [UInt64(1), 2, 3].first { $0 != leader }!
    let port = cluster.httpPorts[follower]!
    final class Replies: Sendable { let all = Mutex<[HTTPReply?]>([]) }
    let replies = Replies()
    let done = DispatchGroup()
    for k in 0..<32 {
      done.enter()
      Thread.detachNewThread {
        let r = try? http("PUT", port: port, "/k\(k)", body: Array(repeating: 7, count: 512), timeout: 40)
        replies.all.withLock { $0.append(r) }
        done.leave()
      }
    }
    XCTAssertEqual(done.wait(timeout: .now() + 50), .success)
    let all = replies.all.withLock { $0 }
    XCTAssertEqual(all.count, 32)
    XCTAssertTrue(all.allSatisfy { $0 != nil }, "a forwarded write got no answer before the client gave up")
    let dropped = all.compactMap { $0 }.filter { $0.status == 503 && $0.text.contains("dropped") }
    XCTAssertGreaterThan(dropped.count, 0, "\(all.compactMap { $0.map { "\($0.status) \($0.text)" } })")
    XCTAssertTrue(dropped.allSatisfy { $0.headers["retry-after"] ?? $0.headers["Retry-After"] == "1" })
    XCTAssertTrue(
      all.compactMap { $0 }.allSatisfy { $0.status == 204 || $0.status == 503 },
      "\(all.compactMap { $0.map { "\($0.status) \($0.text)" } })")
  }

  func testAWriteForwardedToALeaderThatVanishedTimesOutAtItsDeadline() throws {
    // The leader is frozen (SIGSTOP): a follower still forwards to it, nothing comes back, and
    // the two others elect a new leader that never saw the write. The follower answers 503
    // "timed out" at the request's 1 s deadline (the client waits 10 s).
    let cluster = try KVCluster(size: 3, args: ["--request-timeout", "1"])
    defer { cluster.shutdown() }
    for id: UInt64 in 1...3 { try cluster.start(id) }
    let leader = try XCTUnwrap(cluster.waitForLeader(), "no leader\n\(cluster.logs())")
    XCTAssertTrue(cluster.waitUntilAllFollow(leader), "not every member knows the leader")
    let follower = [UInt64(1), 2, 3].first { $0 != leader }!
    cluster.signal(leader, SIGSTOP)
    defer { cluster.signal(leader, SIGCONT) }
    let start = Date()
    let r = try http("PUT", port: cluster.httpPorts[follower]!, "/lost", body: Array("v".utf8), timeout: 10)
    let took = Date().timeIntervalSince(start)
    XCTAssertEqual(r.status, 503, r.text)
    XCTAssertTrue(r.text.contains("timed out"), r.text)
    XCTAssertGreaterThanOrEqual(took, 0.9)
    XCTAssertLessThan(took, 5, "answered long after its deadline")
  }

  func testThreeMembersReplicateSurviveTheLeadersDeathAndItCatchesUp() throws {
    for mode in ["async", "sync"] {
      let cluster = try KVCluster(size: 3, args: ["--ready-handling", mode])
      defer { cluster.shutdown() }
      for id: UInt64 in 1...3 { try cluster.start(id) }
      let leader = try XCTUnwrap(cluster.waitForLeader(), "\(mode): no leader\n\(cluster.logs())")
      XCTAssertTrue(cluster.waitUntilAllFollow(leader), "\(mode): not every member knows the leader")
      let followers = [UInt64(1), 2, 3].filter { $0 != leader }

      // Writes through the leader and through a follower (forwarded); reads everywhere.
      XCTAssertEqual(cluster.put(leader, "greeting", "hello"), 204, "\(mode)\n\(cluster.logs())")
      XCTAssertEqual(cluster.put(followers[0], "forwarded", "via a follower"), 204, "\(mode)\n\(cluster.logs())")
      for id: UInt64 in 1...3 {
        XCTAssertEqual(cluster.get(id, "greeting", linearizable: true)?.text, "hello", "\(mode): member \(id)")
        XCTAssertEqual(
          cluster.get(id, "forwarded", linearizable: true)?.text, "via a follower", "\(mode): member \(id)")
      }
      XCTAssertEqual(cluster.get(followers[1], "missing", linearizable: true)?.status, 404)

      // kill -9 the leader: the others elect a new one and take writes.
      cluster.kill(leader)
      let survivor = followers[0]
      XCTAssertTrue(
        cluster.putEventually(survivor, "after", "the crash"), "\(mode): no write after the crash\n\(cluster.logs())")
      let newLeader = try XCTUnwrap(cluster.waitForLeader(among: followers), "\(mode)")
      XCTAssertNotEqual(newLeader, leader)
      for k in 0..<20 { XCTAssertEqual(cluster.put(followers[k % 2], "k\(k)", "v\(k)"), 204, "\(mode)") }

      // The old leader restarts from its WAL and catches up.
      try cluster.start(leader)
      XCTAssertTrue(
        cluster.waitForValue(leader, "k19", "v19"), "\(mode): the old leader did not catch up\n\(cluster.logs())")
      XCTAssertEqual(cluster.get(leader, "after")?.text, "the crash")
      XCTAssertEqual(cluster.get(leader, "greeting")?.text, "hello")
      let st = try XCTUnwrap(cluster.status(leader))
      XCTAssertEqual(st["leader"] as? Int, Int(newLeader), "\(mode): \(st)")
    }
  }

  func testAFourthMemberJoinsBySnapshotAndAMemberIsRemoved() throws {
    let cluster = try KVCluster(size: 3, args: ["--snapshot-every", "20", "--snapshot-catchup-entries", "5"])
    defer { cluster.shutdown() }
    for id: UInt64 in 1...3 { try cluster.start(id, members: 3) }
    let leader = try XCTUnwrap(cluster.waitForLeader(), cluster.logs())
    for k in 0..<100 { XCTAssertEqual(cluster.put(leader, "key\(k)", "value\(k)"), 204) }
    let before = try XCTUnwrap(cluster.status(leader))
    XCTAssertGreaterThan(try XCTUnwrap(before["first_index"] as? Int), 10, "the log was not compacted: \(before)")

    // Add member 4, then start it: the log it needs is gone, so it gets a snapshot.
    cluster.reserve(4)
    let url = "http://127.0.0.1:\(cluster.raftPorts[4]!)"
    let added = try http("POST", port: cluster.httpPorts[leader]!, "/members/4", body: Array(url.utf8))
    XCTAssertEqual(added.status, 204, added.text)
    try cluster.start(4, members: 4, join: true)
    XCTAssertTrue(cluster.waitForValue(4, "key99", "value99"), "member 4 did not catch up\n\(cluster.logs())")
    XCTAssertEqual(cluster.get(4, "key0")?.text, "value0")
    let st4 = try XCTUnwrap(cluster.status(4))
    XCTAssertGreaterThanOrEqual(try XCTUnwrap(st4["restored_snapshots"] as? Int), 1, "not by snapshot: \(st4)")
    XCTAssertEqual((st4["members"] as? [String: String])?.keys.sorted(), ["1", "2", "3", "4"])
    XCTAssertEqual(cluster.put(4, "from4", "joined"), 204)

    // Remove a follower other than 4: it shuts down, the rest go on.
    let removed = [UInt64(1), 2, 3].first { $0 != leader }!
    let reply = try http("DELETE", port: cluster.httpPorts[leader]!, "/members/\(removed)")
    XCTAssertEqual(reply.status, 204, reply.text)
    XCTAssertTrue(cluster.waitForExit(removed, seconds: 10), "the removed member did not stop\n\(cluster.logs())")
    XCTAssertEqual(cluster.put(4, "after-removal", "yes"), 204, cluster.logs())
    let members = try http("GET", port: cluster.httpPorts[4]!, "/members")
    let list = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(members.body)) as? [String: String])
    XCTAssertFalse(list.keys.contains(String(removed)), "\(list)")
    XCTAssertEqual(list.count, 3)
  }

  func testEveryAcknowledgedWriteSurvivesSIGKILLOfEveryMember() throws {
    for mode in ["async", "sync"] {
      let cluster = try KVCluster(size: 3, args: ["--ready-handling", mode, "--snapshot-every", "500"])
      defer { cluster.shutdown() }
      for id: UInt64 in 1...3 { try cluster.start(id) }
      XCTAssertNotNil(cluster.waitForLeader(), "\(mode)\n\(cluster.logs())")
      // Writers put unique keys through every member until all of them are killed at once.
      let acknowledged = Mutex<[String: String]>([:])
      let stop = Atomic<Bool>(false)
      let group = DispatchGroup()
      let ports = cluster.httpPorts
      for w in 0..<6 {
        DispatchQueue.global().async(group: group) {
          var k = 0
          while !stop.load(ordering: .relaxed) {
            let key = "w\(w)-\(k)"
            let value = "value of \(key)"
            let port = ports[UInt64(1 + (w + k) % 3)]!
            if let r = try? http("PUT", port: port, "/\(key)", body: Array(value.utf8), timeout: 5), r.status == 204 {
              acknowledged.withLock { $0[key] = value }
            }
            k += 1
          }
        }
      }
      // Let the load run, then kill every member mid-write.
      let deadline = Date().addingTimeInterval(3)
      while Date() < deadline || acknowledged.withLock({ $0.count }) < 50 {
        usleep(50_000)
        if Date() > deadline.addingTimeInterval(20) { break }
      }
      for id: UInt64 in 1...3 { cluster.kill(id) }
      stop.store(true, ordering: .relaxed)
      group.wait()
      let acked = acknowledged.withLock { $0 }
      XCTAssertGreaterThanOrEqual(acked.count, 50, "\(mode): too few writes were acknowledged\n\(cluster.logs())")

      for id: UInt64 in 1...3 { try cluster.start(id) }
      let leader = try XCTUnwrap(cluster.waitForLeader(), "\(mode): no leader after the restart\n\(cluster.logs())")
      var lost: [String] = []
      for (key, value) in acked.sorted(by: { $0.key < $1.key }) {
        let r = cluster.get(leader, key, linearizable: true)
        if r?.status != 200 || r?.text != value {
          lost.append("\(key): \(r.map { "\($0.status) \($0.text)" } ?? "no answer")")
        }
      }
      XCTAssertEqual(lost, [], "\(mode): acknowledged writes lost after SIGKILL (\(acked.count) acknowledged)")
      print("\(mode): \(acked.count) acknowledged writes, all readable after SIGKILL of every member and a restart")
    }
  }

  func testBadFlagsExitWithAUsageError() throws {
    let cases: [([String], String)] = [
      (["--cluster", "http://127.0.0.1:1", "--port", "2"], "--id"),
      (["--id", "2", "--cluster", "http://127.0.0.1:1", "--port", "2"], "--id 2 is not a member"),
      (["--id", "1", "--cluster", "http://127.0.0.1", "--port", "2"], "no port"),
      (["--id", "1", "--cluster", "http://127.0.0.1:1", "--port", "70000"], "--port"),
      (["--id", "1", "--cluster", "http://127.0.0.1:1", "--port", "2", "--ready-handling", "maybe"], "ready-handling"),
      (["--id", "1", "--cluster", "http://127.0.0.1:1", "--port", "2", "--batch-max-entries", "0"], "batchEntriesMax"),
      (["--id", "1", "--cluster", "http://127.0.0.1:1", "--port", "2", "--segment-bytes", "1000"], "segmentBytes"),
      (["--id", "1", "--cluster", "http://127.0.0.1:1", "--port", "2", "--event-loops", "0"], "--event-loops"),
      (
        ["--id", "1", "--cluster", "http://127.0.0.1:1", "--port", "2", "--max-request-bytes-in-flight", "0"],
        "--max-request-bytes-in-flight"
      ),
      (
        ["--id", "1", "--cluster", "http://127.0.0.1:1", "--port", "2", "--segment-bytes", "1048576"],
        "raise --segment-bytes"
      ),
    ]
    for (args, expected) in cases {
      let r = try runTool("raftkv", args)
      XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
      XCTAssertTrue(r.stderr.contains(expected), "\(args): \(r.stderr)")
    }
  }

  func testAFullDiskStopsTheMemberWithANonZeroExitAndLosesNothing() throws {
    // Fail-stop, as etcd: a storage failure is logged with its cause, the member stops
    // accepting writes and exits non-zero; what it acknowledged is there after a restart.
    try XCTSkipUnless(getuid() == 0, "needs root to mount a small tmpfs (CI runs as root)")
    let mountPoint = try makeTestDirectory("raftkv-full")
    defer { try? FileManager.default.removeItem(atPath: mountPoint) }
    func mount(_ args: [String]) throws -> Bool { try runSystemCommand("/bin/mount", args) == 0 }
    guard try mount(["-t", "tmpfs", "-o", "size=12m", "tmpfs", mountPoint]) else {
      throw XCTSkip("mount -t tmpfs failed (no privilege in this container)")
    }
    defer { _ = try? runSystemCommand("/bin/umount", [mountPoint]) }

    let c = try KVCluster(
      size: 1, args: ["--segment-bytes", "\(4 << 20)", "--max-value-bytes", "65536", "--data-dir", "\(mountPoint)/m1"])
    defer { c.shutdown() }
    try c.start(1)
    XCTAssertEqual(c.waitForLeader(), 1, c.logs())
    let value = String(repeating: "v", count: 60_000)
    var acknowledged: [String] = []
    var refused: Int?
    for k in 0..<400 {
      let status = c.put(1, "key-\(k)", value + "\(k)", timeout: 10)
      if status == 200 || status == 204 {
        acknowledged.append("key-\(k)")
      } else {
        refused = status ?? 0
        break
      }
    }
    XCTAssertNotNil(refused, "the disk never filled: \(acknowledged.count) writes")
    let status = c.waitForExitStatus(1, seconds: 30)
    XCTAssertNotNil(status, "the member kept running after its disk filled\n\(c.logs())")
    XCTAssertNotEqual(status ?? 0, 0, c.logs())
    let log = c.logs(lines: 40)
    XCTAssertTrue(log.contains("disk full") && log.contains("raftkv stopping: the node failed"), log)
    XCTAssertGreaterThan(acknowledged.count, 10, log)

    // Room again: the member restarts and every acknowledged write is there.
    XCTAssertTrue(try mount(["-o", "remount,size=64m", mountPoint]))
    try c.start(1)
    XCTAssertEqual(c.waitForLeader(), 1, c.logs())
    for key in acknowledged {
      let k = Int(key.dropFirst(4))!
      XCTAssertEqual(
        c.get(1, key, linearizable: true).map { String(decoding: $0.body, as: UTF8.self) }, value + "\(k)", key)
    }
  }

  func testSIGTERMFinishesTheRequestsInFlightThenExitsZero() throws {
    // swift-service-lifecycle's graceful shutdown: no new request is taken (503 "shutting
    // down", or the listener is gone), every request already taken is answered, the WAL is
    // synced and closed, and the exit status is 0. What was acknowledged is there afterwards.
    let c = try KVCluster(size: 1)
    defer { c.shutdown() }
    try c.start(1)
    XCTAssertEqual(c.waitForLeader(), 1, c.logs())
    let process = try XCTUnwrap(c.processes[1])
    let port = c.httpPorts[1]!
    final class Outcomes: Sendable {
      let acknowledged = Mutex<[String]>([])
      let wrong = Mutex<[String]>([])
    }
    let outcomes = Outcomes()
    /// Set just before SIGTERM: the clients begin no new request after it.
    let signalled = Atomic<Bool>(false)
    /// When SIGTERM was sent (`DispatchTime` uptime ns). A client that read `signalled` false just
    /// before may still begin a request after it (descheduled in between, 32 threads on 2
    /// cores); once the requests taken are answered the listener closes, and such a late
    /// connection is refused or, still in the accept queue, reset by the kernel: never taken.
    let signalledAt = Atomic<UInt64>(.max)
    let enough = DispatchSemaphore(value: 0)
    let group = DispatchGroup()
    for t in 0..<32 {
      DispatchQueue.global().async(group: group) {
        var k = 0
        while !signalled.load(ordering: .acquiring) {
          let key = "t\(t)-\(k)"
          k += 1
          let began = DispatchTime.now().uptimeNanoseconds
          do {
            let r = try http("PUT", port: port, "/\(key)", body: Array("v-\(key)".utf8), timeout: 20)
            if r.status == 204 {
              let n = outcomes.acknowledged.withLock {
                $0.append(key)
                return $0.count
              }
              if n == 300 { enough.signal() }
              continue
            }
            if r.status != 503 || !r.text.contains("shutting down") {
              outcomes.wrong.withLock { $0.append("\(key): \(r.status) \(r.text)") }
            }
          } catch let e as HTTPClientError where e.code == ECONNRESET {
            // Reset: the member never read the request (still in the listener's accept queue
            // when the listener closed, or unread on a connection it had not served yet: a
            // socket closed with unread data is reset), so it never took it, whenever it began.
            // A request it read and dropped would end without an answer, not with a reset.
          } catch {
            // Begun before SIGTERM: a request taken and dropped. Begun after: not taken.
            if began < signalledAt.load(ordering: .acquiring) {
              outcomes.wrong.withLock { $0.append("\(key): \(error)") }
            }
          }
          return
        }
      }
    }
    XCTAssertEqual(enough.wait(timeout: .now() + 30), .success, "no load: \(c.logs())")
    signalled.store(true, ordering: .releasing)
    signalledAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .releasing)
    c.kill(1, signal: SIGTERM)
    XCTAssertEqual(group.wait(timeout: .now() + 30), .success, "clients still blocked after the member exited")
    XCTAssertEqual(process.terminationReason, .exit, c.logs())
    XCTAssertEqual(process.terminationStatus, 0, c.logs())
    XCTAssertEqual(outcomes.wrong.withLock { $0 }, [], "requests taken but not answered")
    let log = c.logs(lines: 20)
    XCTAssertTrue(log.contains("finishing the requests in flight") && log.contains("unanswered=0"), log)

    try c.start(1)
    XCTAssertEqual(c.waitForLeader(), 1, c.logs())
    for key in outcomes.acknowledged.withLock({ $0 }) {
      XCTAssertEqual(c.get(1, key).map(\.text), "v-\(key)", key)
    }
  }
}
