// Message dispatch: the term checks common to every role, then one handler per role.

extension Raft {
  /// Advances the state machine with one message (etcd-raft's `raft.Step`).
  func step(_ m: consuming Message) throws {
    if m.term == 0 {
      // Local message: no term to check.
    } else if m.term > term {
      if m.type == .msgVote || m.type == .msgPreVote {
        let force = m.context == CampaignType.transferContext
        let inLease = checkQuorum && lead != noNode && electionElapsed < electionTimeout
        if !force && inLease {
          // Within the lease of a live leader a vote request neither bumps our term nor gets a
          // vote: this keeps a partitioned node from disrupting the cluster.
          let (li, lt) = raftLog.tip()
          logger.info(
            "\(hx(id)) [logterm: \(lt), index: \(li), vote: \(hx(vote))] ignored \(m.type) from \(hx(m.from)) "
              + "[logterm: \(m.logTerm), index: \(m.index)] at term \(term): lease is not expired "
              + "(remaining ticks: \(electionTimeout - electionElapsed))")
          return
        }
      }
      switch m.type {
      case .msgPreVote:
        break  // A pre-vote never changes our term.
      case .msgPreVoteResp where !m.reject:
        break  // Granted pre-votes carry the term we will campaign for; we bump it on a quorum.
      default:
        logger.info(
          "\(hx(id)) [term: \(term)] received a \(m.type) message with higher term from \(hx(m.from)) [term: \(m.term)]"
        )
        if m.type == .msgApp || m.type == .msgHeartbeat || m.type == .msgSnap {
          becomeFollower(term: m.term, lead: m.from)
        } else {
          becomeFollower(term: m.term, lead: noNode)
        }
      }
    } else if m.term < term {
      if (checkQuorum || preVote) && (m.type == .msgHeartbeat || m.type == .msgApp) {
        // A leader of an older term is talking to us: we may have moved to a higher term while
        // partitioned. Answer so that it learns our term and steps down (with CheckQuorum or
        // PreVote our vote requests alone would not advance its term).
        send(Message(type: .msgAppResp, to: m.from))
      } else if m.type == .msgPreVote {
        // Reject instead of dropping, so that a cluster mixing pre-vote and higher-term
        // candidates cannot deadlock.
        let (li, lt) = raftLog.tip()
        logger.info(
          "\(hx(id)) [logterm: \(lt), index: \(li), vote: \(hx(vote))] rejected \(m.type) from \(hx(m.from)) "
            + "[logterm: \(m.logTerm), index: \(m.index)] at term \(term)")
        send(Message(type: .msgPreVoteResp, to: m.from, term: term, reject: true))
      } else if m.type == .msgStorageAppendResp {
        if m.index != 0 {
          // The entries may have been overwritten in the unstable log in a later term: not
          // stable (see the ABA note at RawNode.storageAppendResponse).
          logger.info(
            "\(hx(id)) [term: \(term)] ignored entry appends from a \(m.type) message with lower term [term: \(m.term)]"
          )
        }
        if let snap = m.snapshot {
          // A snapshot carries committed state: its application stands whatever the term.
          appliedSnapshot(snap)
        }
      } else {
        logger.info(
          "\(hx(id)) [term: \(term)] ignored a \(m.type) message with lower term from \(hx(m.from)) [term: \(m.term)]")
      }
      return
    }

    switch m.type {
    case .msgHup:
      hup(preVote ? .preElection : .election)

    case .msgStorageAppendResp:
      if m.index != 0 { raftLog.stableTo(index: m.index, term: m.logTerm) }
      if let snap = m.snapshot { appliedSnapshot(snap) }

    case .msgStorageApplyResp:
      if let last = m.entries.last {
        appliedTo(last.index, size: raftLog.countsApplyingSize ? entriesSize(m.entries) : 0)
        if maxUncommittedSize != noLimit { reduceUncommittedSize(payloadsSize(m.entries)) }
      }

    case .msgVote, .msgPreVote:
      // We may vote if we already voted for this candidate, if we have not voted and know of no
      // leader in this term, or if this is a pre-vote for a future term...
      let canVote =
        vote == m.from || (vote == noNode && lead == noNode) || (m.type == .msgPreVote && m.term > term)
      // ...and the candidate's log is at least as up to date as ours. Learners vote too: a
      // learner may have been promoted without knowing it yet.
      let (li, lt) = raftLog.tip()
      if canVote && raftLog.isUpToDate(lastIndex: m.index, term: m.logTerm) {
        logger.info(
          "\(hx(id)) [logterm: \(lt), index: \(li), vote: \(hx(vote))] cast \(m.type) for \(hx(m.from)) "
            + "[logterm: \(m.logTerm), index: \(m.index)] at term \(term)")
        // Answer with the message's term, not ours: a pre-vote is for a future term, and a
        // response with our older term would be ignored by the candidate.
        send(Message(type: m.type.voteResponse, to: m.from, term: m.term))
        if m.type == .msgVote {
          electionElapsed = 0
          vote = m.from
        }
      } else {
        logger.info(
          "\(hx(id)) [logterm: \(lt), index: \(li), vote: \(hx(vote))] rejected \(m.type) from \(hx(m.from)) "
            + "[logterm: \(m.logTerm), index: \(m.index)] at term \(term)")
        send(Message(type: m.type.voteResponse, to: m.from, term: term, reject: true))
      }

    default:
      switch state {
      case .leader: try stepLeader(consume m)
      case .candidate, .preCandidate: try stepCandidate(m)
      case .follower: try stepFollower(m)
      }
    }
  }

  // MARK: Leader

  func stepLeader(_ m: consuming Message) throws {
    // Messages that need no progress of the sender.
    switch m.type {
    case .msgBeat:
      bcastHeartbeat()
      return
    case .msgCheckQuorum:
      if !tracker.quorumActive() {
        logger.warning("\(hx(id)) stepped down to follower since quorum is not active")
        becomeFollower(term: term, lead: noNode)
      }
      // Everyone but us starts the next check period inactive.
      let me = id
      tracker.visit { pid, pr in
        if pid != me { pr.recentActive = false }
      }
      return
    case .msgProp:
      try leaderPropose(consume m)
      return
    case .msgReadIndex:
      if tracker.isSingleton() {
        // Only one voter (us): the commit index is already confirmed.
        if let resp = responseToReadIndexRequest(m, readIndex: raftLog.committed) { send(resp) }
        return
      }
      // A new leader does not know the commit index until it commits an entry of its term.
      if !committedEntryInCurrentTerm() {
        pendingReadIndexMessages.append(m)
        return
      }
      sendReadIndexResponse(m)
      return
    case .msgForgetLeader:
      return  // A leader does not forget itself.
    default:
      break
    }

    guard let pr = tracker.progress(of: m.from) else {
      logger.debug("\(hx(id)) no progress available for \(hx(m.from))")
      return
    }
    switch m.type {
    case .msgAppResp:
      handleAppendResponse(m, pr)

    case .msgHeartbeatResp:
      pr.recentActive = true
      pr.msgAppFlowPaused = false
      // Send an append even when the follower is throttled: if every message that filled its
      // inflights was lost, this is how the flow recovers. A follower in probe that is caught
      // up gets an (empty) append too, so that its answer moves it back to replicate.
      if pr.match < raftLog.lastIndex() || pr.state == .probe {
        sendAppend(to: m.from)
      }
      guard readOnly.option == .safe, !m.context.isEmpty else { return }
      guard let acks = readOnly.receiveAck(from: m.from, context: m.context),
        tracker.config.voters.voteResult(acks) == .won
      else { return }
      for rs in readOnly.advance(m) {
        if let resp = responseToReadIndexRequest(rs.request, readIndex: rs.index) { send(resp) }
      }

    case .msgSnapStatus:
      guard pr.state == .snapshot else { return }
      if !m.reject {
        pr.becomeProbe()
        logger.debug("\(hx(id)) snapshot succeeded, resumed sending replication messages to \(hx(m.from)) [\(pr)]")
      } else {
        // Clear the pending snapshot first, or probing would start from its index although it
        // was never applied.
        pr.pendingSnapshot = 0
        pr.becomeProbe()
        logger.debug("\(hx(id)) snapshot failed, resumed sending replication messages to \(hx(m.from)) [\(pr)]")
      }
      // After success wait for the follower's MsgAppResp; after failure wait a heartbeat.
      pr.msgAppFlowPaused = true

    case .msgUnreachable:
      // During optimistic replication an unreachable peer has most likely lost a MsgApp.
      if pr.state == .replicate { pr.becomeProbe() }
      logger.debug("\(hx(id)) failed to send message to \(hx(m.from)) because it is unreachable [\(pr)]")

    case .msgTransferLeader:
      if pr.isLearner {
        logger.debug("\(hx(id)) is learner. Ignored transferring leadership")
        return
      }
      let transferee = m.from
      let last = leadTransferee
      if last != noNode {
        if last == transferee {
          logger.info(
            "\(hx(id)) [term \(term)] transfer leadership to \(hx(transferee)) is in progress, "
              + "ignores request to same node \(hx(transferee))")
          return
        }
        abortLeaderTransfer()
        logger.info("\(hx(id)) [term \(term)] abort previous transferring leadership to \(hx(last))")
      }
      if transferee == id {
        logger.debug("\(hx(id)) is already leader. Ignored transferring leadership to self")
        return
      }
      logger.info("\(hx(id)) [term \(term)] starts to transfer leadership to \(hx(transferee))")
      // The transfer must finish within one election timeout.
      electionElapsed = 0
      leadTransferee = transferee
      if pr.match == raftLog.lastIndex() {
        sendTimeoutNow(to: transferee)
        logger.info(
          "\(hx(id)) sends MsgTimeoutNow to \(hx(transferee)) immediately as \(hx(transferee)) already has up-to-date log"
        )
      } else {
        sendAppend(to: transferee)
      }

    default:
      break
    }
  }

  /// A proposal reaching the leader: validate conf changes, append, replicate.
  func leaderPropose(_ message: consuming Message) throws {
    var m = consume message
    if m.entries.isEmpty { logger.panic("\(hx(id)) stepped empty MsgProp") }
    if tracker.progress(of: id) == nil {
      // We were removed from the configuration while leading: take no new proposals.
      throw RaftError.proposalDropped
    }
    if leadTransferee != noNode {
      logger.debug(
        "\(hx(id)) [term \(term)] transfer leadership to \(hx(leadTransferee)) is in progress; dropping proposal")
      throw RaftError.proposalDropped
    }
    for i in m.entries.indices where m.entries[i].type != .normal {
      let cc: AnyConfChange
      do {
        guard let decoded = try m.entries[i].decodedConfChange() else { continue }
        cc = decoded
      } catch {
        logger.panic("\(hx(id)) proposed a malformed conf change: \(error)")
      }
      let alreadyPending = pendingConfIndex > raftLog.applied
      let alreadyJoint = !tracker.config.voters.outgoing.ids.isEmpty
      let wantsLeaveJoint = cc.asV2.changes.isEmpty
      var failedCheck: String? = nil
      if alreadyPending {
        failedCheck = "possible unapplied conf change at index \(pendingConfIndex) (applied to \(raftLog.applied))"
      } else if alreadyJoint && !wantsLeaveJoint {
        failedCheck = "must transition out of joint config first"
      } else if !alreadyJoint && wantsLeaveJoint {
        failedCheck = "not in joint state; refusing empty conf change"
      }
      if let failed = failedCheck, !disableConfChangeValidation {
        logger.info("\(hx(id)) ignoring conf change \(cc) at config \(tracker.config): \(failed)")
        m.entries[i] = Entry(type: .normal)
      } else {
        pendingConfIndex = raftLog.lastIndex() + UInt64(i) + 1
      }
    }
    // Take the entries out of the message so that appendEntry owns the only reference and
    // stamps term and index in place.
    var ents: [Entry] = []
    swap(&ents, &m.entries)
    if !appendEntry(consume ents) { throw RaftError.proposalDropped }
    bcastAppend()
  }

  // MARK: Candidate

  /// Shared by candidates and pre-candidates; each counts only the responses of its own round.
  func stepCandidate(_ m: consuming Message) throws {
    let myVoteResponse: MessageType = state == .preCandidate ? .msgPreVoteResp : .msgVoteResp
    switch m.type {
    case .msgProp:
      logger.info("\(hx(id)) no leader at term \(term); dropping proposal")
      throw RaftError.proposalDropped
    case .msgApp:
      becomeFollower(term: m.term, lead: m.from)  // m.term == term here
      handleAppendEntries(m)
    case .msgHeartbeat:
      becomeFollower(term: m.term, lead: m.from)
      handleHeartbeat(m)
    case .msgSnap:
      becomeFollower(term: m.term, lead: m.from)
      handleSnapshot(m)
    case myVoteResponse:
      let (granted, rejected, result) = poll(m.from, m.type, granted: !m.reject)
      logger.info("\(hx(id)) has received \(granted) \(m.type) votes and \(rejected) vote rejections")
      switch result {
      case .won:
        if state == .preCandidate {
          campaign(.election)
        } else {
          becomeLeader()
          bcastAppend()
        }
      case .lost:
        // A pre-vote response carries a future term: stay at ours.
        becomeFollower(term: term, lead: noNode)
      case .pending:
        break
      }
    case .msgTimeoutNow:
      logger.debug("\(hx(id)) [term \(term) state \(state)] ignored MsgTimeoutNow from \(hx(m.from))")
    default:
      break
    }
  }

  // MARK: Follower

  /// Where a proposal made on this node goes over the network: the leader, while this node is
  /// a follower that knows one and forwards proposals (`stepFollower`); nil otherwise (the
  /// leader appends it, a candidate drops it, a follower without a leader drops it).
  var proposalForwardTarget: UInt64? {
    state == .follower && lead != noNode && !disableProposalForwarding ? lead : nil
  }

  func stepFollower(_ message: consuming Message) throws {
    var m = message
    switch m.type {
    case .msgProp:
      if lead == noNode {
        logger.info("\(hx(id)) no leader at term \(term); dropping proposal")
        throw RaftError.proposalDropped
      } else if disableProposalForwarding {
        logger.info("\(hx(id)) not forwarding to leader \(hx(lead)) at term \(term); dropping proposal")
        throw RaftError.proposalDropped
      }
      m.to = lead
      send(m)
    case .msgApp:
      electionElapsed = 0
      lead = m.from
      handleAppendEntries(m)
    case .msgHeartbeat:
      electionElapsed = 0
      lead = m.from
      handleHeartbeat(m)
    case .msgSnap:
      electionElapsed = 0
      lead = m.from
      handleSnapshot(m)
    case .msgTransferLeader:
      if lead == noNode {
        logger.info("\(hx(id)) no leader at term \(term); dropping leader transfer msg")
        return
      }
      m.to = lead
      send(m)
    case .msgForgetLeader:
      if readOnly.option == .leaseBased {
        logger.error("ignoring MsgForgetLeader due to ReadOnlyLeaseBased")
        return
      }
      if lead != noNode {
        logger.info("\(hx(id)) forgetting leader \(hx(lead)) at term \(term)")
        lead = noNode
      }
    case .msgTimeoutNow:
      logger.info(
        "\(hx(id)) [term \(term)] received MsgTimeoutNow from \(hx(m.from)) and starts an election to get leadership.")
      // A transfer skips the pre-vote: no partition to recover from.
      hup(.transfer)
    case .msgReadIndex:
      if lead == noNode {
        logger.info("\(hx(id)) no leader at term \(term); dropping index reading msg")
        return
      }
      m.to = lead
      send(m)
    case .msgReadIndexResp:
      if m.entries.count != 1 {
        logger.error(
          "\(hx(id)) invalid format of MsgReadIndexResp from \(hx(m.from)), entries count: \(m.entries.count)")
        return
      }
      readStates.append(ReadState(index: m.index, requestCtx: m.entries[0].data.bytes))
    default:
      break
    }
  }

  // MARK: ReadIndex

  /// Whether the leader has committed an entry of its own term (then its commit index is
  /// known to be current).
  func committedEntryInCurrentTerm() -> Bool {
    raftLog.zeroTermOnOutOfBounds { try raftLog.term(raftLog.committed) } == term
  }

  /// The answer to a read request at `readIndex`: a ReadState for a local request (returns nil),
  /// or a MsgReadIndexResp for a follower's.
  func responseToReadIndexRequest(_ req: Message, readIndex: UInt64) -> Message? {
    if req.from == noNode || req.from == id {
      readStates.append(ReadState(index: readIndex, requestCtx: req.entries[0].data.bytes))
      return nil
    }
    return Message(type: .msgReadIndexResp, to: req.from, index: readIndex, entries: req.entries)
  }

  func releasePendingReadIndexMessages() {
    if pendingReadIndexMessages.isEmpty { return }
    if !committedEntryInCurrentTerm() {
      logger.error("pending MsgReadIndex should be released only after first commit in current term")
      return
    }
    let pending = pendingReadIndexMessages
    pendingReadIndexMessages = []
    for m in pending { sendReadIndexResponse(m) }
  }

  func sendReadIndexResponse(_ m: Message) {
    switch readOnly.option {
    case .safe:
      // Confirm leadership with a round of heartbeats carrying the request's context.
      readOnly.addRequest(index: raftLog.committed, m)
      _ = readOnly.receiveAck(from: id, context: m.entries[0].data.bytes)
      bcastHeartbeat(context: m.entries[0].data.bytes)
    case .leaseBased:
      if let resp = responseToReadIndexRequest(m, readIndex: raftLog.committed) { send(resp) }
    }
  }

  // MARK: Uncommitted size

  /// Accounts for proposed entries; false when they would push the uncommitted tail over the
  /// limit. Empty payloads are always accepted (a new leader's entry, leaving a joint config).
  func increaseUncommittedSize(_ ents: [Entry]) -> Bool {
    // Without a limit nothing is counted (the sizes are never computed).
    if maxUncommittedSize == noLimit { return true }
    let s = payloadsSize(ents)
    if uncommittedSize > 0 && s > 0 && uncommittedSize + s > maxUncommittedSize {
      return false
    }
    uncommittedSize += s
    return true
  }

  func reduceUncommittedSize(_ s: UInt64) {
    // The estimate never exceeds the real size; saturate instead of underflowing.
    uncommittedSize = s > uncommittedSize ? 0 : uncommittedSize - s
  }
}
