import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A multi-producer, single-consumer queue handed over in batches: producers append under a
/// lock, the consumer takes everything queued at once (one lock round per batch, not per
/// element), spinning for a short while before it parks.
///
/// Why spin first: on these VMs waking a parked thread costs tens of microseconds each way,
/// while a consumer that polls an atomic counter for a few microseconds picks up a hand-off in
/// well under one (`raft-bench handoff` measures both). Spinning longer burns a core that the
/// other threads of a 2-core machine need (the thread waiting for an fdatasync, the kernel's
/// journal thread), so the busy part (`spinNanoseconds`) stays short; after it the consumer
/// may go on polling with `sched_yield` between polls (`yieldingPollNanoseconds`), which gives
/// the core to any thread that can run and still catches a hand-off that comes within a disk
/// sync's time without a wake-up.
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
  /// How long `take` polls in a busy loop before it parks, in nanoseconds.
  public let spinNanoseconds: UInt64
  /// How long `take` goes on polling after the busy part, yielding the CPU between polls
  /// (`sched_yield`), before it parks, in nanoseconds.
  public let yieldingPollNanoseconds: UInt64

  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let condition: UnsafeMutablePointer<pthread_cond_t>
  // Guarded by `mutex`.
  private var items: [Element] = []
  private var parked = false
  private var isClosed = false
  /// Mirrors `items.count` for lock-free polling (written under the lock).
  private let pending = Atomic<Int>(0)
  private let closedFlag = Atomic<Bool>(false)

  /// A queue that holds at most `capacity` elements through `tryPush`.
  public init(capacity: Int = 1 << 16, spinNanoseconds: UInt64 = 20_000, yieldingPollNanoseconds: UInt64 = 0) {
    precondition(capacity >= 1, "BatchQueue: capacity must be at least 1")
    self.capacity = capacity
    self.spinNanoseconds = spinNanoseconds
    self.yieldingPollNanoseconds = yieldingPollNanoseconds
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

  /// Enqueues `element` whatever the depth; false once the queue is closed.
  @discardableResult
  public func push(_ element: Element) -> Bool {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    guard !isClosed else { return false }
    items.append(element)
    published()
    return true
  }

  /// Enqueues all of `elements` in order, as one hand-off; false once the queue is closed.
  @discardableResult
  public func push<S: Sequence>(contentsOf elements: S) -> Bool where S.Element == Element {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    guard !isClosed else { return false }
    items.append(contentsOf: elements)
    published()
    return true
  }

  /// Enqueues `element` unless `capacity` elements are waiting or the queue is closed.
  public func tryPush(_ element: Element) -> PushResult {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    if isClosed { return .closed }
    if items.count >= capacity { return .full }
    items.append(element)
    published()
    return .enqueued
  }

  /// Under the lock: publishes the new count and wakes a parked consumer.
  private func published() {
    pending.store(items.count, ordering: .releasing)
    if parked { pthread_cond_signal(condition) }
  }

  /// Elements waiting now (a snapshot).
  public var count: Int { pending.load(ordering: .relaxed) }

  /// Moves everything queued to the end of `out`, in order. When nothing is queued, polls for
  /// `spinNanoseconds`, then for `yieldingPollNanoseconds` while yielding, then parks until
  /// something arrives, the queue is closed, or `timeoutNanoseconds` have passed since the
  /// call. Returns the number of elements taken.
  @discardableResult
  public func take(into out: inout [Element], timeoutNanoseconds: UInt64) -> Int {
    let start = EngineClock.nanoseconds()
    if pending.load(ordering: .acquiring) == 0 && !closedFlag.load(ordering: .relaxed) {
      let spinEnd = start &+ min(spinNanoseconds, timeoutNanoseconds)
      while pending.load(ordering: .acquiring) == 0 && !closedFlag.load(ordering: .relaxed)
        && EngineClock.nanoseconds() < spinEnd
      {}
      let yieldEnd = start &+ min(spinNanoseconds &+ yieldingPollNanoseconds, timeoutNanoseconds)
      while pending.load(ordering: .acquiring) == 0 && !closedFlag.load(ordering: .relaxed)
        && EngineClock.nanoseconds() < yieldEnd
      { sched_yield() }
    }
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    if items.isEmpty && !isClosed {
      let deadline = start &+ timeoutNanoseconds
      var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
      while items.isEmpty && !isClosed && EngineClock.nanoseconds() < deadline {
        parked = true
        pthread_cond_timedwait(condition, mutex, &ts)
        parked = false
        ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
      }
    }
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

  /// Refuses further pushes and wakes the consumer; what is queued can still be taken.
  public func close() {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    isClosed = true
    closedFlag.store(true, ordering: .releasing)
    pthread_cond_signal(condition)
  }

  /// True once `close` was called.
  public var closed: Bool { closedFlag.load(ordering: .acquiring) }
}
