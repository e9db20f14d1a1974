import Raft

/// Applies committed entries to the state machine and resolves the proposals waiting on them:
/// the apply side, run by the apply worker (async mode) or the run loop (sync mode).
struct Applier {
  let stateMachine: StateMachine
  let proposals: Proposals

  /// Applies `entries` in order; returns the conf changes among them, which the owner of the
  /// `RawNode` must apply (in order, before the apply's responses are stepped).
  func apply(_ entries: [Entry]) throws -> [AnyConfChange] {
    var confChanges: [AnyConfChange] = []
    for e in entries {
      switch e.type {
      case .normal:
        if !e.data.isEmpty { stateMachine.apply(index: e.index, term: e.term, data: e.data) }
      case .confChange, .confChangeV2:
        if let cc = try e.decodedConfChange() { confChanges.append(cc) }
      }
      proposals.applied(index: e.index, term: e.term)
    }
    if let last = entries.last { stateMachine.applied(through: last.index) }
    return confChanges
  }
}
