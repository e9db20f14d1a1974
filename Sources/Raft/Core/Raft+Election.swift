// Terms, roles, ticks and elections.

extension Raft {
  /// Advances the logical clock by one tick.
  func tick() {
    switch state {
    case .leader: tickHeartbeat()
    case .follower, .candidate, .preCandidate: tickElection()
    }
  }

  /// Followers and candidates: campaign once the randomized election timeout has passed.
  func tickElection() {
    electionElapsed += 1
    if promotable && pastElectionTimeout {
      electionElapsed = 0
      do {
        try step(Message(type: .msgHup, from: id))
      } catch {
        logger.debug("error occurred during election: \(error)")
      }
    }
  }

  /// Leaders: heartbeat every `heartbeatTimeout` ticks; check quorum and give up a stalled
  /// leadership transfer every `electionTimeout` ticks.
  func tickHeartbeat() {
    heartbeatElapsed += 1
    electionElapsed += 1

    if electionElapsed >= electionTimeout {
      electionElapsed = 0
      if checkQuorum {
        do {
          try step(Message(type: .msgCheckQuorum, from: id))
        } catch {
          logger.debug("error occurred during checking sending heartbeat: \(error)")
        }
      }
      if state == .leader && leadTransferee != noNode { abortLeaderTransfer() }
    }

    guard state == .leader else { return }
    if heartbeatElapsed >= heartbeatTimeout {
      heartbeatElapsed = 0
      do {
        try step(Message(type: .msgBeat, from: id))
      } catch {
        logger.debug("error occurred during checking sending heartbeat: \(error)")
      }
    }
  }

  var pastElectionTimeout: Bool { electionElapsed >= randomizedElectionTimeout }

  func resetRandomizedElectionTimeout() {
    randomizedElectionTimeout = electionTimeout + Int.random(in: 0..<electionTimeout, using: &random)
  }

  /// Resets the per-term state; a new term also clears the vote.
  func reset(term newTerm: UInt64) {
    if term != newTerm {
      term = newTerm
      vote = noNode
    }
    lead = noNode
    electionElapsed = 0
    heartbeatElapsed = 0
    resetRandomizedElectionTimeout()
    abortLeaderTransfer()
    tracker.resetVotes()
    let last = raftLog.lastIndex()
    let maxInflight = tracker.maxInflight
    let maxInflightBytes = tracker.maxInflightBytes
    tracker.visit { pid, pr in
      pr.match = pid == id ? last : 0
      pr.next = last + 1
      pr.state = .probe
      pr.pendingSnapshot = 0
      pr.recentActive = false
      pr.msgAppFlowPaused = false
      pr.sentCommit = 0
      pr.inflights = Inflights(size: maxInflight, maxBytes: maxInflightBytes)
    }
    pendingConfIndex = 0
    uncommittedSize = 0
    readOnly = ReadOnly(option: readOnly.option)
  }

  func becomeFollower(term newTerm: UInt64, lead newLead: UInt64) {
    reset(term: newTerm)
    lead = newLead
    state = .follower
    logger.info("\(hx(id)) became follower at term \(term)")
  }

  func becomeCandidate() {
    precondition(state != .leader, "invalid transition [leader -> candidate]")
    reset(term: term + 1)
    vote = id
    state = .candidate
    logger.info("\(hx(id)) became candidate at term \(term)")
  }

  func becomePreCandidate() {
    precondition(state != .leader, "invalid transition [leader -> pre-candidate]")
    // A pre-candidate keeps its term and vote: only the role and the tally change.
    tracker.resetVotes()
    lead = noNode
    state = .preCandidate
    logger.info("\(hx(id)) became pre-candidate at term \(term)")
  }

  func becomeLeader() {
    precondition(state != .follower, "invalid transition [follower -> leader]")
    reset(term: term)
    lead = id
    state = .leader
    // The leader trivially replicates to itself; reset() set its Match to the last index.
    let pr = tracker.progress(of: id)!
    pr.becomeReplicate()
    pr.recentActive = true
    // Any entry of the log may be an unapplied conf change: hold new ones back until the
    // whole current log is applied, rather than scanning it.
    pendingConfIndex = raftLog.lastIndex()
    // The empty entry of the new term has no payload, so it never counts against the
    // uncommitted size limit and cannot be refused.
    if !appendEntry([Entry()]) { logger.panic("empty entry was dropped") }
    logger.info("\(hx(id)) became leader at term \(term)")
  }

  /// Starts an election if this node may.
  func hup(_ t: CampaignType) {
    if state == .leader {
      logger.debug("\(hx(id)) ignoring MsgHup because already leader")
      return
    }
    if !promotable {
      logger.warning("\(hx(id)) is unpromotable and can not campaign")
      return
    }
    if hasUnappliedConfChanges() {
      logger.warning(
        "\(hx(id)) cannot campaign at term \(term) since there are still pending configuration changes to apply")
      return
    }
    logger.info("\(hx(id)) is starting a new election at term \(term)")
    campaign(t)
  }

  /// Whether a committed but unapplied entry is a conf change (the node must not campaign then).
  func hasUnappliedConfChanges() -> Bool {
    if raftLog.applied >= raftLog.committed { return false }
    var lo = raftLog.applied + 1
    let hi = raftLog.committed + 1
    // Page through the range so that a long unapplied tail does not load at once.
    while lo < hi {
      let page: [Entry]
      do {
        page = try raftLog.slice(lo: lo, hi: hi, maxSize: raftLog.maxApplyingEntsSize)
      } catch {
        logger.panic("error scanning unapplied entries [\(lo), \(hi)): \(error)")
      }
      if page.isEmpty { break }
      for e in page where e.type != .normal { return true }
      lo = page[page.count - 1].index + 1
    }
    return false
  }

  /// Becomes (pre-)candidate and asks every voter for its vote.
  func campaign(_ t: CampaignType) {
    if !promotable {
      logger.warning("\(hx(id)) is unpromotable; campaign() should have been called")
    }
    let voteTerm: UInt64
    let voteType: MessageType
    if t == .preElection {
      becomePreCandidate()
      voteType = .msgPreVote
      // Pre-votes are requested for the term we would campaign in.
      voteTerm = term + 1
    } else {
      becomeCandidate()
      voteType = .msgVote
      voteTerm = term
    }
    let (lastIndex, lastTerm) = raftLog.tip()
    for voter in tracker.config.voters.ids.sorted() {
      if voter == id {
        // Our own vote counts once it is durable: it comes back through msgsAfterAppend.
        send(Message(type: voteType.voteResponse, to: voter, term: voteTerm))
        continue
      }
      logger.info(
        "\(hx(id)) [logterm: \(lastTerm), index: \(lastIndex)] sent \(voteType) request to \(hx(voter)) at term \(term)"
      )
      send(
        Message(
          type: voteType, to: voter, term: voteTerm, logTerm: lastTerm, index: lastIndex,
          context: t == .transfer ? CampaignType.transferContext : []))
    }
  }

  /// Records a vote and returns the tally.
  func poll(_ from: UInt64, _ t: MessageType, granted: Bool) -> (granted: Int, rejected: Int, result: VoteResult) {
    if granted {
      logger.info("\(hx(id)) received \(t) from \(hx(from)) at term \(term)")
    } else {
      logger.info("\(hx(id)) received \(t) rejection from \(hx(from)) at term \(term)")
    }
    tracker.recordVote(from, granted: granted)
    return tracker.tallyVotes()
  }

  /// Whether this node may become leader: a voter of the active configuration without a
  /// snapshot waiting to be applied.
  var promotable: Bool {
    guard let pr = tracker.progress(of: id) else { return false }
    return !pr.isLearner && !raftLog.hasNextOrInProgressSnapshot()
  }

  func abortLeaderTransfer() { leadTransferee = noNode }
}
