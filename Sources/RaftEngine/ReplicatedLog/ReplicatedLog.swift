import Dispatch
import Raft
import RaftWAL
import Synchronization

/// The embedding API for a high-throughput replicated log: append bytes (one entry or a batch),
/// get their indexes and your state machine's responses once committed and applied locally,
/// read the log from any index with back-pressure, put a linearizable read barrier in front of
/// local reads, and tell the log what you consumed so that memory and disk are reclaimed.
///
/// One `ReplicatedLog` is one Raft node: a single node, or one member of a cluster whose nodes
/// reach each other through a `Transport` (register `sink` with it). It recovers its hard
/// state, log and snapshot from its WAL directory when reopened.
///
/// **Where answers run.** Every `async` call resumes on the calling task's executor: the
/// engine's threads only resume continuations, never run the caller's code. The state
/// machine's `apply` runs on the engine's apply thread.
///
/// **Memory and disk are the application's to bound.** The log keeps every entry above the
/// last compaction in memory (and its WAL segments on disk); call `compact(through:)` as you
/// consume entries (or capture them in your own snapshot), as etcd does every `SnapshotCount`
/// entries.
public final class ReplicatedLog<Machine: LogStateMachine>: Sendable {
  /// The most entries one `append(contentsOf:)` takes.
  public static var appendBatchEntriesMax: Int { 65_536 }

  /// The node (internal: the log's API is the whole API).
  let node: Node
  let machine: LogMachine<Machine>
  let leaders: LeaderWatch
  /// Set once `shutdown` began.
  private let closed = Atomic<Bool>(false)
  /// The random part of this log's read index contexts.
  private let readContextSeed = UInt64.random(in: 1...UInt64.max)

  /// Opens the node's WAL (`configuration.directory`), recovers it, and prepares the node;
  /// call `start()`. Blocks while the WAL is read (use `open` from async code).
  ///
  /// `configuration.appliedIndex`: where the application resumes after a restart (it applied
  /// and kept everything through there itself): the state machine gets only the entries above
  /// it (clamped to the recovered commit index), and nothing is replayed from index 1.
  /// `configuration.snapshotEntries` and `compactionRetainBytes` are ignored: the log compacts
  /// only when told (`compact(through:)`), keeping `compactionRetainEntries` behind.
  public init(configuration: NodeConfiguration, transport: Transport, stateMachine: Machine) throws(ReplicatedLogError)
  {
    var configuration = configuration
    configuration.snapshotEntries = 0
    configuration.compactionRetainBytes = 0
    let leaders = LeaderWatch()
    let userLeaderChange = configuration.onLeaderChange
    configuration.onLeaderChange = { change in
      leaders.publish(change)
      userLeaderChange?(change)
    }
    self.leaders = leaders
    // The machine's applied index starts where the node resumes (set below, once known).
    let machine = LogMachine(machine: stateMachine, appliedIndex: 0)
    self.machine = machine
    // A node that stops on its own ends its readers and waiters with the cause.
    let userFailure = configuration.onFailure
    configuration.onFailure = { error in
      machine.waiters.finish(ReplicatedLogError(error))
      leaders.finish()
      userFailure?(error)
    }
    do {
      node = try Node(configuration: configuration, stateMachine: machine, transport: transport)
    } catch let error as WALError {
      throw .storage(error)
    } catch {
      throw .internalFailure("opening the log failed: \(error)")
    }
    machine.applied.store(node.core.appliedIndex, ordering: .releasing)
  }

  /// Opens the log as `init` does, on a thread of its own: the caller's task waits without
  /// blocking its executor while the WAL is read (seconds for millions of entries).
  public static func open(
    configuration: NodeConfiguration, transport: Transport, stateMachine: Machine
  ) async throws(ReplicatedLogError) -> ReplicatedLog {
    let result: Result<ReplicatedLog, ReplicatedLogError> = await withCheckedContinuation { c in
      OSThread(name: "raft-log-open") {
        do throws(ReplicatedLogError) {
          c.resume(
            returning: .success(
              try ReplicatedLog(configuration: configuration, transport: transport, stateMachine: stateMachine)))
        } catch {
          c.resume(returning: .failure(error))
        }
      }.detach()
    }
    return try result.get()
  }

  /// Starts the node.
  public func start() { node.start() }

  /// Where the transport delivers this node's messages.
  public var sink: MessageSink { node.sink }

  /// This node's id.
  public var id: UInt64 { node.id }

  /// The leader this node knows of (nil: none).
  public var leader: UInt64? { node.leader }

  /// The highest index applied locally.
  public var appliedIndex: UInt64 { machine.applied.load(ordering: .acquiring) }

  /// The application's state machine.
  public var stateMachine: Machine { machine.machine }

  /// Why the log stopped on its own (a storage failure, a broken invariant); nil while it runs
  /// or after `shutdown()`.
  public var failure: ReplicatedLogError? { node.failure.map { ReplicatedLogError($0) } }

  // MARK: Appending

  /// What an append returns: where its entries are, and what the state machine returned for
  /// each (in order).
  public struct Appended: Sendable {
    /// The indexes of the batch's entries, consecutive, in the order given.
    public var indexes: ClosedRange<UInt64>
    public var responses: [Machine.Response]
    /// The first (for a single append, the only) entry's index.
    public var index: UInt64 { indexes.lowerBound }
  }

  /// Appends one entry and returns its index and response once it is committed, durable and
  /// applied on this node (empty data is allowed: the entry is delivered like any other).
  /// Only the leader takes appends.
  ///
  /// Errors say whether the entry may be in the log: `notLeader`, `notCommitted`, `tooLarge`
  /// (never committed; safe to retry), `outcomeUnknown` (proposed; it may commit: the deadline
  /// passed, the task was cancelled, or the leadership was lost), `storage` and
  /// `internalFailure` (the log stopped). A task cancelled before the call proposes gets
  /// `notCommitted(.cancelled)`; cancelled after, `outcomeUnknown(.cancelled)` at once.
  public func append(_ data: Payload, timeout: Duration = .seconds(10)) async throws(ReplicatedLogError) -> Appended {
    try await append(contentsOf: [data], timeout: timeout)
  }

  /// Appends `data` (the array is not copied), as `append(_: Payload)`.
  public func append(_ data: [UInt8], timeout: Duration = .seconds(10)) async throws(ReplicatedLogError) -> Appended {
    try await append(contentsOf: [Payload(data)], timeout: timeout)
  }

  /// Appends `payloads` as one batch: one proposal, consecutive indexes, all committed or none
  /// (the batch is proposed as one Raft message). At most `appendBatchEntriesMax` entries.
  /// Payloads are views: cut them from one buffer (`Payload(buffer, range)`) to append without
  /// a copy.
  public func append(
    contentsOf payloads: [Payload], timeout: Duration = .seconds(10)
  ) async throws(ReplicatedLogError) -> Appended {
    guard !payloads.isEmpty else { throw .notCommitted(.emptyBatch) }
    precondition(
      payloads.count <= Self.appendBatchEntriesMax,
      "ReplicatedLog.append: \(payloads.count) entries in one batch, more than \(Self.appendBatchEntriesMax)")
    if Task.isCancelled { throw .notCommitted(.cancelled) }
    if closed.load(ordering: .relaxed) { throw .notCommitted(.stopped) }
    let machine = self.machine
    // Counted until the engine's outcome comes, even when the caller gave up before.
    machine.appendsInFlight.add(1, ordering: .relaxed)
    return try await awaitAnswer(
      timeout: timeout, onDeadline: .outcomeUnknown(.timedOut), onCancel: .outcomeUnknown(.cancelled)
    ) { (once: Once<Appended>) in
      node.propose(batch: payloads) { result in
        defer { machine.appendFinished() }
        switch result {
        case .success(let range):
          // (On the apply thread, right after the job that applied the batch's last entry.)
          if let responses = machine.takeResponses(range) {
            once.resume(.success(Appended(indexes: range, responses: responses)))
          } else {
            assertionFailure("ReplicatedLog: the responses of \(range) were not kept")
            once.resume(.failure(.internalFailure("committed at \(range), but the responses were not kept")))
          }
        case .failure(let error):
          once.resume(.failure(ReplicatedLogError(error)))
        }
      }
    }
  }

  // MARK: Reading

  /// A linearizable read barrier: returns an index such that every entry committed before the
  /// call is applied locally (a ReadIndex round with a quorum, then a wait for the apply).
  public func readBarrier(timeout: Duration = .seconds(10)) async throws(ReplicatedLogError) -> UInt64 {
    if closed.load(ordering: .relaxed) { throw .stopped }
    // Unique across members (the leader ignores a context it already waits on): the node's id,
    // a random part and a counter.
    var context = withUnsafeBytes(of: node.id) { Array($0) }
    context += withUnsafeBytes(of: readContextSeed) { Array($0) }
    context += withUnsafeBytes(of: machine.nextReadID()) { Array($0) }
    let node = self.node
    let index: UInt64
    do {
      index = try await awaitAnswer(timeout: timeout, onDeadline: .timedOut, onCancel: .cancelled) { once in
        node.readIndex(context: context) { result in
          once.resume(result.mapError(ReplicatedLogError.init(call:)))
        }
      }
    } catch {
      if error == .timedOut || error == .cancelled { node.cancelReadIndex(context: context) }  // free its waiter
      throw error
    }
    try await waitUntilApplied(index, timeout: timeout)
    return index
  }

  /// Waits until `index` is applied here (`.stopped` if the log stops first, `.timedOut`
  /// after `timeout`).
  public func waitUntilApplied(_ index: UInt64, timeout: Duration = .seconds(10)) async throws(ReplicatedLogError) {
    let machine = self.machine
    let waiting = Mutex<UInt64?>(nil)
    do {
      let _: Bool = try await awaitAnswer(timeout: timeout, onDeadline: .timedOut, onCancel: .cancelled) { once in
        let id = machine.whenApplied(index) { r in once.resume(r.map { true }) }
        waiting.withLock { $0 = id }
      }
    } catch {
      // Given up: the waiter goes (it would wait for an index that may never come).
      if let id = waiting.withLock({ $0 }) { machine.waiters.cancel(id, error) }
      throw error
    }
  }

  // MARK: Compaction

  /// The application consumed the log through `index` (or captured it in its own snapshot,
  /// `snapshot`): the log saves a snapshot there and drops the entries behind it from memory
  /// and disk, but for `compactionRetainEntries` kept for slow followers. A follower too far
  /// behind gets the snapshot (its state machine's `restore` gets `snapshot`). Each member
  /// compacts its own log: call it on every member as its application consumes. Waits until
  /// `index` is applied here and the snapshot is saved; returns its index (at once, when a
  /// snapshot at or above `index` was handed to the log already: a newer one's index). A
  /// request waiting for its index takes later, lower ones with it.
  @discardableResult
  public func compact(
    through index: UInt64, snapshot: [UInt8] = [], timeout: Duration = .seconds(60)
  ) async throws(ReplicatedLogError) -> UInt64 {
    if closed.load(ordering: .relaxed) { throw .stopped }
    let node = self.node
    return try await awaitAnswer(timeout: timeout, onDeadline: .timedOut, onCancel: .cancelled) { once in
      node.compact(through: index, snapshot: snapshot) { result in
        once.resume(result.mapError(ReplicatedLogError.init(call:)))
      }
    }
  }

  /// The latest snapshot: its index and the application's data (empty index 0: none).
  public func latestSnapshot() throws(ReplicatedLogError) -> (index: UInt64, data: [UInt8]) {
    do {
      let s = try node.storage.snapshot()
      return (s.metadata.index, s.data)
    } catch {
      throw .internalFailure("reading the snapshot: \(error)")
    }
  }

  /// The first index the log still holds (entries below were compacted).
  public var firstIndex: UInt64 { (try? node.storage.firstIndex()) ?? 1 }

  /// The last index the log holds (durable here; not necessarily committed).
  public var lastIndex: UInt64 { (try? node.storage.lastIndex()) ?? 0 }

  // MARK: Status and shutdown

  /// The node's status, from its run loop.
  public func status(timeout: Duration = .seconds(10)) async throws(ReplicatedLogError) -> LogStatus {
    if closed.load(ordering: .relaxed) { throw .stopped }
    let node = self.node
    return try await awaitAnswer(timeout: timeout, onDeadline: .timedOut, onCancel: .cancelled) { once in
      node.status { s in once.resume(.success(LogStatus(s))) }
    }
  }

  /// Stops the node and closes the WAL. Every append that returned is durable on a quorum;
  /// appends still waiting fail with `notCommitted(.stopped)` (not proposed yet) or
  /// `outcomeUnknown` (proposed: they may be committed, and appear after a restart). Readers
  /// finish; read barriers and waits fail with `.stopped`.
  public func shutdown() async {
    closed.store(true, ordering: .relaxed)
    let n = node
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      OSThread(name: "raft-log-stop") {
        n.stop()
        c.resume()
      }.detach()
    }
    machine.waiters.finish(.stopped)
    leaders.finish()
  }
}

extension ReplicatedLog where Machine == NoStateMachine {
  /// A log without a state machine: the application reads it (`entries(from:)`).
  public convenience init(configuration: NodeConfiguration, transport: Transport) throws(ReplicatedLogError) {
    try self.init(configuration: configuration, transport: transport, stateMachine: NoStateMachine())
  }

  /// Opens a log without a state machine (see `open(configuration:transport:stateMachine:)`).
  public static func open(
    configuration: NodeConfiguration, transport: Transport
  ) async throws(ReplicatedLogError) -> ReplicatedLog {
    try await open(configuration: configuration, transport: transport, stateMachine: NoStateMachine())
  }
}

/// A node's status, as a value that can cross tasks.
public struct LogStatus: Sendable, Equatable {
  /// What a member's log looks like from the leader.
  public struct Follower: Sendable, Equatable {
    /// The highest index known to be in its log.
    public var match: UInt64
    /// The next index the leader sends it.
    public var next: UInt64
  }

  public var id: UInt64
  public var term: UInt64
  /// Nil: no leader known.
  public var leader: UInt64?
  public var isLeader: Bool
  public var commitIndex: UInt64
  public var appliedIndex: UInt64
  public var voters: Set<UInt64>
  public var learners: Set<UInt64>
  /// On the leader, each member's replication (itself included); empty elsewhere.
  public var followers: [UInt64: Follower]

  init(_ s: Status) {
    id = s.basic.id
    term = s.basic.hardState.term
    leader = s.basic.softState.lead == 0 ? nil : s.basic.softState.lead
    isLeader = s.basic.softState.raftState == .leader
    commitIndex = s.basic.hardState.commit
    appliedIndex = s.basic.applied
    voters = Set(s.config.voters.incoming.ids).union(s.config.voters.outgoing.ids)
    learners = Set(s.config.learners).union(s.config.learnersNext)
    followers = s.progress.mapValues { Follower(match: $0.match, next: $0.next) }
  }
}
