import Dispatch
import Raft
import Synchronization

/// A committed entry of a `ReplicatedLog`.
public struct CommittedEntry: Sendable, Equatable {
  public var index: UInt64
  public var term: UInt64
  /// A view into the buffer the entry arrived in (copy what you keep for long).
  public var data: Payload
}

/// The embedding API for a high-throughput replicated log: append bytes, get their index once
/// they are committed and applied locally, read the committed entries as a stream, and put a
/// linearizable read barrier in front of local reads.
///
/// One `ReplicatedLog` is one Raft node (a single node, or one member of a cluster whose nodes
/// reach each other through a `Transport`). It recovers its hard state, log and snapshot from
/// its WAL directory when restarted.
public final class ReplicatedLog: Sendable {
  /// The underlying node (for the transport registration, status and leadership calls).
  public let node: Node
  /// Every committed entry with data, in index order, once applied locally. The stream buffers
  /// without limit: a consumer must keep up (or not iterate it at all, which costs nothing).
  public let committed: AsyncStream<CommittedEntry>

  private let machine: LogMachine

  /// Opens the node's WAL (`configuration.directory`) and prepares it; call `start()`.
  public init(configuration: NodeConfiguration, transport: Transport) throws {
    var continuation: AsyncStream<CommittedEntry>.Continuation!
    committed = AsyncStream(bufferingPolicy: .unbounded) { continuation = $0 }
    machine = LogMachine(stream: continuation)
    node = try Node(configuration: configuration, stateMachine: machine, transport: transport)
  }

  /// Starts the node.
  public func start() { node.start() }

  /// Where the transport delivers this node's messages.
  public var sink: MessageSink { node.sink }

  /// The leader this node knows of.
  public var leader: UInt64? { node.leader }

  /// The highest index applied locally.
  public var appliedIndex: UInt64 { machine.applied.load(ordering: .acquiring) }

  /// Appends `data` and returns its index once the entry is committed and applied on this node.
  /// Only the leader takes appends: elsewhere it throws `.notLeader` with the leader's id when
  /// known. Also `.dropped` (leadership changed before the entry committed), `.busy`,
  /// `.stopped`, `.timedOut` (the entry may still commit later).
  public func append(_ data: [UInt8], timeoutSeconds: Double = 10) async throws(EngineError) -> UInt64 {
    try await withDeadline(timeoutSeconds) { done in node.propose(data, completion: done) }
  }

  /// A linearizable read barrier: returns an index such that every entry committed before the
  /// call is applied locally (a ReadIndex round with a quorum, then a wait for the apply).
  public func readBarrier(timeoutSeconds: Double = 10) async throws(EngineError) -> UInt64 {
    let start = DispatchTime.now().uptimeNanoseconds
    let context = withUnsafeBytes(of: machine.nextReadID()) { Array($0) }
    let index = try await withDeadline(timeoutSeconds) { done in node.readIndex(context: context, completion: done) }
    let left = timeoutSeconds - Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    _ = try await withDeadline(max(left, 0)) { done in machine.whenApplied(index, done) }
    return index
  }

  /// Stops the node. Every append that returned is durable on a quorum; appends still waiting
  /// fail with `.stopped`. The committed stream finishes.
  public func shutdown() async {
    let n = node
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      DispatchQueue.global().async {
        n.stop()
        c.resume()
      }
    }
    machine.finish()
  }
}

/// Runs `start` with a completion that resumes the caller once, or fails with `.timedOut`.
func withDeadline(
  _ seconds: Double, _ start: (@escaping Node.Completion) -> Void
) async throws(EngineError) -> UInt64 {
  let result: Result<UInt64, EngineError> = await withCheckedContinuation { c in
    let once = Once(c)
    Deadlines.shared.add(once, afterSeconds: seconds)
    start { r in once.resume(r) }
  }
  return try result.get()
}

/// The deadlines of the calls in flight, swept every 10 ms by one timer (not one timer per call:
/// at a high append rate those would pile up for the whole timeout).
final class Deadlines: @unchecked Sendable {
  static let shared = Deadlines()

  private let waiting = Mutex<[(deadline: UInt64, once: Once)]>([])
  private let timer: DispatchSourceTimer

  private init() {
    timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "swift-raft.deadlines"))
    timer.schedule(deadline: .now() + .milliseconds(10), repeating: .milliseconds(10))
    timer.setEventHandler { [unowned self] in sweep() }
    timer.resume()
  }

  func add(_ once: Once, afterSeconds seconds: Double) {
    let deadline = EngineClock.nanoseconds() &+ UInt64(max(seconds, 0) * 1e9)
    waiting.withLock { $0.append((deadline, once)) }
  }

  /// Drops the calls that completed, and times out the ones past their deadline.
  private func sweep() {
    let now = EngineClock.nanoseconds()
    let expired = waiting.withLock { w -> [Once] in
      var expired: [Once] = []
      w.removeAll { item in
        if item.once.isDone { return true }
        if item.deadline <= now {
          expired.append(item.once)
          return true
        }
        return false
      }
      return expired
    }
    for once in expired { once.resume(.failure(.timedOut)) }
  }
}

/// Resumes a continuation at most once.
final class Once: Sendable {
  private let continuation: Mutex<CheckedContinuation<Result<UInt64, EngineError>, Never>?>
  init(_ c: CheckedContinuation<Result<UInt64, EngineError>, Never>) { continuation = Mutex(c) }
  var isDone: Bool { continuation.withLock { $0 == nil } }

  func resume(_ r: Result<UInt64, EngineError>) {
    let c = continuation.withLock { c in
      let taken = c
      c = nil
      return taken
    }
    c?.resume(returning: r)
  }
}

/// The state machine of a `ReplicatedLog`: publishes applied entries to the stream and wakes
/// read barriers waiting for an index.
final class LogMachine: StateMachine, Sendable {
  let applied = Atomic<UInt64>(0)
  private let stream: AsyncStream<CommittedEntry>.Continuation
  private let waiters = Mutex<[(index: UInt64, done: Node.Completion)]>([])
  private let readIDs = Atomic<UInt64>(0)

  init(stream: AsyncStream<CommittedEntry>.Continuation) { self.stream = stream }

  func nextReadID() -> UInt64 { readIDs.add(1, ordering: .relaxed).newValue }

  func apply(index: UInt64, term: UInt64, data: Payload) {
    stream.yield(CommittedEntry(index: index, term: term, data: data))
  }

  func applied(through index: UInt64) { advance(to: index) }

  func restore(snapshot: Snapshot) { advance(to: snapshot.metadata.index) }

  /// Records that everything up to `index` is applied and wakes the read barriers it satisfies.
  func advance(to index: UInt64) {
    applied.max(index, ordering: .acquiringAndReleasing)
    wake(upTo: applied.load(ordering: .acquiring))
  }

  /// Completes the read barriers waiting for an index up to `index`.
  private func wake(upTo index: UInt64) {
    let ready = waiters.withLock { w -> [Node.Completion] in
      var ready: [Node.Completion] = []
      w.removeAll { item in
        if item.index <= index {
          ready.append(item.done)
          return true
        }
        return false
      }
      return ready
    }
    for done in ready { done(.success(index)) }
  }

  /// Calls `done` once `index` is applied.
  func whenApplied(_ index: UInt64, _ done: @escaping Node.Completion) {
    waiters.withLock { $0.append((index, done)) }
    wake(upTo: applied.load(ordering: .acquiring))
  }

  func finish() {
    stream.finish()
    let all = waiters.withLock { w in
      let all = w
      w = []
      return all
    }
    for w in all { w.done(.failure(.stopped)) }
  }
}
