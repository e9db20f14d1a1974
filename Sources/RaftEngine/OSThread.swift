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

  /// Starts `body` on a new thread (`name` is for error messages). An engine thread counts
  /// itself in `SpinBudget` while it runs.
  init(name: String, engineThread: Bool = false, _ body: @escaping @Sendable () -> Void) {
    let run: @Sendable () -> Void
    if engineThread {
      run = {
        SpinBudget.threadStarted()
        body()
        SpinBudget.threadEnded()
      }
    } else {
      run = body
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
