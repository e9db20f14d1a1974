import Raft

/// Performs the core's apply and restore jobs on a `StateMachine`: the apply side, run by the
/// apply worker (async mode), the run loop (sync mode), or the simulator. One thread at a time.
public struct Applier {
  public let stateMachine: StateMachine
  let metrics: EngineMetrics?

  /// An applier without metrics (the simulator's).
  public init(stateMachine: StateMachine) {
    self.init(stateMachine: stateMachine, metrics: nil)
  }

  init(stateMachine: StateMachine, metrics: EngineMetrics?) {
    self.stateMachine = stateMachine
    self.metrics = metrics
  }

  /// Applies the job's entries in order (normal entries with data to `apply`, conf changes to
  /// `applyConfChange`), then delivers its completions, then takes the snapshot it asks for.
  /// `now` is read once, for the metrics.
  public func apply(_ job: ApplyJob, now: () -> UInt64) -> ApplyOutcome {
    let sm = stateMachine
    var nextConfChange = 0
    let entries = job.entries
    let empties = sm.appliesEmptyEntries
    for k in entries.indices {
      // (Fields are read in place: copying each entry out would touch its payload's count.)
      if entries[k].type == .normal {
        if empties || !entries[k].data.isEmpty {
          sm.apply(index: entries[k].index, term: entries[k].term, data: entries[k].data)
        }
        continue
      }
      let e = entries[k]
      if nextConfChange < job.confChanges.count, job.confChanges[nextConfChange].index == e.index {
        let cc = job.confChanges[nextConfChange]
        sm.applyConfChange(cc.change, index: cc.index, term: cc.term)
        nextConfChange += 1
      }
    }
    precondition(nextConfChange == job.confChanges.count, "Applier: a conf change is not among the job's entries")
    let last = job.lastIndex
    sm.applied(through: last)
    if let metrics, !job.completions.isEmpty {
      let t = now()
      for o in job.completions where o.proposedAtNanoseconds != 0 {
        metrics.proposalToCommit.recordNanoseconds(Int64(job.committedAtNanoseconds &- o.proposedAtNanoseconds))
        metrics.commitToApply.recordNanoseconds(Int64(t &- job.committedAtNanoseconds))
      }
    }
    for o in job.completions { o.deliver() }
    var snapshot: (index: UInt64, confState: ConfState, data: [UInt8])?
    if let cs = job.snapshotConfState, let data = sm.snapshotData() { snapshot = (last, cs, data) }
    return ApplyOutcome(appliedIndex: last, snapshot: snapshot, responses: job.responses)
  }

  /// Restores the state machine from the job's snapshot, then delivers its completions.
  public func restore(_ job: RestoreJob) -> ApplyOutcome {
    stateMachine.restore(snapshot: job.snapshot)
    for o in job.completions { o.deliver() }
    return ApplyOutcome(appliedIndex: job.snapshot.metadata.index)
  }
}
