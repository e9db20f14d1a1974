#if canImport(Glibc)
  import Glibc
#endif

/// The engine's clock: monotonic nanoseconds (`CLOCK_MONOTONIC`). The drivers read it (once per
/// loop turn on the run loop) and hand the time to the core, which never reads a clock.
public enum EngineClock {
  /// Nanoseconds since an arbitrary point, never going back.
  @inlinable
  public static func nanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
  }
}
