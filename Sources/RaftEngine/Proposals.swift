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
    /// When the proposal entered the log, and when a Ready handed it out committed (0: not yet).
    var proposedAt: UInt64
    var committedAt: UInt64 = 0
  }

  private let waiting = Mutex<[UInt64: Waiting]>([:])
  private let metrics: EngineMetrics

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
    waiting.withLock { w in
      for (index, p) in batch {
        // A re-proposal at the same index (after a leadership change) supersedes the older one.
        if let old = w.updateValue(p, forKey: index) { old.completion(.failure(.dropped)) }
      }
    }
  }

  /// Resolves the proposal at `index`, if any, against the term of the entry applied there.
  func applied(index: UInt64, term: UInt64) {
    guard let p = waiting.withLock({ $0.removeValue(forKey: index) }) else { return }
    if p.committedAt != 0 { metrics.commitToApply.recordNanoseconds(Int64(engineNanoseconds() &- p.committedAt)) }
    p.completion(p.term == term ? .success(index) : .failure(.dropped))
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
