import Raft

/// The output buffer of an `InteractionEnv`, which is also the logger of every node in it
/// (etcd-raft's `RedirectLogger`): Raft's log lines land in the directive's output between the
/// descriptions the environment prints, each as `LEVEL message`.
///
/// The level is one of DEBUG, INFO, WARN, ERROR, FATAL and NONE. NONE silences everything,
/// including the environment's own output; only errors of a directive still come through.
final class InteractionOutput: RaftLogger {
  /// The level names, in increasing severity; the index is the level.
  static let levelNames = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL", "NONE"]

  /// What has been written since the last `reset()`.
  var text = ""
  /// Lines below this level are dropped. Invariant: `0...5` (5 is NONE).
  var level = 0 {
    didSet { precondition(level >= 0 && level < Self.levelNames.count, "bad log level \(level)") }
  }

  /// An empty buffer that shows every level.
  init() {}

  /// True at level NONE: nothing is written at all.
  var quiet: Bool { level == Self.levelNames.count - 1 }

  /// Appends `s` unless the output is quiet.
  func write(_ s: String) {
    if !quiet { text += s }
  }

  func reset() { text = "" }

  /// Sets the level by (case-insensitive) name.
  func setLevel(named name: String) throws {
    guard let i = Self.levelNames.firstIndex(where: { $0.lowercased() == name.lowercased() }) else {
      throw InteractionError("log levels must be either of [\(Self.levelNames.joined(separator: " "))]")
    }
    level = i
  }

  func isEnabled(_ level: RaftLogLevel) -> Bool {
    self.level <= level.rawValue
  }

  func log(_ level: RaftLogLevel, _ message: String) {
    guard isEnabled(level) else { return }
    write(level.description + " " + message)
    if !message.hasSuffix("\n") { write("\n") }
  }
}

/// An error of the interaction environment itself (a bad argument, a missing node, ...). Its
/// text becomes the directive's output.
struct InteractionError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}
