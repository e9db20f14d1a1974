// Membership: applying conf changes and restoring from snapshots.

extension Raft {
  /// Applies a committed conf change to the tracker and returns the new ConfState.
  func applyConfChange(_ cc: ConfChangeV2) -> ConfState {
    let changer = Changer(tracker: tracker, lastIndex: raftLog.lastIndex())
    let result: (TrackerConfig, ProgressMap)
    do {
      result = try changer.apply(cc)
    } catch {
      // A committed conf change that cannot apply means a bug or a corrupted log.
      logger.panic("\(hx(id)) cannot apply conf change \(cc): \(error)")
    }
    return switchToConfig(result.0, result.1)
  }

  /// Installs a configuration and reacts to it: a removed or demoted leader may step down, a
  /// smaller quorum may commit more, new peers are probed right away.
  func switchToConfig(_ cfg: TrackerConfig, _ progress: ProgressMap) -> ConfState {
    tracker.config = cfg
    tracker.progress = progress
    logger.info("\(hx(id)) switched to configuration \(tracker.config)")
    let cs = tracker.confState()
    let pr = tracker.progress(of: id)
    isLearner = pr?.isLearner ?? false

    if (pr == nil || isLearner) && state == .leader {
      // The leader was removed or demoted.
      if stepDownOnRemoval { becomeFollower(term: term, lead: noNode) }
      return cs
    }
    // The rest only matters for a leader with peers.
    if state != .leader || cs.voters.isEmpty { return cs }

    if maybeCommit() {
      bcastAppend()
    } else {
      let me = id
      tracker.visit { pid, _ in
        if pid != me { maybeSendAppend(to: pid, sendIfEmpty: false) }
      }
    }
    // A transfer to a node that is no longer a voter cannot succeed.
    if leadTransferee != noNode && !tracker.config.voters.ids.contains(leadTransferee) {
      abortLeaderTransfer()
    }
    return cs
  }

  /// Restores the log and the configuration from a snapshot sent by the leader. Returns false
  /// when the snapshot is ignored (stale, or not for a configuration containing us).
  func restore(_ s: Snapshot) -> Bool {
    if s.metadata.index <= raftLog.committed { return false }
    // The log resumes at index + 1: a snapshot at UInt64.max is malformed.
    if s.metadata.index == UInt64.max {
      logger.warning("\(hx(id)) ignored a snapshot at index \(s.metadata.index): no index can follow it")
      return false
    }
    if state != .follower {
      // Defence in depth: only followers restore snapshots.
      logger.warning("\(hx(id)) attempted to restore snapshot as leader; should never happen")
      becomeFollower(term: term + 1, lead: noNode)
      return false
    }
    let cs = s.metadata.confState
    // Defence in depth: much of the code assumes we are in the tracker.
    // (learnersNext need not be checked: its members are in votersOutgoing.)
    guard cs.voters.contains(id) || cs.learners.contains(id) || cs.votersOutgoing.contains(id) else {
      logger.warning(
        "\(hx(id)) attempted to restore snapshot but it is not in the ConfState \(cs); should never happen")
      return false
    }

    if raftLog.matchTerm(s.metadata.index, s.metadata.term) {
      // We already have the snapshot's last entry: just move the commit index.
      let (li, lt) = raftLog.tip()
      logger.info(
        "\(hx(id)) [commit: \(raftLog.committed), lastindex: \(li), lastterm: \(lt)] fast-forwarded commit to "
          + "snapshot [index: \(s.metadata.index), term: \(s.metadata.term)]")
      raftLog.commitTo(s.metadata.index)
      return false
    }

    raftLog.restore(s)

    // Rebuild the configuration from scratch.
    tracker = ProgressTracker(maxInflight: tracker.maxInflight, maxInflightBytes: tracker.maxInflightBytes)
    let result: (TrackerConfig, ProgressMap)
    do {
      result = try restoreConfState(Changer(tracker: tracker, lastIndex: raftLog.lastIndex()), cs)
    } catch {
      logger.panic("unable to restore config \(cs): \(error)")
    }
    assertConfStatesEquivalent(cs, switchToConfig(result.0, result.1))

    let (li, lt) = raftLog.tip()
    logger.info(
      "\(hx(id)) [commit: \(raftLog.committed), lastindex: \(li), lastterm: \(lt)] restored snapshot "
        + "[index: \(s.metadata.index), term: \(s.metadata.term)]")
    return true
  }
}
