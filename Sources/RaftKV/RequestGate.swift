import Dispatch
import Synchronization

/// Counts the HTTP requests in flight, for a graceful shutdown: once closed it admits no new
/// request (they are answered 503), and `drain` waits for the admitted ones to be answered.
///
/// Invariant: `inFlight >= 0`, and equals the group's entries not yet left; it only grows
/// while open.
final class RequestGate: Sendable {
  private let state = Mutex<(closed: Bool, inFlight: Int)>((false, 0))
  /// Entered for each admitted request, left when it is answered.
  private let answered = DispatchGroup()

  /// Admits a request; false once the gate is closed.
  func enter() -> Bool {
    state.withLock { s in
      if s.closed { return false }
      s.inFlight += 1
      answered.enter()
      return true
    }
  }

  /// An admitted request was answered.
  func leave() {
    state.withLock { s in
      s.inFlight -= 1
      precondition(s.inFlight >= 0, "RequestGate: more answers than requests")
    }
    answered.leave()
  }

  /// Closes the gate and waits until every admitted request is answered or `seconds` passed;
  /// returns how many were still in flight.
  func drain(seconds: Double) -> Int {
    state.withLock { $0.closed = true }
    _ = answered.wait(timeout: .now() + seconds)
    return state.withLock { $0.inFlight }
  }
}
