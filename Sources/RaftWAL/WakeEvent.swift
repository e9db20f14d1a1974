import CLibURing

#if canImport(Glibc)
  import Glibc
#endif

/// An eventfd that wakes the WAL's owner out of `WAL.waitForCompletion(orWake:)`: its one wait
/// point for disk completions and new work together (the work's producers `signal` it).
public final class WakeEvent: @unchecked Sendable {
  /// The eventfd.
  public let fd: Int32

  /// A fresh eventfd; throws when the process cannot open one.
  public init() throws(WALError) {
    let fd = swift_raft_eventfd()
    guard fd >= 0 else { throw .io(operation: "eventfd", file: "-", errno: errno) }
    self.fd = fd
  }

  deinit { FileIO.close(fd) }

  /// Wakes the waiter (or the next wait, when nobody waits yet).
  public func signal() {
    var one: UInt64 = 1
    while write(fd, &one, 8) < 0 && errno == EINTR {}
  }
}
