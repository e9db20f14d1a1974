#if canImport(Glibc)
  import Glibc
#endif

/// A joinable OS thread for the engine's loops (they block on disk and on queues, so they never
/// run on Swift's cooperative pool, which has one thread per core).
final class OSThread: @unchecked Sendable {
  private var thread = pthread_t()
  private var joined = false

  private final class Box {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
  }

  /// Starts `body` on a new thread named `name`. An engine thread counts
  /// itself in `SpinBudget` while it runs. `niceIncrement` (0 to 19) lowers the thread's
  /// scheduling priority below the one it inherits.
  init(
    name: String, engineThread: Bool = false, niceIncrement: Int32 = 0, _ body: @escaping @Sendable () -> Void
  ) {
    precondition((0...19).contains(niceIncrement), "OSThread: niceIncrement \(niceIncrement) is outside 0...19")
    // Named for `top -H`, perf and gdb (at most 15 bytes).
    let threadName = String(name.utf8.prefix(15))!
    let run: @Sendable () -> Void = {
      OSThread.nameCurrentThread(threadName)
      if niceIncrement > 0 { OSThread.lowerCurrentThreadPriority(by: niceIncrement) }
      if engineThread { SpinBudget.shared.threadStarted() }
      body()
      if engineThread { SpinBudget.shared.threadEnded() }
    }
    let box = Unmanaged.passRetained(Box(run)).toOpaque()
    let rc = pthread_create(
      &thread, nil,
      { arg in
        let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        b.body()
        return nil
      }, box)
    precondition(rc == 0, "pthread_create failed (\(rc)) for \(name)")
  }

  /// Raises the calling thread's nice value by `increment` (Linux keeps a nice value per
  /// thread, and `who` 0 is the calling thread; raising it needs no privilege). Best effort:
  /// the thread runs either way.
  private static func lowerCurrentThreadPriority(by increment: Int32) {
    let which = __priority_which_t(PRIO_PROCESS.rawValue)
    errno = 0
    let current = getpriority(which, 0)
    guard errno == 0 else { return }
    _ = setpriority(which, 0, min(current + increment, 19))
  }

  /// Names the calling thread (through /proc: Glibc's overlay exports no
  /// `pthread_setname_np`); best effort.
  private static func nameCurrentThread(_ name: String) {
    let fd = open("/proc/thread-self/comm", O_WRONLY)
    guard fd >= 0 else { return }
    _ = name.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
    close(fd)
  }

  /// True when called on this thread.
  var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

  /// Lets the thread end on its own (it cannot be joined afterwards).
  func detach() {
    guard !joined else { return }
    joined = true
    pthread_detach(thread)
  }

  /// Waits for the thread to end (once).
  func join() {
    guard !joined else { return }
    joined = true
    pthread_join(thread, nil)
  }
}
