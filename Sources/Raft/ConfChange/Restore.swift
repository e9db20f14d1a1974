/// Rebuilds the configuration described by `cs` (from a snapshot or at startup) by replaying
/// changes on `changer`, whose tracker must hold the empty configuration (etcd-raft's
/// `confchange.Restore`). The changer's tracker is not modified.
///
/// A non-joint state is replayed as one simple change per voter and learner. A joint state
/// first builds the outgoing voters with simple changes, then enters the joint configuration
/// with: remove every outgoing voter, add the incoming voters, add the learners, add the staged
/// learners (which, being outgoing voters, end up in `learnersNext`).
public func restoreConfState(_ changer: Changer, _ cs: ConfState) throws -> (TrackerConfig, ProgressMap) {
  var steps: [(Changer) throws -> (TrackerConfig, ProgressMap)] = []
  let outgoing = cs.votersOutgoing.map { ConfChangeSingle(type: .addNode, nodeID: $0) }
  var incoming = cs.votersOutgoing.map { ConfChangeSingle(type: .removeNode, nodeID: $0) }
  incoming += cs.voters.map { ConfChangeSingle(type: .addNode, nodeID: $0) }
  incoming += cs.learners.map { ConfChangeSingle(type: .addLearnerNode, nodeID: $0) }
  incoming += cs.learnersNext.map { ConfChangeSingle(type: .addLearnerNode, nodeID: $0) }

  if outgoing.isEmpty {
    for cc in incoming {
      steps.append { try $0.simple([cc]) }
    }
  } else {
    for cc in outgoing {
      steps.append { try $0.simple([cc]) }
    }
    let autoLeave = cs.autoLeave
    steps.append { try $0.enterJoint(autoLeave: autoLeave, incoming) }
  }

  // Each step runs against a scratch tracker holding the previous step's result.
  var chg = changer
  var result = (chg.tracker.config, chg.tracker.progress)
  for step in steps {
    result = try step(chg)
    chg.tracker = ProgressTracker(
      maxInflight: changer.tracker.maxInflight, maxInflightBytes: changer.tracker.maxInflightBytes,
      config: result.0, progress: result.1)
  }
  return result
}
