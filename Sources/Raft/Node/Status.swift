/// The part of a node's status that needs no allocation.
public struct BasicStatus: Sendable, Equatable {
  public var id: UInt64
  public var hardState: HardState
  public var softState: SoftState
  public var applied: UInt64
  /// The target of a leadership transfer in progress (`noNode` when none).
  public var leadTransferee: UInt64
}

/// A node's full status: basic state, the active configuration and, on a leader, the progress
/// of every peer (copies: later changes of the node do not show through).
public struct Status: CustomStringConvertible {
  public var basic: BasicStatus
  public var config: TrackerConfig
  /// Empty unless the node is leader.
  public var progress: [UInt64: Progress]

  /// A JSON rendering like etcd-raft's `Status.MarshalJSON`.
  public var description: String {
    var s =
      "{\"id\":\"\(hx(basic.id))\",\"term\":\(basic.hardState.term),\"vote\":\"\(hx(basic.hardState.vote))\","
      + "\"commit\":\(basic.hardState.commit),\"lead\":\"\(hx(basic.softState.lead))\","
      + "\"raftState\":\"\(basic.softState.raftState)\",\"applied\":\(basic.applied),\"progress\":{"
    let ids = progress.keys.sorted()
    for (i, k) in ids.enumerated() {
      let p = progress[k]!
      if i > 0 { s += "," }
      s += "\"\(hx(k))\":{\"match\":\(p.match),\"next\":\(p.next),\"state\":\"\(p.state)\"}"
    }
    s += "},\"leadtransferee\":\"\(hx(basic.leadTransferee))\"}"
    return s
  }
}

extension Raft {
  var basicStatus: BasicStatus {
    BasicStatus(
      id: id, hardState: hardState, softState: softState, applied: raftLog.applied, leadTransferee: leadTransferee)
  }

  var status: Status {
    var progress: [UInt64: Progress] = [:]
    if state == .leader {
      tracker.visit { pid, pr in progress[pid] = pr.clone() }
    }
    return Status(basic: basicStatus, config: tracker.config, progress: progress)
  }
}
