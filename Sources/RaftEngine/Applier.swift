import Raft

/// Applies committed entries to the state machine and resolves the proposals waiting on them:
/// the apply side, run by the apply worker (async mode) or the run loop (sync mode).
final class Applier: @unchecked Sendable {
  let stateMachine: StateMachine
  let proposals: Proposals
  /// Take a snapshot every this many applied entries (0: never).
  let snapshotEntries: UInt64
  /// Apply side only: the index of the last snapshot taken (or restored).
  var lastSnapshotIndex: UInt64

  init(stateMachine: StateMachine, proposals: Proposals, snapshotEntries: UInt64, lastSnapshotIndex: UInt64) {
    self.stateMachine = stateMachine
    self.proposals = proposals
    self.snapshotEntries = snapshotEntries
    self.lastSnapshotIndex = lastSnapshotIndex
  }

  /// Apply side only: a node was added since the last snapshot. The next snapshot is taken at
  /// once: a new member that must catch up by snapshot refuses one whose configuration does not
  /// have it (etcd builds a fresh snapshot when it sends one; the engine takes one instead).
  private var nodeAdded = false

  /// After applying through `index`: the state machine's snapshot when one is due.
  func snapshotIfDue(appliedThrough index: UInt64) -> (index: UInt64, data: [UInt8])? {
    guard snapshotEntries > 0, index > lastSnapshotIndex, nodeAdded || index >= lastSnapshotIndex + snapshotEntries
    else { return nil }
    guard let data = stateMachine.snapshotData() else { return nil }
    lastSnapshotIndex = index
    nodeAdded = false
    return (index, data)
  }

  /// A committed conf change: the owner of the `RawNode` applies it, then `confChangeApplied`
  /// completes its proposal (so that whoever waits on it sees the new configuration).
  struct ConfChangeEntry {
    var change: AnyConfChange
    var index: UInt64
    var term: UInt64
  }

  /// Applies `entries` in order; returns the conf changes among them, which the owner of the
  /// `RawNode` must apply (in order, before the apply's responses are stepped).
  func apply(_ entries: [Entry]) throws -> [ConfChangeEntry] {
    var confChanges: [ConfChangeEntry] = []
    for e in entries {
      switch e.type {
      case .normal:
        if !e.data.isEmpty { stateMachine.apply(index: e.index, term: e.term, data: e.data) }
      case .confChange, .confChangeV2:
        if let cc = try e.decodedConfChange() {
          stateMachine.applyConfChange(cc, index: e.index, term: e.term)
          if cc.asV2.changes.contains(where: { $0.type == .addNode || $0.type == .addLearnerNode }) {
            nodeAdded = true
          }
          confChanges.append(ConfChangeEntry(change: cc, index: e.index, term: e.term))
        }
      }
    }
    proposals.applied(normalEntriesOf: entries)
    if let last = entries.last {
      proposals.appliedTerm(last.term, appliedIndex: last.index)
      stateMachine.applied(through: last.index)
    }
    return confChanges
  }

  /// Completes the proposals of conf changes once they are handed to (or applied by) the owner
  /// of the `RawNode`.
  func confChangesApplied(_ changes: [ConfChangeEntry]) {
    proposals.appliedConfChanges(changes)
  }
}
