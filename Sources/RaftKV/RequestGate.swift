import Dispatch
import Synchronization

/// Admits the HTTP requests, within a bound on the request bytes in flight (overload), and
/// counts them for a graceful shutdown: once closed it admits no new request (they are
/// answered 503), and `drain` waits for the admitted ones to be answered.
///
/// Invariants: `inFlight >= 0` and `bytesInFlight >= 0`, equal to what the admitted requests
/// not yet answered hold; `bytesInFlight <= bytesInFlightMax` unless a single request larger
/// than it is alone in flight; they only grow while open.
final class RequestGate: Sendable {
  /// What `enter` decided.
  enum Admission: Equatable {
    case admitted
    /// A graceful shutdown closed the gate.
    case closed
    /// The bodies of the requests in flight already hold `bytesInFlightMax` bytes.
    case overloaded
  }

  private let state = Mutex<(closed: Bool, inFlight: Int, bytesInFlight: Int)>((false, 0, 0))
  /// Entered for each admitted request, left when it is answered.
  private let answered = DispatchGroup()
  /// The request bytes (bodies) in flight at most.
  let bytesInFlightMax: Int

  init(bytesInFlightMax: Int = .max) {
    precondition(bytesInFlightMax > 0, "RequestGate: the byte bound must be positive")
    self.bytesInFlightMax = bytesInFlightMax
  }

  /// Admits a request whose body holds `bytes`: not once the gate is closed, nor while the
  /// requests in flight hold too many bytes (one request alone is always admitted).
  func enter(bytes: Int = 0) -> Admission {
    state.withLock { s in
      if s.closed { return .closed }
      if s.inFlight > 0 && s.bytesInFlight + bytes > bytesInFlightMax { return .overloaded }
      s.inFlight += 1
      s.bytesInFlight += bytes
      answered.enter()
      return .admitted
    }
  }

  /// An admitted request of `bytes` was answered.
  func leave(bytes: Int = 0) {
    state.withLock { s in
      s.inFlight -= 1
      s.bytesInFlight -= bytes
      precondition(s.inFlight >= 0 && s.bytesInFlight >= 0, "RequestGate: more answers than requests")
    }
    answered.leave()
  }

  /// Closes the gate: no request is admitted any more.
  func close() { state.withLock { $0.closed = true } }

  /// Closes the gate and waits until every admitted request is answered or `seconds` passed;
  /// returns how many were still in flight.
  func drain(seconds: Double) -> Int {
    close()
    _ = answered.wait(timeout: .now() + seconds)
    return state.withLock { $0.inFlight }
  }
}
