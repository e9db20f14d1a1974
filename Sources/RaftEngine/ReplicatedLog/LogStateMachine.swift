import DequeModule
import Raft
import Synchronization

/// One entry of a `ReplicatedLog`.
public struct LogEntry: Sendable, Equatable {
  /// What an entry holds.
  public enum Kind: Sendable, Equatable {
    /// Application data (possibly empty: an empty append, or the empty entry a new leader
    /// appends at the start of its term).
    case normal
    /// A membership change (its data is the encoded change; the log applies it itself).
    case membershipChange
  }

  public var index: UInt64
  public var term: UInt64
  public var kind: Kind
  /// A view into the buffer the entry arrived in (copy what you keep for long).
  public var data: Payload

  public init(index: UInt64, term: UInt64, kind: Kind, data: Payload) {
    self.index = index
    self.term = term
    self.kind = kind
    self.data = data
  }

  init(_ e: Entry) {
    self.init(index: e.index, term: e.term, kind: e.type == .normal ? .normal : .membershipChange, data: e.data)
  }
}

/// An application's state built from a `ReplicatedLog`, applied as the entries commit, whose
/// result for each entry goes back to the caller that appended it (hashicorp/raft's `FSM`
/// returning an `ApplyFuture`'s response).
///
/// `apply` runs on the log's apply thread (one thread, entries in index order, each once per
/// process lifetime above the index the log was opened at); it must not block for long: the
/// log's commit path waits for it.
public protocol LogStateMachine: AnyObject, Sendable {
  /// What applying one entry returns to its appender.
  associatedtype Response: Sendable

  /// Applies a committed normal entry (including empty ones: a new leader's entry).
  func apply(_ entry: LogEntry) -> Response
  /// A snapshot replaced the log through `index` on this node: a leader's (this node fell too
  /// far behind), or this node's own at opening when the application resumes below it
  /// (`NodeConfiguration.appliedIndex`). The application's state becomes `data`, as given to
  /// `compact(through:snapshot:)`. Nothing by default.
  func restore(index: UInt64, data: [UInt8])
}

extension LogStateMachine {
  public func restore(index: UInt64, data: [UInt8]) {}
}

/// The state machine of a log whose application only reads it (`entries(from:)`): applying
/// does nothing and returns nothing.
public final class NoStateMachine: LogStateMachine {
  public init() {}
  public func apply(_ entry: LogEntry) {}
}

/// The engine's `StateMachine` of a `ReplicatedLog`: applies each entry to the application's
/// machine, keeps the responses until their appenders take them, tracks the applied index, and
/// wakes whoever waits for an index to be applied (readers, read barriers).
final class LogMachine<Machine: LogStateMachine>: StateMachine, Sendable {
  let machine: Machine
  /// The highest index applied here. Invariant: never goes back.
  let applied: Atomic<UInt64>
  let waiters = AppliedWaiters()
  /// Appends proposed whose engine outcome has not come yet (raised before proposing, lowered
  /// by the outcome's completion, even after the caller gave up): responses are kept only while
  /// there are some (a follower keeps none).
  let appendsInFlight = Atomic<Int>(0)
  /// The responses of entries applied, in index order, until their appender takes them (the
  /// appender's completion runs on the apply thread right after the job that applied its last
  /// entry). Bounded by what is applied between two outcomes: an outcome drops every response
  /// below its range (outcomes come in index order), and the last one in flight drops all.
  private let responses = Mutex(Deque<(index: UInt64, response: Machine.Response)>())
  private let keepsResponses = Machine.Response.self != Void.self
  private let readIDs = Atomic<UInt64>(0)

  /// A context for a read index request, unique in this process's life.
  func nextReadID() -> UInt64 { readIDs.add(1, ordering: .relaxed).newValue }

  init(machine: Machine, appliedIndex: UInt64) {
    self.machine = machine
    applied = Atomic(appliedIndex)
  }

  var appliesEmptyEntries: Bool { true }

  func apply(index: UInt64, term: UInt64, data: Payload) {
    let response = machine.apply(LogEntry(index: index, term: term, kind: .normal, data: data))
    guard keepsResponses, appendsInFlight.load(ordering: .relaxed) > 0 else { return }
    responses.withLock { $0.append((index, response)) }
  }

  /// An append's engine outcome came (after `takeResponses`, on success).
  func appendFinished() {
    guard appendsInFlight.subtract(1, ordering: .relaxed).newValue == 0, keepsResponses else { return }
    // (Checked again under the lock: an append that started since keeps what it needs.)
    responses.withLock { r in if appendsInFlight.load(ordering: .relaxed) == 0 { r.removeAll() } }
  }

  /// The responses of `range`, taken out (and those of lower indexes dropped: outcomes come in
  /// index order); nil when some were not kept.
  func takeResponses(_ range: ClosedRange<UInt64>) -> [Machine.Response]? {
    if !keepsResponses {
      // Void: nothing was kept, and every response is the same.
      return Array(repeating: () as! Machine.Response, count: range.count)
    }
    return responses.withLock { r in
      while let first = r.first, first.index < range.lowerBound { r.removeFirst() }
      var out: [Machine.Response] = []
      out.reserveCapacity(range.count)
      while let first = r.first, first.index <= range.upperBound {
        out.append(first.response)
        r.removeFirst()
      }
      return out.count == range.count ? out : nil
    }
  }

  func applied(through index: UInt64) { advance(to: index) }

  func restore(snapshot: Snapshot) {
    machine.restore(index: snapshot.metadata.index, data: snapshot.data)
    advance(to: snapshot.metadata.index)
  }

  /// Records that everything up to `index` is applied and wakes whoever waited for it.
  func advance(to index: UInt64) {
    applied.max(index, ordering: .acquiringAndReleasing)
    waiters.wake(upTo: applied.load(ordering: .acquiring))
  }

  /// Calls `wake` once `index` is applied (see `AppliedWaiters.wait`).
  @discardableResult
  func whenApplied(_ index: UInt64, _ wake: @escaping AppliedWaiters.Waker) -> UInt64? {
    waiters.wait(for: index, applied: { self.applied.load(ordering: .acquiring) }, wake)
  }
}

/// Callers waiting for an index to be applied, woken in any order once it is; each can be
/// cancelled on its own. Bounded by the callers waiting (one per reader or read barrier).
final class AppliedWaiters: Sendable {
  typealias Waker = @Sendable (Result<Void, ReplicatedLogError>) -> Void
  private struct State {
    var nextID: UInt64 = 0
    var waiting: [UInt64: (index: UInt64, wake: Waker)] = [:]
    /// Set by `finish`: every later wait fails at once.
    var finished: ReplicatedLogError?
  }
  private let state = Mutex(State())

  /// Calls `wake` once the applied index (`applied()`) reaches `index` (at once if it already
  /// has), or with the error the log finished with; returns an id for `cancel`.
  ///
  /// The applied index is read under the lock: the applier stores it before it takes the lock
  /// to wake (`wake(upTo:)`), so either this call sees the new index or the wake sees this
  /// waiter (no wake-up is lost).
  @discardableResult
  func wait(for index: UInt64, applied: () -> UInt64, _ wake: @escaping Waker) -> UInt64? {
    enum Now {
      case ready, finished(ReplicatedLogError), waiting(UInt64)
    }
    let now = state.withLock { s -> Now in
      if index <= applied() { return .ready }
      if let f = s.finished { return .finished(f) }
      s.nextID += 1
      s.waiting[s.nextID] = (index, wake)
      return .waiting(s.nextID)
    }
    switch now {
    case .ready:
      wake(.success(()))
      return nil
    case .finished(let error):
      wake(.failure(error))
      return nil
    case .waiting(let id): return id
    }
  }

  /// The caller of `id` gives up: its waker gets `error` (if it was still waiting).
  func cancel(_ id: UInt64, _ error: ReplicatedLogError) {
    let w = state.withLock { $0.waiting.removeValue(forKey: id) }
    w?.wake(.failure(error))
  }

  func wake(upTo applied: UInt64) {
    let ready = state.withLock { s -> [Waker] in
      guard !s.waiting.isEmpty else { return [] }
      var ready: [Waker] = []
      for (id, w) in s.waiting where w.index <= applied {
        ready.append(w.wake)
        s.waiting[id] = nil
      }
      return ready
    }
    for w in ready { w(.success(())) }
  }

  /// Fails every wait, now and later, with `error`.
  func finish(_ error: ReplicatedLogError) {
    let all = state.withLock { s -> [Waker] in
      s.finished = s.finished ?? error
      let all = s.waiting.values.map(\.wake)
      s.waiting = [:]
      return all
    }
    for w in all { w(.failure(error)) }
  }
}
