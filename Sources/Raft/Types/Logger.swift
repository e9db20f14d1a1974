/// Severity of a line logged by the algorithm layer.
public enum RaftLogLevel: Int, Sendable, Comparable, CustomStringConvertible {
  case debug = 0
  case info = 1
  case warning = 2
  case error = 3

  public static func < (a: RaftLogLevel, b: RaftLogLevel) -> Bool { a.rawValue < b.rawValue }

  public var description: String {
    switch self {
    case .debug: return "DEBUG"
    case .info: return "INFO"
    case .warning: return "WARN"
    case .error: return "ERROR"
    }
  }
}

/// Where the algorithm layer writes its log lines. The layer never formats a line unless
/// `isEnabled` says it will be kept. Implementations are called from the thread that drives the
/// `RawNode`.
public protocol RaftLogger: AnyObject {
  func isEnabled(_ level: RaftLogLevel) -> Bool
  func log(_ level: RaftLogLevel, _ message: String)
}

extension RaftLogger {
  @inlinable
  public func debug(_ message: @autoclosure () -> String) {
    if isEnabled(.debug) { log(.debug, message()) }
  }
  @inlinable
  public func info(_ message: @autoclosure () -> String) {
    if isEnabled(.info) { log(.info, message()) }
  }
  @inlinable
  public func warning(_ message: @autoclosure () -> String) {
    if isEnabled(.warning) { log(.warning, message()) }
  }
  @inlinable
  public func error(_ message: @autoclosure () -> String) {
    if isEnabled(.error) { log(.error, message()) }
  }
  /// Logs at error level and stops the process: an invariant of the algorithm was broken.
  public func panic(_ message: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) -> Never {
    let m = message()
    log(.error, m)
    preconditionFailure(m, file: file, line: line)
  }
}

/// A logger that drops everything (the default).
public final class DiscardLogger: RaftLogger {
  public init() {}
  public func isEnabled(_ level: RaftLogLevel) -> Bool { false }
  public func log(_ level: RaftLogLevel, _ message: String) {}
}
