import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Counts the HTTP requests in flight, for a graceful shutdown: once closed it admits no new
/// request (they are answered 503), and `drain` waits for the admitted ones to be answered.
///
/// Invariant: `inFlight >= 0`; it only grows while open.
final class RequestGate: @unchecked Sendable {
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let condition: UnsafeMutablePointer<pthread_cond_t>
  // Guarded by `mutex`.
  private var inFlight = 0
  private var closed = false

  init() {
    mutex = .allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
    condition = .allocate(capacity: 1)
    condition.initialize(to: pthread_cond_t())
    var attr = pthread_condattr_t()
    pthread_condattr_init(&attr)
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
    pthread_cond_init(condition, &attr)
    pthread_condattr_destroy(&attr)
  }

  deinit {
    pthread_cond_destroy(condition)
    pthread_mutex_destroy(mutex)
    condition.deallocate()
    mutex.deallocate()
  }

  /// Admits a request; false once the gate is closed.
  func enter() -> Bool {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    if closed { return false }
    inFlight += 1
    return true
  }

  /// An admitted request was answered.
  func leave() {
    pthread_mutex_lock(mutex)
    inFlight -= 1
    precondition(inFlight >= 0, "RequestGate: more answers than requests")
    if inFlight == 0 { pthread_cond_broadcast(condition) }
    pthread_mutex_unlock(mutex)
  }

  /// Closes the gate and waits until every admitted request is answered or `seconds` passed;
  /// returns how many were still in flight.
  func drain(seconds: Double) -> Int {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let deadline = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec) + UInt64(seconds * 1e9)
    var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    closed = true
    while inFlight > 0 {
      if pthread_cond_timedwait(condition, mutex, &ts) == ETIMEDOUT { break }
    }
    return inFlight
  }
}
