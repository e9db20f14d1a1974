/// The leader's view of one follower or learner (etcd-raft's `tracker.Progress`, in its
/// mid-2023 form with `MsgAppFlowPaused`).
///
/// The state machine is probe → replicate → (snapshot → probe)…; most transitions are driven
/// from the leader's message handling, which calls the methods below.
public final class Progress: CustomStringConvertible {
  /// Highest log index known to match the leader's log. Invariant: `match < next`.
  @exclusivity(unchecked) public var match: UInt64
  /// Index of the next entry to send. Entries in `(match, next)` are in flight.
  @exclusivity(unchecked) public var next: UInt64
  /// How the leader currently talks to this follower.
  @exclusivity(unchecked) public var state: ProgressState = .probe
  /// In `.snapshot`: the leader's last index when it decided a snapshot was needed (the index of
  /// the snapshot it sent). Zero otherwise.
  @exclusivity(unchecked) public var pendingSnapshot: UInt64 = 0
  /// Whether the follower has been heard from recently (reset by check-quorum each election
  /// timeout; always true for the leader itself).
  @exclusivity(unchecked) public var recentActive: Bool
  /// Whether sending appends is paused: in `.probe` after a probe was sent and until the follower
  /// answers (or a heartbeat response arrives); in `.replicate` while the inflights window is
  /// full.
  @exclusivity(unchecked) public var msgAppFlowPaused: Bool = false
  /// The highest commit index sent to the follower (in a MsgApp or heartbeat). It may regress
  /// when the flow is reset (probe, rejection). Invariant: in StateSnapshot,
  /// sentCommit == pendingSnapshot == next - 1.
  @exclusivity(unchecked) public internal(set) var sentCommit: UInt64 = 0
  /// The window of unacknowledged appends (used in `.replicate`).
  @exclusivity(unchecked) public var inflights: Inflights
  /// Whether this peer is a learner (tracked, but not voting).
  @exclusivity(unchecked) public var isLearner: Bool

  /// A follower in `.probe` state.
  public init(
    match: UInt64 = 0, next: UInt64, inflights: Inflights, isLearner: Bool = false, recentActive: Bool = false
  ) {
    self.match = match
    self.next = next
    self.inflights = inflights
    self.isLearner = isLearner
    self.recentActive = recentActive
  }

  /// A deep copy, including the inflights window.
  public func clone() -> Progress {
    let copy = Progress(
      match: match, next: next, inflights: inflights.clone(), isLearner: isLearner, recentActive: recentActive)
    copy.state = state
    copy.pendingSnapshot = pendingSnapshot
    copy.msgAppFlowPaused = msgAppFlowPaused
    copy.sentCommit = sentCommit
    return copy
  }

  /// Moves to `state`, clearing the pause flag, the pending snapshot and the inflights window.
  public func resetState(_ state: ProgressState) {
    msgAppFlowPaused = false
    pendingSnapshot = 0
    self.state = state
    inflights.reset()
  }

  /// Moves to `.probe`. Next restarts after `match`, or after the pending snapshot when coming
  /// from `.snapshot` (the snapshot is then known to have been delivered).
  public func becomeProbe() {
    if state == .snapshot {
      let snapshotIndex = pendingSnapshot
      resetState(.probe)
      next = max(match + 1, snapshotIndex + 1)
    } else {
      resetState(.probe)
      next = match + 1
    }
    sentCommit = min(sentCommit, next - 1)
  }

  /// Moves to `.replicate`, restarting right after `match`.
  public func becomeReplicate() {
    resetState(.replicate)
    next = match + 1
    sentCommit = min(sentCommit, next - 1)
  }

  /// Moves to `.snapshot`, waiting for the snapshot at `snapshotIndex` to be applied.
  public func becomeSnapshot(_ snapshotIndex: UInt64) {
    resetState(.snapshot)
    pendingSnapshot = snapshotIndex
    next = snapshotIndex + 1
    sentCommit = snapshotIndex
  }

  /// Whether sending commit index `index` may advance the follower's commit index: only when
  /// it is above what was already sent and what was sent does not already reach `next - 1`.
  public func canBumpCommit(_ index: UInt64) -> Bool {
    index > sentCommit && sentCommit < next - 1
  }

  /// Records that commit index `commit` was sent to the follower.
  public func sentCommit(_ commit: UInt64) {
    sentCommit = commit
  }

  /// Accounts for an append of `entries` entries (`bytes` of payload) starting at `nextIndex`
  /// being sent. In `.replicate` the entries join the inflights window and `next` moves past
  /// them, pausing when the window is full; in `.probe` a non-empty append pauses until the
  /// follower answers. Must not be called in `.snapshot`.
  public func updateOnEntriesSend(entries: Int, bytes: UInt64, nextIndex: UInt64) {
    switch state {
    case .replicate:
      if entries > 0 {
        let last = nextIndex + UInt64(entries) - 1
        optimisticUpdate(last)
        inflights.add(last, bytes: bytes)
      }
      // A full window makes this message the last one until acknowledgements free space.
      msgAppFlowPaused = inflights.full
    case .probe:
      if entries > 0 { msgAppFlowPaused = true }
    case .snapshot:
      preconditionFailure("sending append in unhandled state \(state)")
    }
  }

  /// Handles an acknowledgement of index `n`. Returns false (and changes only `next`, which never
  /// goes down) when `n` is not above `match`, i.e. the acknowledgement is stale. A fresh
  /// acknowledgement raises `match` and lifts the pause.
  public func maybeUpdate(_ n: UInt64) -> Bool {
    var updated = false
    if match < n {
      match = n
      updated = true
      msgAppFlowPaused = false
    }
    next = max(next, n + 1)
    return updated
  }

  /// Moves `next` past `n`, assuming the entries up to `n` were sent (pipelining in
  /// `.replicate`).
  public func optimisticUpdate(_ n: UInt64) {
    next = n + 1
  }

  /// Handles a rejection of the append at index `rejected`, with the follower's hint of where
  /// its log may match (`matchHint`). Returns false when the rejection is stale: in
  /// `.replicate` if `rejected <= match`, otherwise if it is not about the last probe
  /// (`next - 1`). Otherwise `next` moves back (to `match + 1` in `.replicate`, towards the hint
  /// otherwise) and probing resumes.
  public func maybeDecrTo(rejected: UInt64, matchHint: UInt64) -> Bool {
    if state == .replicate {
      // Everything up to match was acknowledged, so such a rejection is out of date.
      if rejected <= match { return false }
      next = match + 1
      // The commit index sent with the rejected messages was most likely not applied.
      sentCommit = min(sentCommit, next - 1)
      return true
    }
    // Outside replicate only one append is outstanding, the one at next - 1.
    if next - 1 != rejected { return false }
    // Go back to just after the hint, but never past the rejected index, and never to or below
    // match (invariant: match < next). Written so that a hint of UInt64.max cannot overflow.
    next = max(matchHint < rejected ? matchHint + 1 : rejected, match + 1)
    sentCommit = min(sentCommit, next - 1)
    msgAppFlowPaused = false
    return true
  }

  /// Whether the leader should hold back appends to this follower: while the flow is paused in
  /// `.probe` / `.replicate`, and always in `.snapshot`.
  public var isPaused: Bool {
    switch state {
    case .probe, .replicate: return msgAppFlowPaused
    case .snapshot: return true
    }
  }

  /// etcd's format, e.g. `StateReplicate match=11 next=15 learner paused pendingSnap=3 inactive
  /// inflight=3[full]` (optional parts only when they apply).
  public var description: String {
    var s = "\(state) match=\(match) next=\(next)"
    if isLearner { s += " learner" }
    if isPaused { s += " paused" }
    if pendingSnapshot > 0 { s += " pendingSnap=\(pendingSnapshot)" }
    if !recentActive { s += " inactive" }
    if inflights.count > 0 {
      s += " inflight=\(inflights.count)"
      if inflights.full { s += "[full]" }
    }
    return s
  }
}

/// The progress of every tracked peer, by id.
public typealias ProgressMap = [UInt64: Progress]

/// One line per peer in ascending id order, `ID: <progress description>`, each ending with `\n`
/// (etcd's `ProgressMap.String`).
public func describeProgressMap(_ m: ProgressMap) -> String {
  var out = ""
  for id in m.keys.sorted() {
    out += "\(id): \(m[id]!)\n"
  }
  return out
}
