import Raft
import RaftWAL
import Synchronization

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

  /// Resolves the proposals waiting on the normal entries among `entries` (conf changes are
  /// resolved by `appliedConfChanges`), against the entry applied at each index. One lock per
  /// batch; the completions run outside it, in index order.
  func applied(normalEntriesOf entries: [Entry]) {
    resolve(entries.lazy.filter { $0.type == .normal }.map { ($0.index, $0.term, false) })
  }

  /// Resolves the proposals of conf changes the `RawNode` now has.
  func appliedConfChanges(_ changes: [Applier.ConfChangeEntry]) {
    resolve(changes.lazy.map { ($0.index, $0.term, true) })
  }

  /// Each proposal succeeds when the entry applied at its index has its term and kind.
  private func resolve<S: Sequence>(_ applied: S) where S.Element == (UInt64, UInt64, Bool) {
    var done: [(Completion, Result<UInt64, EngineError>)] = []
    let now = monotonicNanoseconds()
    waiting.withLock { w in
      guard !w.isEmpty else { return }
      for (index, term, isConfChange) in applied {
        guard let p = w.removeValue(forKey: index) else { continue }
        if p.committedAt != 0 { metrics.commitToApply.recordNanoseconds(Int64(now &- p.committedAt)) }
        done.append(
          (p.completion, p.term == term && p.isConfChange == isConfChange ? .success(index) : .failure(.dropped)))
      }
    }
    for (completion, result) in done { completion(result) }
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
