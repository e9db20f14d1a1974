import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// The progress of a run on stderr: one line rewritten in place on a terminal, plain lines
/// (at most one a second, and one per step) otherwise.
final class Progress {
  private let isTerminal = isatty(2) == 1
  private let steps: Int
  private var step = 0
  private var lastPlainAt: UInt64 = 0
  private var lineShown = false

  init(steps: Int) { self.steps = steps }

  /// Starts the next step.
  func next() {
    step += 1
    lastPlainAt = 0
  }

  /// What the current step is doing now.
  func phase(_ text: String) {
    let line = "[\(step)/\(steps)] \(text)"
    if isTerminal {
      write("\r\u{1B}[K" + line)
      lineShown = true
    } else {
      let now = monotonicNanoseconds()
      guard lastPlainAt == 0 || now - lastPlainAt >= 1_000_000_000 else { return }
      lastPlainAt = now
      write(line + "\n")
    }
  }

  /// Clears the progress line (before results are printed to a terminal).
  func clear() {
    if isTerminal && lineShown {
      write("\r\u{1B}[K")
      lineShown = false
    }
  }

  private func write(_ s: String) {
    var s = s
    s.withUTF8 { b in _ = Glibc.write(2, b.baseAddress, b.count) }
  }
}
