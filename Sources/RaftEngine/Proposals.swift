import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Proposals waiting to be applied, by log index. The run loop registers a batch of them (one
/// lock per Ready, not per proposal); the apply side resolves each as its index is applied:
/// with its index when the applied entry has the proposal's term, as dropped when another
/// leader's entry took the index.
final class Proposals: Sendable {
  typealias Completion = @Sendable (Result<UInt64, EngineError>) -> Void

  struct Waiting {
    var term: UInt64
    var completion: Completion
    /// A conf change proposal succeeds only if a conf change entry is applied at its index (a
    /// leader that refuses one appends an empty normal entry instead).
    var isConfChange = false
    /// When the proposal entered the log, and when a Ready handed it out committed (0: not yet).
    var proposedAt: UInt64
    var committedAt: UInt64 = 0
  }

  private let waiting = Mutex<[UInt64: Waiting]>([:])
  private let metrics: EngineMetrics
  /// The highest term of an applied entry (apply side only): a proposal of a lower term that
  /// is still waiting can never commit.
  private let appliedTerm = Mutex<UInt64>(0)

  init(metrics: EngineMetrics) { self.metrics = metrics }

  /// Stamps the proposals among `indexes` as committed at `now`.
  func committed(_ indexes: ClosedRange<UInt64>, at now: UInt64) {
    waiting.withLock { w in
      guard !w.isEmpty else { return }
      for i in indexes {
        if w[i] != nil, w[i]!.committedAt == 0 {
          w[i]!.committedAt = now
          metrics.proposalToCommit.recordNanoseconds(Int64(now &- w[i]!.proposedAt))
        }
      }
    }
  }

  func register(_ batch: [(index: UInt64, Waiting)]) {
    guard !batch.isEmpty else { return }
    let superseded = waiting.withLock { w in
      var superseded: [Completion] = []
      for (index, p) in batch {
        // A re-proposal at the same index (after a leadership change) supersedes the older one.
        if let old = w.updateValue(p, forKey: index) { superseded.append(old.completion) }
      }
      return superseded
    }
    for c in superseded { c(.failure(.dropped)) }
  }

  /// Resolves the proposal at `index`, if any, against the entry applied there: its term, and
  /// whether it is a conf change.
  func applied(index: UInt64, term: UInt64, isConfChange: Bool) {
    guard let p = waiting.withLock({ $0.removeValue(forKey: index) }) else { return }
    if p.committedAt != 0 { metrics.commitToApply.recordNanoseconds(Int64(engineNanoseconds() &- p.committedAt)) }
    p.completion(p.term == term && p.isConfChange == isConfChange ? .success(index) : .failure(.dropped))
  }

  /// After applying entries up to term `term`: proposals of lower terms still waiting can no
  /// longer commit (a later leader's log won), so they fail now instead of when their index is
  /// reached (which may be never in a quiet cluster).
  ///
  /// Conf change proposals at or below `appliedIndex` are left alone: they complete once the
  /// `RawNode` has the change (`Applier.confChangesApplied`).
  func appliedTerm(_ term: UInt64, appliedIndex: UInt64) {
    let raised = appliedTerm.withLock { t in
      guard term > t else { return false }
      t = term
      return true
    }
    guard raised else { return }
    fail { index, p in p.term < term && !(p.isConfChange && index <= appliedIndex) }
  }

  /// A snapshot replaced the log through `index`: the outcome of the proposals at or below it
  /// is unknown here, so they fail as dropped.
  func restored(through index: UInt64) {
    fail({ _, _ in true }, upTo: index)
  }

  private func fail(_ match: (UInt64, Waiting) -> Bool, upTo index: UInt64 = .max) {
    let failed = waiting.withLock { w in
      var failed: [Completion] = []
      for (i, p) in w where i <= index && match(i, p) {
        failed.append(p.completion)
        w.removeValue(forKey: i)
      }
      return failed
    }
    for c in failed { c(.failure(.dropped)) }
  }

  /// Fails every waiting proposal (the node stops).
  func failAll(_ error: EngineError) {
    let all = waiting.withLock { w in
      let all = w
      w = [:]
      return all
    }
    for p in all.values { p.completion(.failure(error)) }
  }

  var count: Int { waiting.withLock { $0.count } }
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always)
func engineNanoseconds() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
