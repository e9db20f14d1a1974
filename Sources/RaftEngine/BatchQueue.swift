import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Who may poll instead of parking: the engine's threads are counted while they are on a core
/// or about to be (running, polling for work, woken and not yet running, or waiting for a disk
/// completion that will wake them), and a thread polls only while they do not outnumber the
/// processors online. The thread that wakes a parked one counts it before the signal, so a
/// poller makes room before the woken thread needs the core. So on a 2-core machine with one
/// client the run loop polls through a disk sync (nothing else wants the cores); under load,
/// when the other threads have work, a poller sees them and parks at once, giving its core
/// away. No thread polls with `sched_yield`, and none polls with nothing due.
///
/// (One shared instance; hot loops keep a reference to it, since every access to a static
/// property goes through a lazy-initialization check.)
public final class SpinBudget: Sendable {
  /// The process's budget.
  public static let shared = SpinBudget(processors: max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))

  /// Processors online (`sysconf`), read once.
  public let processors: Int
  /// Engine threads on a core now (started, and not parked or blocked in a wait).
  private let occupied = Atomic<Int>(0)
  /// Engine threads started and not ended.
  private let started = Atomic<Int>(0)

  init(processors: Int) { self.processors = processors }

  /// Processors online.
  public static var processors: Int { shared.processors }

  /// An engine thread starts (it is on a core).
  public func threadStarted() {
    started.add(1, ordering: .relaxed)
    occupied.add(1, ordering: .relaxed)
  }
  /// An engine thread ends.
  public func threadEnded() {
    started.subtract(1, ordering: .relaxed)
    occupied.subtract(1, ordering: .relaxed)
  }
  /// Whether the process runs more engine threads than there are processors (several nodes in
  /// one process, or few cores): then, under load, another engine thread always wants the core
  /// a poller holds, and polling through a disk sync costs throughput instead of buying it.
  public var oversubscribed: Bool { started.load(ordering: .relaxed) > processors }
  /// How long an engine thread whose last turn handled `turnItems` inputs or entries may poll:
  /// `loadedNanoseconds` under load (more than `NodeConfiguration.lightTurnInputs`) while the
  /// engine threads outnumber the processors, `nanoseconds` otherwise.
  @inline(__always)
  func pollNanoseconds(afterTurnOf turnItems: Int, _ nanoseconds: UInt64, loaded loadedNanoseconds: UInt64) -> UInt64 {
    turnItems > NodeConfiguration.lightTurnInputs && oversubscribed ? loadedNanoseconds : nanoseconds
  }
  /// An engine thread is about to park (or block in a wait): its core is free.
  public func parking() { occupied.subtract(1, ordering: .relaxed) }
  /// A parked engine thread is made runnable (by its waker, before the signal; or by itself
  /// when its wait timed out).
  public func unparked() { occupied.add(1, ordering: .relaxed) }
  /// Whether a thread on a core may keep polling: no other engine thread waits for a core.
  @inline(__always)
  public var mayPoll: Bool { processors > 1 && occupied.load(ordering: .relaxed) <= processors }
}

/// A multi-producer, single-consumer queue handed over in batches: producers append under a
/// lock, the consumer takes everything queued at once (one lock round per batch, not per
/// element).
///
/// **Waiting.** A consumer with nothing to take waits in one place: it spins on an atomic count
/// for at most `spinNanoseconds` if `SpinBudget` grants it a slot (a hand-off then costs well
/// under a microsecond instead of a wake-up of tens of microseconds on these VMs), and parks
/// otherwise; it never polls with `sched_yield`. A consumer that waits somewhere else (the
/// append worker waits in its io_uring ring for disk completions and new work together) passes
/// a `wake` at creation: `beginExternalWait()` announces the wait, and the producer that finds
/// the consumer waiting calls `wake` once instead of signalling the condition.
///
/// Invariant: `pending` equals `items.count` whenever the lock is not held.
public final class BatchQueue<Element>: @unchecked Sendable {
  /// The outcome of `tryPush`.
  public enum PushResult: Sendable, Equatable {
    case enqueued
    /// `capacity` elements are already waiting: the caller applies back-pressure.
    case full
    /// The queue was closed; nothing is accepted any more.
    case closed
  }

  /// How many elements `tryPush` lets wait at most (`push` ignores it: for messages that must not
  /// be dropped, such as worker responses).
  public let capacity: Int
  /// How long `take` may poll before it parks, in nanoseconds (while `SpinBudget` allows).
  public let spinNanoseconds: UInt64
  /// Whether the consumer is one of the engine's threads, counted by `SpinBudget`.
  private let engineThread: Bool
  private let spinBudget = SpinBudget.shared
  /// Called (outside the lock) by the producer that finds an external waiter.
  private let wake: (@Sendable () -> Void)?

  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let condition: UnsafeMutablePointer<pthread_cond_t>
  // Guarded by `mutex`.
  private var items: [Element] = []
  /// The consumer waits (parked on the condition, or externally) and must be woken.
  private var waiting = false
  /// The waiting consumer gave its `SpinBudget` count up (the waker gives it back).
  private var consumerParked = false
  private var isClosed = false
  /// Mirrors `items.count` for lock-free polling (written under the lock).
  private let pending = Atomic<Int>(0)
  private let closedFlag = Atomic<Bool>(false)
  /// How often the consumer had to be woken (it found nothing and waited), since creation.
  private let wakeups = Atomic<UInt64>(0)

  /// A queue that holds at most `capacity` elements through `tryPush`. With `wake`, the consumer
  /// waits externally (`beginExternalWait`) instead of in `take`.
  public init(
    capacity: Int = 1 << 16, spinNanoseconds: UInt64 = 20_000, engineThread: Bool = false,
    wake: (@Sendable () -> Void)? = nil
  ) {
    precondition(capacity >= 1, "BatchQueue: capacity must be at least 1")
    self.capacity = capacity
    self.spinNanoseconds = spinNanoseconds
    self.engineThread = engineThread
    self.wake = wake
    mutex = .allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    // Adaptive: the critical sections are a few instructions long, so a contended lock spins
    // briefly in the kernel's place instead of putting the thread to sleep on a futex.
    var mutexAttr = pthread_mutexattr_t()
    pthread_mutexattr_init(&mutexAttr)
    pthread_mutexattr_settype(&mutexAttr, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
    pthread_mutex_init(mutex, &mutexAttr)
    pthread_mutexattr_destroy(&mutexAttr)
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

  /// Enqueues `element` whatever the depth; false once the queue is closed.
  @discardableResult
  public func push(_ element: Element) -> Bool {
    pthread_mutex_lock(mutex)
    guard !isClosed else {
      pthread_mutex_unlock(mutex)
      return false
    }
    items.append(element)
    publishedAndUnlock()
    return true
  }

  /// Enqueues all of `elements` in order, as one hand-off; false once the queue is closed.
  @discardableResult
  public func push<S: Sequence>(contentsOf elements: S) -> Bool where S.Element == Element {
    pthread_mutex_lock(mutex)
    guard !isClosed else {
      pthread_mutex_unlock(mutex)
      return false
    }
    items.append(contentsOf: elements)
    publishedAndUnlock()
    return true
  }

  /// Enqueues `element` unless `capacity` elements are waiting or the queue is closed.
  public func tryPush(_ element: Element) -> PushResult {
    pthread_mutex_lock(mutex)
    if isClosed {
      pthread_mutex_unlock(mutex)
      return .closed
    }
    if items.count >= capacity {
      pthread_mutex_unlock(mutex)
      return .full
    }
    items.append(element)
    publishedAndUnlock()
    return .enqueued
  }

  /// Under the lock: publishes the new count, releases the lock, and wakes a waiting consumer
  /// (once: the first producer that finds it waiting clears the flag), counting it in
  /// `SpinBudget` first when it parked there.
  private func publishedAndUnlock() {
    pending.store(items.count, ordering: .releasing)
    let mustWake = waiting
    waiting = false
    if mustWake && consumerParked {
      consumerParked = false
      spinBudget.unparked()
    }
    if mustWake && wake == nil { pthread_cond_signal(condition) }
    pthread_mutex_unlock(mutex)
    if mustWake, let wake { wake() }
  }

  /// Elements waiting now (a snapshot).
  public var count: Int { pending.load(ordering: .relaxed) }

  /// Times the consumer found nothing and had to be woken (parked, or waited externally).
  public var wakeupCount: UInt64 { wakeups.load(ordering: .relaxed) }

  /// Moves everything queued to the end of `out`, in order. When nothing is queued, spins for
  /// at most `spinNanoseconds` (the queue's unless given) if a `SpinBudget` slot allows, then
  /// parks until
  /// something arrives, the queue is closed, or `timeoutNanoseconds` have passed since the call.
  /// Returns the number of elements taken.
  @discardableResult
  public func take(into out: inout [Element], timeoutNanoseconds: UInt64, spinNanoseconds: UInt64? = nil) -> Int {
    precondition(wake == nil, "BatchQueue: a queue with an external waiter is taken with takeNow")
    var start: UInt64 = 0
    let spin = spinNanoseconds ?? self.spinNanoseconds
    if pending.load(ordering: .acquiring) == 0 && !closedFlag.load(ordering: .relaxed) && timeoutNanoseconds > 0 {
      start = EngineClock.nanoseconds()
      if spin > 0 && engineThread { spinWhileEmpty(until: start &+ min(spin, timeoutNanoseconds)) }
    }
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    if items.isEmpty && !isClosed && timeoutNanoseconds > 0 {
      let deadline = start &+ timeoutNanoseconds
      var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
      wakeups.add(1, ordering: .relaxed)
      if engineThread {
        spinBudget.parking()
        consumerParked = true
      }
      while items.isEmpty && !isClosed && EngineClock.nanoseconds() < deadline {
        waiting = true
        pthread_cond_timedwait(condition, mutex, &ts)
      }
      waiting = false
      if consumerParked {
        // Timed out (or closed): nobody counted us back.
        consumerParked = false
        spinBudget.unparked()
      }
    }
    return moveAll(into: &out)
  }

  /// Polls the count until something arrives, `deadline`, or another engine thread needs the
  /// core; the clock is read every 64 polls.
  private func spinWhileEmpty(until deadline: UInt64) {
    var polls = 0
    while pending.load(ordering: .acquiring) == 0 && !closedFlag.load(ordering: .relaxed) && spinBudget.mayPoll {
      polls &+= 1
      if polls & 63 == 0 && EngineClock.nanoseconds() >= deadline { return }
    }
  }

  /// Under the lock: moves every item to `out`.
  private func moveAll(into out: inout [Element]) -> Int {
    let n = items.count
    if n == 0 { return 0 }
    if out.isEmpty {
      swap(&out, &items)  // hand the whole buffer over
    } else {
      out.append(contentsOf: items)
      items.removeAll(keepingCapacity: true)
    }
    pending.store(0, ordering: .releasing)
    return n
  }

  /// Moves everything queued to the end of `out` without waiting; returns how many.
  @discardableResult
  public func takeNow(into out: inout [Element]) -> Int {
    if pending.load(ordering: .acquiring) == 0 { return 0 }
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return moveAll(into: &out)
  }

  /// External waiting: announces that the consumer is about to wait elsewhere. Returns false
  /// (and announces nothing) when something is queued or the queue is closed: take it first. On
  /// true, the next push calls `wake` once; call `endExternalWait` when the wait is over. With
  /// `parks`, the consumer gives its `SpinBudget` count up for the wait (its waker gives it
  /// back); without, it keeps it (a disk completion will wake it, and nothing counts that).
  public func beginExternalWait(parks: Bool) -> Bool {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    guard items.isEmpty && !isClosed else { return false }
    waiting = true
    wakeups.add(1, ordering: .relaxed)
    if parks && engineThread {
      spinBudget.parking()
      consumerParked = true
    }
    return true
  }

  /// External waiting: the wait is over (woken or not).
  public func endExternalWait() {
    pthread_mutex_lock(mutex)
    waiting = false
    if consumerParked {
      consumerParked = false
      spinBudget.unparked()
    }
    pthread_mutex_unlock(mutex)
  }

  /// Refuses further pushes and wakes the consumer; what is queued can still be taken.
  public func close() {
    pthread_mutex_lock(mutex)
    isClosed = true
    closedFlag.store(true, ordering: .releasing)
    let mustWake = waiting
    waiting = false
    if consumerParked {
      consumerParked = false
      spinBudget.unparked()
    }
    pthread_cond_signal(condition)
    pthread_mutex_unlock(mutex)
    if mustWake, let wake { wake() }
  }

  /// True once `close` was called.
  public var closed: Bool { closedFlag.load(ordering: .acquiring) }
}
