import DequeModule
import Raft

/// Compaction on the application's request (`Node.compact(through:snapshot:)`): the
/// application says what it has consumed or captured in its own snapshot, and the core saves a
/// snapshot at exactly that index and compacts the log behind it (keeping
/// `compactionRetainEntries` for slow followers), instead of, or as well as, the cadence.
extension EngineCore {
  /// A compaction the application asked for, waiting until the entries through `index` are
  /// applied here.
  struct CompactionRequest {
    var index: UInt64
    var data: [UInt8]
    var completions: [@Sendable (Result<UInt64, EngineError>) -> Void]
  }

  /// Saves a snapshot at `index` with the application's `data` and compacts the log behind it,
  /// once `index` is applied on this node; `completion` gets the snapshot's index (or the
  /// newer one already saved) once the log saved the snapshot and compacted, or `.stopped`.
  /// A later request replaces a waiting one (both complete with it).
  public mutating func compact(
    through index: UInt64, data: [UInt8], completion: @escaping @Sendable (Result<UInt64, EngineError>) -> Void
  ) {
    guard state != .stopped else { return actions.append(.answerCompaction(completion, .failure(.stopped))) }
    if index <= savedSnapshotIndex {
      return actions.append(.answerCompaction(completion, .success(savedSnapshotIndex)))
    }
    var request = CompactionRequest(index: index, data: data, completions: [completion])
    if let waiting = compactionRequest {
      if waiting.index > index {
        request.index = waiting.index
        request.data = waiting.data
      }
      request.completions = waiting.completions + request.completions
    }
    compactionRequest = request
    compactIfApplied()
  }

  /// Performs the waiting compaction request once its index is applied.
  mutating func compactIfApplied() {
    guard let request = compactionRequest, request.index <= appliedIndex else { return }
    compactionRequest = nil
    let index = request.index
    guard index > savedSnapshotIndex else {
      for c in request.completions { actions.append(.answerCompaction(c, .success(savedSnapshotIndex))) }
      return
    }
    // Answered by the driver once the log saved it (`SnapshotSave.answerSaved`).
    saveSnapshot(index: index, confState: confState(at: index), data: request.data, answers: request.completions)
  }

  /// Records that the configuration is `confState` from `index` on (a conf change handed out,
  /// a snapshot installed), for `confState(at:)`.
  mutating func recordConfState(_ confState: ConfState, at index: UInt64) {
    if let last = confStateHistory.last {
      precondition(last.index <= index, "EngineCore: the configuration history went back")
    }
    confStateHistory.append((index, confState))
    // Keep the newest entry at or below the compaction point (the configuration there), and
    // everything above it.
    while confStateHistory.count > 1, confStateHistory[1].index <= compactedThrough {
      confStateHistory.removeFirst()
    }
  }

  /// The configuration as of `index` (not below the compaction point, not above what was
  /// handed out for applying).
  func confState(at index: UInt64) -> ConfState {
    precondition(index <= handedOutIndex, "EngineCore: the configuration at \(index) is not known yet")
    var found = confStateHistory.first?.confState ?? confState
    for h in confStateHistory {
      if h.index > index { break }
      found = h.confState
    }
    return found
  }
}
