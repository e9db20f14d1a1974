import Raft
import Synchronization

/// The leader as this node sees it, for `ReplicatedLog.leaderChanges`: the latest change and
/// the streams subscribed to it.
final class LeaderWatch: Sendable {
  private struct State {
    var latest = LeaderChange(leader: nil, term: 0)
    var nextID = 0
    var subscribers: [Int: AsyncStream<LeaderChange>.Continuation] = [:]
    var finished = false
  }
  private let state = Mutex(State())

  func publish(_ change: LeaderChange) {
    let subscribers = state.withLock { s -> [AsyncStream<LeaderChange>.Continuation] in
      s.latest = change
      return Array(s.subscribers.values)
    }
    for c in subscribers { c.yield(change) }
  }

  /// A stream that starts with the latest change and keeps only the newest one unread.
  func subscribe() -> AsyncStream<LeaderChange> {
    let (stream, continuation) = AsyncStream.makeStream(of: LeaderChange.self, bufferingPolicy: .bufferingNewest(1))
    let id: Int? = state.withLock { s in
      guard !s.finished else { return nil }
      s.nextID += 1
      s.subscribers[s.nextID] = continuation
      continuation.yield(s.latest)
      return s.nextID
    }
    guard let id else {
      continuation.finish()
      return stream
    }
    continuation.onTermination = { [weak self] _ in
      _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
    }
    return stream
  }

  func finish() {
    let subscribers = state.withLock { s -> [AsyncStream<LeaderChange>.Continuation] in
      s.finished = true
      defer { s.subscribers = [:] }
      return Array(s.subscribers.values)
    }
    for c in subscribers { c.finish() }
  }
}

extension ReplicatedLog {
  // MARK: Leadership

  /// The leader as this node sees it: the current one first, then each change (nil while none
  /// is known). A slow consumer sees the newest change, not every one (the stream keeps one).
  /// Ends when the log shuts down.
  public var leaderChanges: AsyncStream<LeaderChange> { leaders.subscribe() }

  /// Starts an election on this node now, instead of after the election timeout.
  public func campaign() { node.campaign() }

  /// Waits until this node knows a leader and returns it (`.timedOut` after `timeout`).
  public func waitForLeader(timeout: Duration = .seconds(10)) async throws(ReplicatedLogError) -> UInt64 {
    try await firstChange(in: leaderChanges, timeout: timeout) { $0.leader != nil }.leader!
  }

  /// Hands the leadership to `transferee` (a voter whose log is up to date, or that the leader
  /// brings up to date first) and returns once this node sees it lead; `.timedOut` when it does
  /// not within `timeout` (the transfer was refused or lost: the old leader goes on).
  public func transferLeadership(
    to transferee: UInt64, timeout: Duration = .seconds(10)
  ) async throws(ReplicatedLogError) {
    if node.leader == transferee { return }
    if node.failure != nil || node.stopping.load(ordering: .relaxed) { throw .stopped }
    let changes = leaderChanges  // subscribed before the transfer starts: no change is missed
    node.transferLeadership(to: transferee)
    _ = try await firstChange(in: changes, timeout: timeout) { $0.leader == transferee }
  }

  /// The first change in `changes` that `matches`, waited for at most `timeout`.
  private func firstChange(
    in changes: AsyncStream<LeaderChange>, timeout: Duration, matches: @escaping @Sendable (LeaderChange) -> Bool
  ) async throws(ReplicatedLogError) -> LeaderChange {
    let outcome = await withTaskGroup(of: Result<LeaderChange, ReplicatedLogError>?.self) { group in
      group.addTask {
        for await change in changes where matches(change) { return .success(change) }
        return Task.isCancelled ? nil : .failure(.stopped)
      }
      group.addTask {
        do {
          try await Task.sleep(for: timeout)  // the deadline, not a wait for the event
          return .failure(.timedOut)
        } catch {
          return nil
        }
      }
      defer { group.cancelAll() }
      while let next = await group.next() {
        if let result = next { return result }
      }
      return .failure(.cancelled)
    }
    return try outcome.get()
  }

  // MARK: Membership

  /// Adds `id` as a voter (a node that joins empty: start it with no peers; it catches up from
  /// the leader: from the log while it still starts at index 1, else from a snapshot, which
  /// must include it: after a compaction, compact again at or above the change's index). `context` travels with the change (for example the new member's address,
  /// which each member's transport needs). Returns the change's index once it is committed and
  /// applied here.
  @discardableResult
  public func addMember(
    _ id: UInt64, context: [UInt8] = [], timeout: Duration = .seconds(10)
  ) async throws(ReplicatedLogError) -> UInt64 {
    let status = try await status()
    if status.voters.contains(id) { throw .invalidMembershipChange("node \(id) is a voter already") }
    return try await change(.addNode, id, context: context, timeout: timeout)
  }

  /// Adds `id` as a learner: it receives the log but does not vote (`promote` makes it a
  /// voter once it caught up).
  @discardableResult
  public func addLearner(
    _ id: UInt64, context: [UInt8] = [], timeout: Duration = .seconds(10)
  ) async throws(ReplicatedLogError) -> UInt64 {
    let status = try await status()
    if status.voters.contains(id) { throw .invalidMembershipChange("node \(id) is a voter") }
    if status.learners.contains(id) { throw .invalidMembershipChange("node \(id) is a learner already") }
    return try await change(.addLearnerNode, id, context: context, timeout: timeout)
  }

  /// Makes the learner `id` a voter.
  @discardableResult
  public func promote(
    _ id: UInt64, context: [UInt8] = [], timeout: Duration = .seconds(10)
  ) async throws(ReplicatedLogError) -> UInt64 {
    let status = try await status()
    guard status.learners.contains(id) else { throw .invalidMembershipChange("node \(id) is not a learner") }
    return try await change(.addNode, id, context: context, timeout: timeout)
  }

  /// Removes the member (voter or learner) `id`.
  @discardableResult
  public func removeMember(
    _ id: UInt64, context: [UInt8] = [], timeout: Duration = .seconds(10)
  ) async throws(ReplicatedLogError) -> UInt64 {
    let status = try await status()
    guard status.voters.contains(id) || status.learners.contains(id) else {
      throw .invalidMembershipChange("node \(id) is not a member")
    }
    return try await change(.removeNode, id, context: context, timeout: timeout)
  }

  /// Proposes one membership change and waits for it to be committed and applied here. A
  /// leader refuses a change until it applied the entries of its own term before it (and while
  /// another change is pending): such a refusal (never committed) is retried, after a read
  /// barrier, twice.
  private func change(
    _ type: ConfChangeType, _ id: UInt64, context: [UInt8], timeout: Duration
  ) async throws(ReplicatedLogError) -> UInt64 {
    precondition(id != 0, "ReplicatedLog: node ids are not 0")
    let change = AnyConfChange.v2(ConfChangeV2(changes: [ConfChangeSingle(type: type, nodeID: id)], context: context))
    let node = self.node
    var attempt = 0
    while true {
      if Task.isCancelled { throw .notCommitted(.cancelled) }
      do {
        return try await awaitAnswer(
          timeout: timeout, onDeadline: .outcomeUnknown(.timedOut), onCancel: .outcomeUnknown(.cancelled)
        ) { once in
          node.proposeConfChange(change) { result in once.resume(result.mapError { ReplicatedLogError($0) }) }
        }
      } catch .notCommitted(.dropped) where attempt < 2 {
        attempt += 1
        _ = try? await readBarrier(timeout: timeout)  // the leader's own entries applied
      }
    }
  }
}
