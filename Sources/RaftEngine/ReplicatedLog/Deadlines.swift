import Dispatch
import Synchronization

/// One answer for one waiting caller, whichever comes first: the engine's outcome, the
/// deadline, or the task's cancellation. The continuation may be installed after an answer
/// arrived (the answer then waits for it).
final class Once<T: Sendable>: Sendable {
  typealias Answer = Result<T, ReplicatedLogError>
  private enum State {
    case empty
    case waiting(CheckedContinuation<Answer, Never>)
    case answered(Answer)
    case done
  }
  private let state = Mutex(State.empty)

  init() {}

  /// Whether the answer was delivered (the deadline sweeper forgets it then).
  var isDone: Bool {
    state.withLock {
      if case .done = $0 { return true }
      return false
    }
  }

  func install(_ c: CheckedContinuation<Answer, Never>) {
    let answer = state.withLock { s -> Answer? in
      switch s {
      case .empty:
        s = .waiting(c)
        return nil
      case .answered(let a):
        s = .done
        return a
      case .waiting, .done: preconditionFailure("Once: a continuation installed twice")
      }
    }
    if let answer { c.resume(returning: answer) }
  }

  /// Delivers `answer` unless one was delivered already.
  func resume(_ answer: Answer) {
    let c = state.withLock { s -> CheckedContinuation<Answer, Never>? in
      switch s {
      case .empty:
        s = .answered(answer)
        return nil
      case .waiting(let c):
        s = .done
        return c
      case .answered, .done: return nil
      }
    }
    c?.resume(returning: answer)
  }
}

/// Something the sweeper times out.
protocol Expiring: AnyObject, Sendable {
  var isDone: Bool { get }
  func expire()
}

/// A `Once` with the answer its deadline gives.
final class ExpiringOnce<T: Sendable>: Expiring {
  let once: Once<T>
  let onDeadline: ReplicatedLogError
  init(_ once: Once<T>, onDeadline: ReplicatedLogError) {
    self.once = once
    self.onDeadline = onDeadline
  }
  var isDone: Bool { once.isDone }
  func expire() { once.resume(.failure(onDeadline)) }
}

/// The deadlines of the calls in flight, swept every 10 ms by one timer (not one timer per
/// call: at a high append rate those would pile up for the whole timeout). Bounded by the calls
/// in flight: answered ones are dropped at the next sweep.
final class Deadlines: @unchecked Sendable {
  static let shared = Deadlines()

  // (`timer` is set once and only kept alive here: the one unchecked part.)
  private let waiting = Mutex<[(deadline: UInt64, call: any Expiring)]>([])
  private let timer: DispatchSourceTimer

  private init() {
    timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "swift-raft.deadlines"))
    timer.schedule(deadline: .now() + .milliseconds(10), repeating: .milliseconds(10))
    let sweep: @Sendable () -> Void = { Deadlines.shared.sweep() }
    timer.setEventHandler(handler: sweep)
    timer.resume()
  }

  func add(_ call: any Expiring, after timeout: Duration) {
    let (seconds, attoseconds) = timeout.components
    // Saturating: a timeout of centuries is "no deadline", not an overflow.
    let (whole, overflow) = UInt64(clamping: max(0, seconds)).multipliedReportingOverflow(by: 1_000_000_000)
    let (sum, over) = whole.addingReportingOverflow(UInt64(clamping: max(0, attoseconds / 1_000_000_000)))
    let nanoseconds = overflow || over ? UInt64.max : sum
    let (deadline, late) = EngineClock.nanoseconds().addingReportingOverflow(nanoseconds)
    let when = late ? UInt64.max : deadline
    waiting.withLock { $0.append((when, call)) }
  }

  /// Drops the calls that were answered, and times out the ones past their deadline.
  private func sweep() {
    let now = EngineClock.nanoseconds()
    let expired = waiting.withLock { w -> [any Expiring] in
      var expired: [any Expiring] = []
      w.removeAll { item in
        if item.call.isDone { return true }
        if item.deadline <= now {
          expired.append(item.call)
          return true
        }
        return false
      }
      return expired
    }
    for call in expired { call.expire() }
  }
}

/// Waits for the answer `start` arranges (through the `Once` it gets), at most `timeout`
/// (then `onDeadline`); a cancellation of the task answers `onCancel` at once. The caller
/// resumes on its own executor, never on an engine thread's stack.
func awaitAnswer<T: Sendable>(
  timeout: Duration, onDeadline: ReplicatedLogError, onCancel: ReplicatedLogError,
  _ start: (Once<T>) -> Void
) async throws(ReplicatedLogError) -> T {
  let once = Once<T>()
  Deadlines.shared.add(ExpiringOnce(once, onDeadline: onDeadline), after: timeout)
  start(once)
  let answer = await withTaskCancellationHandler {
    await withCheckedContinuation { c in once.install(c) }
  } onCancel: {
    once.resume(.failure(onCancel))
  }
  return try answer.get()
}
