// Log replication: appending, MsgApp / heartbeat / snapshot sending, and the follower side.

extension Raft {
  /// Appends proposed entries to the leader's log at the current term. The leader acks its own
  /// append through a self-addressed MsgAppResp released once the entries are durable.
  func appendEntry(_ entries: consuming [Entry]) -> Bool {
    var es = consume entries
    let li = raftLog.lastIndex()
    for i in es.indices {
      es[i].term = term
      es[i].index = li + 1 + UInt64(i)
    }
    if !increaseUncommittedSize(es) {
      logger.warning(
        "\(hx(id)) appending new entries to log would exceed uncommitted entry size limit; dropping proposal")
      return false
    }
    let last = raftLog.append(es)
    send(Message(type: .msgAppResp, to: id, index: last))
    return true
  }

  func sendAppend(to: UInt64) { _ = maybeSendAppend(to: to, sendIfEmpty: true) }

  /// Sends a MsgApp with the entries `to` lacks (or a snapshot when they are compacted away).
  /// Returns whether a message was sent. With `sendIfEmpty` false an append without entries
  /// is not sent (it would only carry the commit index).
  @discardableResult
  func maybeSendAppend(to: UInt64, sendIfEmpty: Bool) -> Bool {
    guard let pr = tracker.progress(of: to) else { return false }
    if pr.isPaused { return false }
    // Nothing to send and no empty append wanted: skip the log lookups. (The follower's next
    // is at most lastIndex + 1, so the term lookup below could not fail in this case.)
    if !sendIfEmpty && pr.next > raftLog.lastIndex() { return false }

    let prevIndex = pr.next - 1
    let prevTerm: UInt64
    do {
      prevTerm = try raftLog.term(prevIndex)
    } catch {
      // The log was probably truncated at or after pr.next: the follower can only be caught up
      // with a snapshot.
      return maybeSendSnapshot(to: to, pr)
    }
    var ents: [Entry] = []
    // A throttled follower in replicate only gets empty appends: if all in-flight messages
    // were lost, the empty one still elicits an answer that clears the inflights.
    if pr.state != .replicate || !pr.inflights.full {
      do {
        ents = try raftLog.entries(from: pr.next, maxSize: maxMsgSize)
      } catch {
        if !sendIfEmpty { return false }
        return maybeSendSnapshot(to: to, pr)
      }
    }
    if ents.isEmpty && !sendIfEmpty { return false }

    send(
      Message(
        type: .msgApp, to: to, logTerm: prevTerm, index: prevIndex, entries: ents, commit: raftLog.committed))
    pr.updateOnEntriesSend(entries: ents.count, bytes: payloadsSize(ents), nextIndex: pr.next)
    pr.sentCommit(raftLog.committed)
    return true
  }

  /// Sends the storage's snapshot to a recently active follower.
  func maybeSendSnapshot(to: UInt64, _ pr: Progress) -> Bool {
    if !pr.recentActive {
      logger.debug("ignore sending snapshot to \(hx(to)) since it is not recently active")
      return false
    }
    let snapshot: Snapshot
    do {
      snapshot = try raftLog.snapshot()
    } catch RaftError.snapshotTemporarilyUnavailable {
      logger.debug("\(hx(id)) failed to send snapshot to \(hx(to)) because snapshot is temporarily unavailable")
      return false
    } catch {
      logger.panic("\(hx(id)) failed to read the snapshot: \(error)")
    }
    if snapshot.isEmpty { logger.panic("need non-empty snapshot") }
    let sindex = snapshot.metadata.index
    let sterm = snapshot.metadata.term
    logger.debug(
      "\(hx(id)) [firstindex: \(raftLog.firstIndex()), commit: \(raftLog.committed)] sent snapshot"
        + "[index: \(sindex), term: \(sterm)] to \(hx(to)) [\(pr)]")
    pr.becomeSnapshot(sindex)
    logger.debug("\(hx(id)) paused sending replication messages to \(hx(to)) [\(pr)]")
    send(Message(type: .msgSnap, to: to, snapshot: snapshot))
    return true
  }

  /// Sends a heartbeat. The commit index it carries is capped at the follower's match: a
  /// follower must never commit past what it is known to share with the leader.
  func sendHeartbeat(to: UInt64, context: [UInt8]) {
    let pr = tracker.progress(of: to)!
    let commit = min(pr.match, raftLog.committed)
    send(Message(type: .msgHeartbeat, to: to, commit: commit, context: context))
    pr.sentCommit(commit)
  }

  /// Sends appends to every peer that is not known to be up to date.
  func bcastAppend() {
    let me = id
    tracker.visit { pid, _ in
      if pid != me { sendAppend(to: pid) }
    }
  }

  /// Heartbeats every peer, carrying the latest pending ReadIndex context.
  func bcastHeartbeat() {
    bcastHeartbeat(context: readOnly.lastPendingRequestContext ?? [])
  }

  func bcastHeartbeat(context: [UInt8]) {
    let me = id
    tracker.visit { pid, _ in
      if pid != me { sendHeartbeat(to: pid, context: context) }
    }
  }

  /// Records application progress; a leader whose joint configuration is to be left
  /// automatically proposes the leave once the change is applied.
  func appliedTo(_ index: UInt64, size: UInt64) {
    let newApplied = max(index, raftLog.applied)
    raftLog.appliedTo(newApplied, size: size)

    if tracker.config.autoLeave && newApplied >= pendingConfIndex && state == .leader {
      // An empty ConfChangeV2 leaves the joint configuration; its payload is empty, so the
      // size limit cannot refuse it (a leadership transfer can, and we retry on the next apply).
      let (type, data) = AnyConfChange.v2(ConfChangeV2()).entryPayload()
      let m = Message(type: .msgProp, entries: [Entry(type: type, data: data)])
      do {
        try step(m)
        logger.info("initiating automatic transition out of joint configuration \(tracker.config)")
      } catch {
        logger.debug("not initiating automatic transition out of joint configuration \(tracker.config): \(error)")
      }
    }
  }

  func appliedSnapshot(_ snap: Snapshot) {
    let index = snap.metadata.index
    raftLog.stableSnapTo(index)
    appliedTo(index, size: 0)
  }

  /// Advances the commit index to what a quorum has matched, if that is an entry of this term.
  func maybeCommit() -> Bool {
    raftLog.maybeCommit(maxIndex: tracker.committed(), term: term)
  }

  // MARK: Leader: responses

  func handleAppendResponse(_ m: Message, _ pr: Progress) {
    pr.recentActive = true
    if m.reject {
      logger.debug(
        "\(hx(id)) received MsgAppResp(rejected, hint: (index \(m.rejectHint), term \(m.logTerm))) "
          + "from \(hx(m.from)) for index \(m.index)")
      // Fast backtracking: the follower told us where its log may match (rejectHint) and its
      // term there (logTerm). Any of our indexes whose term is above that term cannot match
      // either, so skip to the last index with a term <= logTerm: at most one probe per term.
      var nextProbeIndex = m.rejectHint
      if m.logTerm > 0 {
        nextProbeIndex = raftLog.findConflictByTerm(index: m.rejectHint, term: m.logTerm).index
      }
      if pr.maybeDecrTo(rejected: m.index, matchHint: nextProbeIndex) {
        logger.debug("\(hx(id)) decreased progress of \(hx(m.from)) to [\(pr)]")
        if pr.state == .replicate { pr.becomeProbe() }
        sendAppend(to: m.from)
      }
      return
    }

    // Within a term the leader's log only grows, so no honest follower acknowledges past its
    // end: such an ack is malformed (and would overflow next = index + 1).
    guard m.index <= raftLog.lastIndex() else {
      logger.warning(
        "\(hx(id)) ignored MsgAppResp from \(hx(m.from)) acknowledging index \(m.index) beyond the last index \(raftLog.lastIndex())"
      )
      return
    }
    // Update on a new match, or when an ack at the current match can move a probing follower
    // back to replicate (a snapshot follower needs a real match past the log's start).
    guard pr.maybeUpdate(m.index) || (pr.match == m.index && pr.state == .probe) else { return }
    switch pr.state {
    case .probe:
      pr.becomeReplicate()
    case .snapshot where pr.match + 1 >= raftLog.firstIndex():
      // Whatever index the snapshot was actually applied at, the follower can now be caught up
      // from the log. Go through probe so the snapshot is accounted for, then replicate.
      logger.debug(
        "\(hx(id)) recovered from needing snapshot, resumed sending replication messages to \(hx(m.from)) [\(pr)]")
      pr.becomeProbe()
      pr.becomeReplicate()
    case .replicate:
      pr.inflights.freeLE(m.index)
    default:
      break
    }

    if maybeCommit() {
      // The commit index moved within our term: pending reads can be answered.
      releasePendingReadIndexMessages()
      bcastAppend()
    } else if id != m.from && pr.canBumpCommit(raftLog.committed) {
      // The follower may be missing the latest commit index: tell it now rather than with the
      // next heartbeat.
      sendAppend(to: m.from)
    }
    // Flow control may now allow several messages (probe -> replicate, or freed inflights):
    // send as many as we can, without empty ones.
    if id != m.from {
      while maybeSendAppend(to: m.from, sendIfEmpty: false) {}
    }
    if m.from == leadTransferee && pr.match == raftLog.lastIndex() {
      logger.info("\(hx(id)) sent MsgTimeoutNow to \(hx(m.from)) after received MsgAppResp")
      sendTimeoutNow(to: m.from)
    }
  }

  func sendTimeoutNow(to: UInt64) { send(Message(type: .msgTimeoutNow, to: to)) }

  // MARK: Follower side

  func handleAppendEntries(_ m: Message) {
    if m.index < raftLog.committed {
      send(Message(type: .msgAppResp, to: m.from, index: raftLog.committed))
      return
    }
    if let lastNew = raftLog.maybeAppend(index: m.index, logTerm: m.logTerm, committed: m.commit, entries: m.entries) {
      send(Message(type: .msgAppResp, to: m.from, index: lastNew))
      return
    }
    logger.debug(
      "\(hx(id)) [logterm: \(raftLog.zeroTermOnOutOfBounds { try raftLog.term(m.index) }), index: \(m.index)] "
        + "rejected MsgApp [logterm: \(m.logTerm), index: \(m.index)] from \(hx(m.from))")
    // Hint where our log may match the leader's: the last index <= m.index whose term is <= the
    // MsgApp's logTerm. This skips our whole uncommitted tail of higher terms at once.
    let hint = raftLog.findConflictByTerm(index: min(m.index, raftLog.lastIndex()), term: m.logTerm)
    send(
      Message(
        type: .msgAppResp, to: m.from, logTerm: hint.term, index: m.index, reject: true, rejectHint: hint.index))
  }

  func handleHeartbeat(_ m: Message) {
    raftLog.commitTo(m.commit)
    send(Message(type: .msgHeartbeatResp, to: m.from, context: m.context))
  }

  func handleSnapshot(_ m: Message) {
    let s = m.snapshot ?? Snapshot()
    let sindex = s.metadata.index
    let sterm = s.metadata.term
    if restore(s) {
      logger.info("\(hx(id)) [commit: \(raftLog.committed)] restored snapshot [index: \(sindex), term: \(sterm)]")
      send(Message(type: .msgAppResp, to: m.from, index: raftLog.lastIndex()))
    } else {
      logger.info("\(hx(id)) [commit: \(raftLog.committed)] ignored snapshot [index: \(sindex), term: \(sterm)]")
      send(Message(type: .msgAppResp, to: m.from, index: raftLog.committed))
    }
  }
}
