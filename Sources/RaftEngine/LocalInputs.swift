#if canImport(Glibc)
  import Glibc
#endif

/// The inputs a node's own threads produce for its run loop: a completion that runs on the
/// apply worker (or on the run loop) and proposes again goes here, without a lock, and the
/// thread hands them over all at once when its turn ends (the apply worker in the same push as
/// its outcomes; the run loop takes them on its next turn without waiting). Under load that is
/// one lock round for hundreds of proposals instead of one each, and no contention with the
/// run loop's own take.
///
/// Owned by one thread; found through a thread-specific key.
///
/// (A node's threads share one `ThreadsToken`: an input buffered on a thread belongs to the node
/// whose token it names, never to another node that a completion happens to call.)
final class LocalInputs {
  /// The node whose threads these are.
  let node: ObjectIdentifier
  /// Invariant: only the owning thread touches it.
  var inputs: [Node.Input] = []

  init(node: ObjectIdentifier) { self.node = node }

  private static let key: pthread_key_t = {
    var key = pthread_key_t()
    let rc = pthread_key_create(&key, nil)
    precondition(rc == 0, "pthread_key_create failed (\(rc))")
    return key
  }()

  /// The calling thread's buffer, when it is one of a node's engine threads.
  static var current: LocalInputs? {
    guard let raw = pthread_getspecific(key) else { return nil }
    return Unmanaged<LocalInputs>.fromOpaque(raw).takeUnretainedValue()
  }

  /// Makes `inputs` the calling thread's buffer (nil: none) for as long as `body` runs.
  static func installed<R>(_ inputs: LocalInputs, _ body: () -> R) -> R {
    let raw = Unmanaged.passRetained(inputs).toOpaque()
    pthread_setspecific(key, raw)
    defer {
      pthread_setspecific(key, nil)
      Unmanaged<LocalInputs>.fromOpaque(raw).release()
    }
    return body()
  }
}

/// The identity of one node's engine threads, for `LocalInputs`.
final class ThreadsToken: Sendable {}
