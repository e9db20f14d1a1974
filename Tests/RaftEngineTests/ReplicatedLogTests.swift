import Raft
import RaftEngine
import RaftWAL
import Synchronization
import XCTest

/// A state machine that keeps a running sum of the entries' first bytes and answers each
/// entry with the sum after it (and its index), so appenders can check their responses.
final class SummingMachine: LogStateMachine {
  struct Answer: Sendable, Equatable {
    var index: UInt64
    var sum: UInt64
  }
  private let state = Mutex((sum: UInt64(0), applied: [UInt64](), restored: [(UInt64, [UInt8])]()))
  var appliedIndexes: [UInt64] { state.withLock { $0.applied } }
  var restored: [(index: UInt64, data: [UInt8])] { state.withLock { $0.restored } }

  func restore(index: UInt64, data: [UInt8]) { state.withLock { $0.restored.append((index, data)) } }
  var sum: UInt64 { state.withLock { $0.sum } }

  func apply(_ entry: LogEntry) -> Answer {
    state.withLock { s in
      s.sum += UInt64(entry.data.first ?? 0)
      s.applied.append(entry.index)
      return Answer(index: entry.index, sum: s.sum)
    }
  }
}

final class ReplicatedLogTests: XCTestCase {
  var root = ""

  override func setUp() {
    var template = Array("\(NSTemporaryDirectory())/swift-raft-log-XXXXXX".utf8CString)
    root = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
  }

  override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

  func config(_ id: UInt64, peers: [UInt64], _ mode: NodeConfiguration.ReadyHandling = .async) -> NodeConfiguration {
    var c = NodeConfiguration(id: id, peers: peers, directory: "\(root)/\(mode)-node-\(id)")
    c.readyHandling = mode
    c.tickMicroseconds = 2_000
    return c
  }

  /// Every entry from `index` through `last`, read as a reader would.
  func read<M>(_ log: ReplicatedLog<M>, from index: UInt64, through last: UInt64) async throws -> [LogEntry] {
    var out: [LogEntry] = []
    guard last >= index else { return out }
    for try await batch in log.entries(from: index, batchEntriesMax: 7) {
      out += batch
      if out.last!.index >= last { break }
    }
    return out.filter { $0.index <= last }
  }

  /// A cluster of `ids` on one in-memory network, its leader elected (node `ids[0]` campaigns).
  func cluster<M>(
    _ ids: [UInt64], _ mode: NodeConfiguration.ReadyHandling = .async, network: InMemoryNetwork,
    machine: () -> M, configure: (inout NodeConfiguration) -> Void = { _ in }
  ) async throws -> [ReplicatedLog<M>] {
    var logs: [ReplicatedLog<M>] = []
    for id in ids {
      var c = config(id, peers: ids, mode)
      configure(&c)
      let log = try await ReplicatedLog.open(
        configuration: c, transport: network.transport(for: id), stateMachine: machine())
      network.register(id, sink: log.sink)
      log.start()
      logs.append(log)
    }
    logs[0].campaign()
    _ = try await logs[0].waitForLeader()
    return logs
  }

  /// A single-node log opened from `c` (its WAL), started and leading.
  func reopen<M>(_ c: NodeConfiguration, _ machine: M, network: InMemoryNetwork) async throws -> ReplicatedLog<M> {
    let log = try await ReplicatedLog.open(
      configuration: c, transport: network.transport(for: c.id), stateMachine: machine)
    network.register(c.id, sink: log.sink)
    log.start()
    log.campaign()
    _ = try await log.waitForLeader()
    return log
  }

  /// The leader among `logs`, as `logs[0]` sees it once it is one of them.
  func leader<M>(of logs: [ReplicatedLog<M>]) async throws -> ReplicatedLog<M> {
    for await change in logs[0].leaderChanges {
      if let l = logs.first(where: { $0.id == change.leader }) { return l }
    }
    throw ReplicatedLogError.stopped
  }

  func testSingleNodeAppendsResponsesEveryIndexInEntriesAndResumeAfterRestart() async throws {
    for mode in NodeConfiguration.ReadyHandling.allCases {
      let network = InMemoryNetwork()
      let log = try await cluster([1], mode, network: network, machine: SummingMachine.init).first!
      var indexes: [UInt64] = []
      var expectedSum: UInt64 = 0
      for i in 1...20 {
        let a = try await log.append([UInt8(i)])
        expectedSum += UInt64(i)
        XCTAssertEqual(a.responses, [SummingMachine.Answer(index: a.index, sum: expectedSum)], "\(mode)")
        indexes.append(a.index)
      }
      XCTAssertEqual(indexes, Array(indexes[0]..<(indexes[0] + 20)), "\(mode): consecutive indexes")
      // One batch: one range, a response per entry, in order.
      let batch = try await log.append(contentsOf: [[1], [2], [3], []].map(Payload.init))
      XCTAssertEqual(batch.indexes, (indexes.last! + 1)...(indexes.last! + 4))
      XCTAssertEqual(batch.responses.map(\.sum), [expectedSum + 1, expectedSum + 3, expectedSum + 6, expectedSum + 6])
      // An empty append is delivered like any other entry.
      let empty = try await log.append([UInt8]())
      let barrier = try await log.readBarrier()
      XCTAssertGreaterThanOrEqual(barrier, empty.index)
      // Every index, from 1: the bootstrap's membership change, the leader's empty entry, ours.
      let all = try await read(log, from: 1, through: barrier)
      XCTAssertEqual(all.map(\.index), Array(1...barrier), "\(mode): every index in order")
      XCTAssertEqual(all.first?.kind, .membershipChange)
      XCTAssertEqual(all.first { $0.index == indexes[4] }.map { Array($0.data) }, [5])
      XCTAssertEqual(all.first { $0.index == empty.index }?.data.count, 0)
      XCTAssertEqual(log.stateMachine.appliedIndexes.last, barrier)
      await log.shutdown()
      let late = await attempt(log, [1])
      XCTAssertEqual(late.failure, .notCommitted(.stopped), "\(mode)")

      // Reopened where the application says it resumes: the state machine gets only what is
      // above it, and the log still reads from 1.
      var c = config(1, peers: [1], mode)
      c.appliedIndex = indexes[9]
      let machine = SummingMachine()
      let again = try await reopen(c, machine, network: network)
      let next = try await again.append([100])
      XCTAssertEqual(machine.appliedIndexes.first, indexes[9] + 1, "\(mode): resumed after the applied index")
      XCTAssertEqual(machine.appliedIndexes.last, next.index)
      let reread = try await read(again, from: 1, through: barrier)
      XCTAssertEqual(reread, all, "\(mode): the same log after the restart")
      await again.shutdown()
      network.shutdown()
    }
  }

  func testResumingAboveTheSnapshotKeepsTheApplicationsStateAndCompactsWhereAsked() async throws {
    let network = InMemoryNetwork()
    let log = try await cluster([1], network: network, machine: SummingMachine.init).first!
    var indexes: [UInt64] = []
    for i in 1...10 { indexes.append(try await log.append([UInt8(i)]).index) }
    try await log.compact(through: indexes[4], snapshot: Array("S".utf8))
    await log.shutdown()

    // Resumed above the snapshot: the application's own state stands (no restore), and what
    // is above comes.
    var c = config(1, peers: [1])
    c.appliedIndex = indexes[7]
    let machine = SummingMachine()
    let again = try await reopen(c, machine, network: network)
    let next = try await again.append([1])
    XCTAssertTrue(machine.restored.isEmpty, "restored \(machine.restored) over the application's newer state")
    XCTAssertEqual(machine.appliedIndexes.first, indexes[7] + 1)
    // A compaction between the snapshot and the resume point is saved where asked.
    let saved = try await again.compact(through: indexes[6], snapshot: Array("T".utf8))
    XCTAssertEqual(saved, indexes[6])
    XCTAssertEqual(try again.latestSnapshot().index, indexes[6])
    XCTAssertGreaterThan(next.index, indexes[9])
    await again.shutdown()

    // Resumed below it (or not at all): the snapshot is restored, then the rest applied.
    let fresh = SummingMachine()
    let third = try await reopen(config(1, peers: [1]), fresh, network: network)
    _ = try await third.append([2])
    XCTAssertEqual(fresh.restored.map(\.index), [indexes[6]])
    XCTAssertEqual(fresh.restored.first?.data, Array("T".utf8))
    XCTAssertEqual(fresh.appliedIndexes.first, indexes[6] + 1)
    await third.shutdown()
    network.shutdown()
  }

  func testAnAppendThatTimedOutAndThenCommitsDoesNotLoseLaterResponses() async throws {
    let network = InMemoryNetwork()
    // Slow ticks: a delayed leader is not voted out while its messages are late.
    let logs = try await cluster([1, 2, 3], network: network, machine: SummingMachine.init) {
      $0.tickMicroseconds = 100_000
    }
    let leader = try await leader(of: logs)
    _ = try await leader.append([1])
    network.setDelay(300_000_000, from: leader.id)
    let late = await attempt(leader, [2], timeout: .milliseconds(50))
    XCTAssertEqual(late.failure, .outcomeUnknown(.timedOut))
    // The entry commits after its caller gave up; its outcome arrives with nobody waiting.
    try await leader.waitUntilApplied(leader.lastIndex)
    network.setDelay(0, from: leader.id)
    let next = try await leader.append([3])
    XCTAssertEqual(next.responses.first?.sum, 6, "1 + 2 (committed late) + 3")
    for log in logs { await log.shutdown() }
    network.shutdown()
  }

  func testCompactionReclaimsMemoryAndSegmentsAndReadersLearnWhereTheLogStarts() async throws {
    let network = InMemoryNetwork()
    let logs = try await cluster([1], network: network, machine: NoStateMachine.init) { c in
      c.wal.segmentBytes = 64 << 10
      c.wal.recordBytesMax = 16 << 10
      c.compactionRetainEntries = 100
    }
    let log = logs[0]
    let payload = [UInt8](repeating: 7, count: 512)
    var last: UInt64 = 0
    for _ in 0..<40 {
      last = try await log.append(contentsOf: Array(repeating: Payload(payload), count: 100)).indexes.upperBound
    }
    let segments = { try FileManager.default.contentsOfDirectory(atPath: "\(self.root)/async-node-1").count }
    let before = try segments()
    XCTAssertEqual(log.firstIndex, 1)
    let snapshotIndex = try await log.compact(through: last - 500, snapshot: Array("state".utf8))
    XCTAssertEqual(snapshotIndex, last - 500)
    XCTAssertEqual(log.firstIndex, last - 600 + 1, "the entries behind the retained 100 are gone")
    let snap = try log.latestSnapshot()
    XCTAssertEqual(snap.index, last - 500)
    XCTAssertEqual(snap.data, Array("state".utf8))
    _ = try await log.append([1])  // the next write's batch finishes the compaction's file work
    XCTAssertLessThan(try segments(), before, "WAL segments below the compaction point are removed")
    do {
      _ = try await read(log, from: 1, through: last)
      XCTFail("reading compacted entries must throw")
    } catch let e as ReplicatedLogError {
      XCTAssertEqual(e, .compacted(firstIndex: last - 600 + 1))
    }
    let tail = try await read(log, from: last - 600 + 1, through: last)
    XCTAssertEqual(tail.count, 600)
    // A compaction ahead of the applied index waits for it; an older one answers at once.
    let older = try await log.compact(through: 10)
    XCTAssertEqual(older, last - 500)
    await log.shutdown()
    network.shutdown()
  }

  func testAppendsFailingAsNotCommittedNeverCommitWhenTheLeaderStopsWithAppendsInFlight() async throws {
    for mode in NodeConfiguration.ReadyHandling.allCases {
      let network = InMemoryNetwork()
      let logs = try await cluster([1, 2, 3], mode, network: network, machine: NoStateMachine.init)
      let leader = try await leader(of: logs)
      let outcomes = Outcomes()
      // Thousands of appends in flight, then the leader stops under them.
      await withTaskGroup(of: Void.self) { group in
        for k in UInt32(0)..<2_000 {
          group.addTask {
            let data = withUnsafeBytes(of: k.bigEndian) { Array($0) }
            let r = await attempt(leader, data, timeout: .seconds(30))
            outcomes.all.withLock { $0[k] = r.map(\.index) }
          }
        }
        group.addTask { await leader.shutdown() }
      }
      let all = outcomes.all.withLock { $0 }
      XCTAssertEqual(all.count, 2_000)
      for (k, r) in all {
        if case .failure(let e) = r {
          XCTAssertTrue(
            e.isNotCommitted || e == .outcomeUnknown(.lost("the node stopped after appending it (node stopped)")),
            "\(mode): append \(k) failed with \(e)")
        }
      }
      // The others elect a leader and commit on: what they hold is the truth.
      let rest = logs.filter { $0 !== leader }
      let newLeader = try await self.leader(of: rest)
      let mark = try await newLeader.append(Array("mark".utf8))
      let committed = try await read(newLeader, from: 1, through: mark.index)
      var inLog: [UInt32: UInt64] = [:]
      for e in committed where e.kind == .normal && e.data.count == 4 {
        inLog[e.data.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(as: UInt32.self)) }] = e.index
      }
      var notCommitted = 0
      var unknown = 0
      for (k, r) in all {
        switch r {
        case .success(let index): XCTAssertEqual(inLog[k], index, "\(mode): acknowledged append \(k) is not in the log")
        case .failure(let e) where e.isNotCommitted:
          notCommitted += 1
          XCTAssertNil(inLog[k], "\(mode): append \(k) failed with \(e), yet it is in the log at \(inLog[k] ?? 0)")
        case .failure: unknown += 1
        }
      }
      XCTAssertGreaterThan(notCommitted + unknown, 0, "\(mode): the stop cut no append short")
      print(
        "\(mode): \(all.count - notCommitted - unknown) committed, \(notCommitted) not committed, \(unknown) unknown")
      for log in rest { await log.shutdown() }
      network.shutdown()
    }
  }

  func testCancellationBeforeAndAfterProposingAndErrorsOffTheLeader() async throws {
    let network = InMemoryNetwork()
    // Without check-quorum the isolated leader stays leader (and its appends wait).
    let logs = try await cluster([1, 2, 3], network: network, machine: NoStateMachine.init) { $0.checkQuorum = false }
    let leader = try await leader(of: logs)
    let follower = logs.first { $0 !== leader }!
    let offLeader = await attempt(follower, [1])
    XCTAssertEqual(offLeader.failure, .notLeader(leader: leader.id))
    // Cut off from its quorum, the leader cannot commit: a cancelled append is answered at once
    // as outcome unknown (it was proposed), not after its deadline.
    network.isolate(leader.id)
    let before = leader.lastIndex
    let task = Task { await attempt(leader, [2], timeout: .seconds(600)) }
    // Cancelled once the append is in the leader's log (proposed), within 10 s.
    let deadline = ContinuousClock.now + .seconds(10)
    while leader.lastIndex <= before && ContinuousClock.now < deadline { await Task.yield() }
    task.cancel()
    let cancelled = await task.value
    XCTAssertEqual(cancelled.failure, .outcomeUnknown(.cancelled))
    // Already cancelled: never proposed.
    let early = Task {
      withUnsafeCurrentTask { $0?.cancel() }
      return await attempt(leader, [3])
    }
    let earlyResult = await early.value
    XCTAssertEqual(earlyResult.failure, .notCommitted(.cancelled))
    let timedOut = await attempt(leader, [4], timeout: .milliseconds(100))
    XCTAssertEqual(timedOut.failure, .outcomeUnknown(.timedOut))
    network.heal()
    for log in logs { await log.shutdown() }
    network.shutdown()
  }

  func testLeaderChangesTransferAndMembership() async throws {
    let network = InMemoryNetwork()
    // Ticks of 10 ms: elections do not churn on a loaded machine (a transfer in progress is
    // abandoned when another election starts).
    let logs = try await cluster([1, 2, 3], network: network, machine: NoStateMachine.init) {
      $0.tickMicroseconds = 10_000
    }
    let leader = try await leader(of: logs)
    let target = logs.first { $0 !== leader }!
    var seen = target.leaderChanges.makeAsyncIterator()
    // The follower learns the leader from its first message.
    var first = await seen.next()
    while first != nil && first?.leader != leader.id { first = await seen.next() }
    XCTAssertEqual(first?.leader, leader.id)
    // A transfer is abandoned when an election intervenes (a loaded machine): asked again.
    var moved = false
    for _ in 0..<3 where !moved {
      do {
        try await target.transferLeadership(to: target.id, timeout: .seconds(5))
        moved = true
      } catch {
        guard error == .timedOut else { throw error }
      }
    }
    XCTAssertTrue(moved, "the leadership never moved to node \(target.id)")
    XCTAssertEqual(target.leader, target.id)
    let next = await seen.next()
    XCTAssertNotEqual(next?.leader, leader.id, "the follower saw the leadership move")

    // A learner joins empty, is promoted, then removed; wrong requests are refused by name.
    var c4 = config(4, peers: [])
    c4.tickMicroseconds = 10_000
    let fourth = try await ReplicatedLog.open(configuration: c4, transport: network.transport(for: 4))
    network.register(4, sink: fourth.sink)
    fourth.start()
    do {
      try await target.promote(4)
      XCTFail("promoting a non-member must fail")
    } catch {
      XCTAssertEqual(error, .invalidMembershipChange("node 4 is not a learner"))
    }
    try await target.addLearner(4)
    var status = try await target.status()
    XCTAssertEqual(status.learners, [4])
    try await target.promote(4)
    status = try await target.status()
    XCTAssertEqual(status.voters, [1, 2, 3, 4])
    XCTAssertTrue(status.learners.isEmpty)
    let appended = try await target.append([9])
    try await fourth.waitUntilApplied(appended.index)
    try await target.removeMember(4)
    status = try await target.status()
    XCTAssertEqual(status.voters, [1, 2, 3])
    do {
      try await target.removeMember(4)
      XCTFail("removing a non-member must fail")
    } catch {
      XCTAssertEqual(error, .invalidMembershipChange("node 4 is not a member"))
    }
    for log in logs + [fourth] { await log.shutdown() }
    network.shutdown()
  }

  func testStorageErrorsKeepTheWALErrorAndOutcomesMapByWhetherTheEntryMayCommit() {
    let io = WALError.io(operation: "fdatasync", file: "seg-1", errno: EIO)
    XCTAssertEqual(ReplicatedLogError(EngineError(storageError: io)), .storage(io))
    XCTAssertTrue(ReplicatedLogError(.dropped).isNotCommitted)
    XCTAssertTrue(ReplicatedLogError(.busy).isNotCommitted)
    XCTAssertTrue(ReplicatedLogError(.notLeader(leader: 2)).isNotCommitted)
    XCTAssertFalse(ReplicatedLogError(.outcomeUnknown("x")).isNotCommitted)
    XCTAssertFalse(ReplicatedLogError(.timedOut).isNotCommitted)
  }
}

/// Appends, recording the outcome instead of throwing.
func attempt<M>(_ log: ReplicatedLog<M>, _ data: [UInt8], timeout: Duration = .seconds(10)) async -> Result<
  ReplicatedLog<M>.Appended, ReplicatedLogError
> {
  do {
    return .success(try await log.append(data, timeout: timeout))
  } catch {
    return .failure(error)
  }
}

/// The outcome of each append, by its number.
final class Outcomes: Sendable {
  let all = Mutex([UInt32: Result<UInt64, ReplicatedLogError>]())
}

extension Result {
  var failure: Failure? {
    if case .failure(let e) = self { return e }
    return nil
  }
}
