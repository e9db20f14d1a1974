/// Computes membership changes (etcd-raft's `confchange.Changer`): simple one-voter changes,
/// entering and leaving joint consensus. Every method validates the change and returns the new
/// configuration and progress map without touching `tracker`; the caller installs them.
public struct Changer {
  /// The tracker holding the current configuration. Never mutated by the changer.
  public var tracker: ProgressTracker
  /// The leader's last log index; new peers start probing from there.
  public var lastIndex: UInt64

  /// A changer starting from `tracker`'s configuration.
  public init(tracker: ProgressTracker, lastIndex: UInt64) {
    self.tracker = tracker
    self.lastIndex = lastIndex
  }

  /// Applies `cc` the way its transition says: leaving the joint configuration, entering one,
  /// or as a simple change.
  public func apply(_ cc: ConfChangeV2) throws -> (TrackerConfig, ProgressMap) {
    if cc.leaveJoint { return try leaveJoint() }
    if case let (autoLeave, true) = cc.enterJoint { return try enterJoint(autoLeave: autoLeave, cc.changes) }
    return try simple(cc.changes)
  }

  /// Enters a joint configuration: the current voters become the outgoing half, and `ccs` are
  /// applied to the incoming half (C_{old,new} in the Raft thesis, section 4.3). `autoLeave`
  /// is recorded in the configuration for the caller to act upon.
  public func enterJoint(autoLeave: Bool, _ ccs: [ConfChangeSingle]) throws -> (TrackerConfig, ProgressMap) {
    var w = try checkAndCopy()
    if w.cfg.voters.isJoint { throw RaftError.confChange("config is already joint") }
    if w.cfg.voters.incoming.isEmpty {
      // An empty configuration may be populated (bootstrap, tests), but not made joint.
      throw RaftError.confChange("can't make a zero-voter config joint")
    }
    w.cfg.voters.outgoing = w.cfg.voters.incoming
    try apply(&w, ccs)
    w.cfg.autoLeave = autoLeave
    return try w.checked()
  }

  /// Leaves a joint configuration: the outgoing half is dropped, staged learners
  /// (`learnersNext`) become learners, and peers that are neither voters nor learners any more
  /// lose their progress.
  public func leaveJoint() throws -> (TrackerConfig, ProgressMap) {
    var w = try checkAndCopy()
    if !w.cfg.voters.isJoint { throw RaftError.confChange("can't leave a non-joint config") }
    for id in w.cfg.learnersNext {
      w.cfg.learners.insert(id)
      w.mutableProgress(id)?.isLearner = true
    }
    w.cfg.learnersNext = []
    for id in w.cfg.voters.outgoing.ids
    where !w.cfg.voters.incoming.contains(id) && !w.cfg.learners.contains(id) {
      w.trk[id] = nil
    }
    w.cfg.voters.outgoing = MajorityConfig()
    w.cfg.autoLeave = false
    return try w.checked()
  }

  /// Applies `ccs` without joint consensus. Fails when the configuration is joint, or when the
  /// changes taken together alter the set of voters by more than one.
  public func simple(_ ccs: [ConfChangeSingle]) throws -> (TrackerConfig, ProgressMap) {
    var w = try checkAndCopy()
    if w.cfg.voters.isJoint {
      throw RaftError.confChange("can't apply simple config change in joint config")
    }
    try apply(&w, ccs)
    let before = tracker.config.voters.incoming.ids
    if before.symmetricDifference(w.cfg.voters.incoming.ids).count > 1 {
      throw RaftError.confChange("more than one voter changed without entering joint config")
    }
    return try w.checked()
  }

  // MARK: - Applying changes

  /// Applies each change to the incoming half (the outgoing half, if any, stays as it was).
  /// Changes for node 0 are skipped: applications use that id to void a change.
  private func apply(_ w: inout WorkingConfig, _ ccs: [ConfChangeSingle]) throws {
    for cc in ccs where cc.nodeID != 0 {
      switch cc.type {
      case .addNode: makeVoter(&w, cc.nodeID)
      case .addLearnerNode: makeLearner(&w, cc.nodeID)
      case .removeNode: remove(&w, cc.nodeID)
      case .updateNode: break
      }
    }
    if w.cfg.voters.incoming.isEmpty { throw RaftError.confChange("removed all voters") }
  }

  /// Adds `id` as a voter of the incoming half, or promotes it from learner.
  private func makeVoter(_ w: inout WorkingConfig, _ id: UInt64) {
    guard let pr = w.mutableProgress(id) else {
      initProgress(&w, id, isLearner: false)
      return
    }
    pr.isLearner = false
    w.cfg.learners.remove(id)
    w.cfg.learnersNext.remove(id)
    w.cfg.voters.incoming.ids.insert(id)
  }

  /// Adds `id` as a learner, or demotes it from voter. A voter of the outgoing half cannot be a
  /// learner while joint, so its demotion is staged in `learnersNext` until the joint
  /// configuration is left.
  private func makeLearner(_ w: inout WorkingConfig, _ id: UInt64) {
    guard let existing = w.trk[id] else {
      initProgress(&w, id, isLearner: true)
      return
    }
    if existing.isLearner { return }
    let pr = w.mutableProgress(id)!
    // Drop it from the incoming voters, but keep its progress.
    remove(&w, id)
    w.trk[id] = pr
    if w.cfg.voters.outgoing.contains(id) {
      w.cfg.learnersNext.insert(id)
    } else {
      pr.isLearner = true
      w.cfg.learners.insert(id)
    }
  }

  /// Removes `id` from the incoming half and the learners; its progress goes too unless it is
  /// still a voter of the outgoing half.
  private func remove(_ w: inout WorkingConfig, _ id: UInt64) {
    guard w.trk[id] != nil else { return }
    w.cfg.voters.incoming.ids.remove(id)
    w.cfg.learners.remove(id)
    w.cfg.learnersNext.remove(id)
    if !w.cfg.voters.outgoing.contains(id) {
      w.trk[id] = nil
    }
  }

  /// Starts tracking a new voter or learner. It is probed from the last index (at least 1, to
  /// keep `match < next`), and counts as recently active so that check-quorum does not step
  /// the leader down before the newcomer had a chance to answer.
  private func initProgress(_ w: inout WorkingConfig, _ id: UInt64, isLearner: Bool) {
    if isLearner {
      w.cfg.learners.insert(id)
    } else {
      w.cfg.voters.incoming.ids.insert(id)
    }
    let pr = Progress(
      match: 0, next: max(lastIndex, 1),
      inflights: Inflights(size: tracker.maxInflight, maxBytes: tracker.maxInflightBytes),
      isLearner: isLearner, recentActive: true)
    w.trk[id] = pr
    w.owned.insert(id)
  }

  /// Copies the tracker's configuration and progress map, after checking their invariants.
  private func checkAndCopy() throws -> WorkingConfig {
    let w = WorkingConfig(cfg: tracker.config, trk: tracker.progress, owned: [])
    try checkInvariants(w.cfg, w.trk)
    return w
  }
}

/// The configuration and progress map a change is being computed on.
///
/// `trk` starts out sharing its `Progress` objects with the tracker; an object is cloned before
/// its first mutation (`mutableProgress`), so the tracker is never modified.
private struct WorkingConfig {
  var cfg: TrackerConfig
  var trk: ProgressMap
  /// Ids whose `Progress` in `trk` belongs to this change (cloned or created by it).
  var owned: Set<UInt64>

  /// The progress of `id`, safe to mutate, or nil if `id` is not tracked.
  mutating func mutableProgress(_ id: UInt64) -> Progress? {
    guard let pr = trk[id] else { return nil }
    if owned.contains(id) { return pr }
    let copy = pr.clone()
    trk[id] = copy
    owned.insert(id)
    return copy
  }

  /// The result, after checking the invariants.
  func checked() throws -> (TrackerConfig, ProgressMap) {
    try checkInvariants(cfg, trk)
    return (cfg, trk)
  }
}

/// Checks that a configuration and a progress map fit together: every voter and learner is
/// tracked, staged learners are outgoing voters not yet marked as learners, learners vote in
/// neither half and are marked as learners, and a non-joint configuration has no staged
/// learners and no auto-leave. The empty configuration is valid (it is where bootstrap starts).
func checkInvariants(_ cfg: TrackerConfig, _ trk: ProgressMap) throws {
  for ids in [cfg.voters.ids, cfg.learners, cfg.learnersNext] {
    for id in ids.sorted() where trk[id] == nil {
      throw RaftError.confChange("no progress for \(id)")
    }
  }
  for id in cfg.learnersNext.sorted() {
    if !cfg.voters.outgoing.contains(id) {
      throw RaftError.confChange("\(id) is in LearnersNext, but not Voters[1]")
    }
    if trk[id]!.isLearner {
      throw RaftError.confChange("\(id) is in LearnersNext, but is already marked as learner")
    }
  }
  for id in cfg.learners.sorted() {
    if cfg.voters.outgoing.contains(id) {
      throw RaftError.confChange("\(id) is in Learners and Voters[1]")
    }
    if cfg.voters.incoming.contains(id) {
      throw RaftError.confChange("\(id) is in Learners and Voters[0]")
    }
    if !trk[id]!.isLearner {
      throw RaftError.confChange("\(id) is in Learners, but is not marked as learner")
    }
  }
  if !cfg.voters.isJoint {
    if !cfg.learnersNext.isEmpty {
      throw RaftError.confChange("cfg.LearnersNext must be nil when not joint")
    }
    if cfg.autoLeave {
      throw RaftError.confChange("AutoLeave must be false when not joint")
    }
  }
}
