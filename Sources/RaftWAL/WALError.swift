#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Everything the WAL reports. Each case names the file involved, and corruption names the byte
/// offset, so an operator can look at it with `wal-dump`.
public enum WALError: Error, Equatable, Sendable, CustomStringConvertible {
  /// A system call failed: the operation, the file and errno.
  case io(operation: String, file: String, errno: Int32)
  /// A record (or snapshot file) failed its checks somewhere a torn write cannot explain.
  case corrupt(file: String, offset: Int, reason: String)
  /// A configuration value is out of range.
  case invalidOptions(String)
  /// The caller asked for something the WAL's state does not allow (the reason says what).
  case invalidRequest(String)
  /// An earlier error left the WAL unusable; it must be reopened (the earlier error is kept).
  case failed(String)

  public var description: String {
    switch self {
    case .io(let op, let file, let err):
      let reason = String(cString: strerror(err))
      let hint = err == ENOSPC ? " (disk full: nothing after the last durable batch was acknowledged)" : ""
      return "\(op) \(file): \(reason) (errno \(err))\(hint)"
    case .corrupt(let file, let offset, let reason): return "corrupt WAL: \(file):\(offset): \(reason)"
    case .invalidOptions(let s): return "invalid WAL options: \(s)"
    case .invalidRequest(let s): return "invalid WAL request: \(s)"
    case .failed(let s): return "WAL failed earlier and must be reopened: \(s)"
    }
  }
}
