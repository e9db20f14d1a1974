import Logging
import Raft

extension Node {
  /// The run loop: drains the inbox, feeds the core, ticks, hands out the Readys and performs
  /// the core's actions. Reads the clock once when it wakes and once after the Readys.
  func run() {
    // Inputs this thread produces itself (completions that propose again) skip the inbox.
    let local = LocalInputs(node: ObjectIdentifier(threadsToken))
    LocalInputs.installed(local) { runLoop(local) }
  }

  private func runLoop(_ local: LocalInputs) {
    let tickNanoseconds = UInt64(configuration.tickMicroseconds) * 1000
    var now = EngineClock.nanoseconds()
    var nextTick = now &+ tickNanoseconds
    var inputs: [Input] = []
    /// Inputs the last turn took (how loaded the node is: it sets how long the loop polls).
    var lastTurnInputs = 0
    let spinBudget = SpinBudget.shared
    var work = Work()
    var failure: EngineError?
    loop: while true {
      inputs.removeAll(keepingCapacity: true)
      if !local.inputs.isEmpty { swap(&inputs, &local.inputs) }
      // Inputs of our own already: take what else is queued, without waiting.
      let timeout = !inputs.isEmpty ? 0 : (nextTick > now ? nextTick - now : 0)
      // A worker's answer is due within a disk sync: poll for it rather than park (when a core
      // is free; under load with more engine threads than cores, only about a wake-up's cost);
      // with nothing outstanding, park at once.
      let spin =
        !core.awaitsWorkers
        ? 0
        : spinBudget.pollNanoseconds(
          afterTurnOf: max(inputs.count, lastTurnInputs), configuration.spinNanoseconds,
          loaded: configuration.loadedSpinNanoseconds)
      inbox.take(into: &inputs, timeoutNanoseconds: timeout, spinNanoseconds: spin)
      lastTurnInputs = inputs.count
      now = EngineClock.nanoseconds()
      if !inputs.isEmpty { metrics.inboxDepth.record(inputs.count) }
      for (k, input) in inputs.enumerated() {
        switch feed(input, now: now) {
        case .goOn: continue
        case .stop: break
        case .fail(let why): failure = why
        }
        abandon(inputs[(k + 1)...], failure ?? .stopped)
        break loop
      }
      if now >= nextTick {
        core.tick()
        nextTick = max(nextTick &+ tickNanoseconds, now)
      }
      do {
        let readies = try drive(&work, now: now)
        if readies > 0 { metrics.readyHandling.recordNanoseconds(Int64(EngineClock.nanoseconds() &- now)) }
      } catch {
        failure = EngineError(storageError: error)
        break
      }
      if let why = core.failure {
        failure = .internalFailure(why)
        break
      }
    }
    core.stop(failure ?? .stopped)
    do {
      _ = try drive(&work, now: now)
    } catch {
      logger.error("performing the last actions failed", metadata: ["error": "\(error)"])
    }
    if let failure {
      logger.error("node stopped", metadata: ["error": "\(failure)"])
      failed.withLock { $0 = failure }
      hasFailed.store(true, ordering: .releasing)
      knownLeader.store(0, ordering: .relaxed)
      forwardTarget.store(0, ordering: .relaxed)
      configuration.onFailure?(failure)
    }
    loopEnded = true
  }

  /// What the loop does after an input.
  private enum Next {
    case goOn
    case stop
    /// Stop: the storage failed, or an invariant broke.
    case fail(EngineError)
  }

  /// Hands one input to the core.
  private func feed(_ input: Input, now: UInt64) -> Next {
    switch input {
    case .propose(let payloads, let completion): core.propose(payloads, completion: completion)
    case .proposeOne(let payload, let completion): core.propose(entry: payload, completion: completion)
    case .proposeConfChange(let cc, let completion):
      core.proposeConfChange(cc, completion: completion, nowNanoseconds: now)
    case .forward(let proposal, let handedOff): core.forward(proposal, handedOff: handedOff)
    case .peer(let m):
      peerInputsQueued.queued.subtract(1, ordering: .relaxed)
      core.stepFromPeer(m)
    case .local(let responses): for m in responses { core.step(m) }
    case .applied(let outcomes): for o in outcomes { core.applied(o) }
    case .campaign: core.campaign()
    case .transferLeader(let t): core.transferLeadership(to: t)
    case .readIndex(let context, let completion): core.readIndex(context: context, completion: completion)
    case .cancelReadIndex(let context): core.cancelReadIndex(context: context)
    case .forgetLeader: core.forgetLeader()
    case .reportUnreachable(let p): core.reportUnreachable(p)
    case .reportSnapshot(let p, let st): core.reportSnapshot(p, status: st)
    case .status(let reply): core.status(reply)
    case .compact(let index, let data, let completion): core.compact(through: index, data: data, completion: completion)
    case .failed(let why): return .fail(why)
    case .stop: return .stop
    }
    return .goOn
  }

  /// Buffers the run loop reuses: the core's actions, and the jobs for the workers (handed
  /// over in one push each per turn).
  struct Work {
    var actions: [EngineCore.Action] = []
    /// For the append worker (with one storage thread, the apply jobs too, in order).
    var appendJobs: [StorageJob] = []
    /// For the apply worker, when there is one.
    var applyJobs: [StorageJob] = []
  }

  /// Performs the core's pending actions, then hands out every Ready; returns how many.
  private func drive(_ work: inout Work, now: UInt64) throws -> Int {
    try perform(&work, now: now)
    var readies = 0
    while core.hasReady() {
      core.processReady(nowNanoseconds: now)
      try perform(&work, now: now)
      if core.awaitsAdvance { core.advance() }
      readies += 1
    }
    if !work.appendJobs.isEmpty {
      appendWorker!.queue.push(contentsOf: work.appendJobs)
      work.appendJobs.removeAll(keepingCapacity: true)
    }
    if !work.applyJobs.isEmpty {
      applyWorker!.queue.push(contentsOf: work.applyJobs)
      work.applyJobs.removeAll(keepingCapacity: true)
    }
    return readies
  }

  /// Performs the core's actions in order, and those they lead to (sync mode: an apply outcome
  /// fed back may ask for a snapshot save).
  private func perform(_ work: inout Work, now: UInt64) throws {
    let sync = configuration.readyHandling == .sync
    while true {
      core.takeActions(into: &work.actions)
      if work.actions.isEmpty { return }
      for (k, action) in work.actions.enumerated() {
        do {
          try perform(action, &work, now: now, sync: sync)
        } catch {
          // Sync mode: the storage failed. What the failed action and those after it owe their
          // callers is answered here (the node stops next), so nobody waits for its deadline.
          answerAbandoned(work.actions[k...], EngineError(storageError: error))
          work.actions.removeAll(keepingCapacity: true)
          throw error
        }
      }
      work.actions.removeAll(keepingCapacity: true)
    }
  }

  /// Performs one action of the core.
  private func perform(_ action: EngineCore.Action, _ work: inout Work, now: UInt64, sync: Bool) throws {
    switch action {
    case .write(let w):
      if sync { try AppendStage.writeNow(w, to: storage) } else { work.appendJobs.append(.write(w)) }
    case .send(let messages):
      transport.send(messages)
    case .apply(let job):
      if sync {
        core.applied(applier.apply(job, now: EngineClock.nanoseconds))
      } else if applyWorker == nil {
        work.appendJobs.append(.apply(job))
      } else {
        work.applyJobs.append(.apply(job))
      }
    case .restore(let job):
      if sync {
        core.applied(applier.restore(job))
      } else if applyWorker == nil {
        work.appendJobs.append(.restore(job))
      } else {
        work.applyJobs.append(.restore(job))
      }
    case .saveSnapshot(let s):
      if sync {
        try storage.save(s)  // (a failure is answered by `answerAbandoned`)
        s.answerSaved()
      } else {
        work.appendJobs.append(.save(s))
      }
      logger.debug("snapshot taken", metadata: ["index": "\(s.index)"])
    case .complete, .answerRead, .answerCompaction, .handOff, .reportStatus:
      action.answerCaller()
    case .leaderChanged(let leader, let state):
      knownLeader.store(leader ?? 0, ordering: .relaxed)
      logger.info("leader changed", metadata: ["leader": "\(leader ?? 0)", "state": "\(state)"])
      configuration.onLeaderChange?(LeaderChange(leader: leader, term: core.rawNode.term))
    case .refusePeer(let peer, let type, let refusal):
      refusedPeerMessage(from: peer, type: type, refusal, now: now)
    case .answerDroppedForward(let to, let entries):
      let tagBytes = configuration.forwardTagBytes
      let tags = entries.filter { $0.type == .normal }.map { e in
        Entry(data: Payload(copying: e.data.prefix(tagBytes)))
      }
      if !tags.isEmpty {
        transport.send([Message(type: .msgProp, to: to, from: id, entries: tags, reject: true)])
      }
    case .forwardDropped(let tags):
      configuration.onForwardDropped?(tags)
    case .forwardTargetChanged(let target):
      forwardTarget.store(target ?? 0, ordering: .relaxed)
    }
  }

  /// Answers the callers of actions that will not be performed (the storage failed under
  /// them): outcomes already decided go out as they are, entries committed but not applied
  /// here have an unknown outcome for their proposers, the rest fail with `error`.
  private func answerAbandoned(_ actions: ArraySlice<EngineCore.Action>, _ error: EngineError) {
    for action in actions {
      switch action {
      case .apply(let job): StorageJob.apply(job).abandon(error)
      case .restore(let job): StorageJob.restore(job).abandon(error)
      case .saveSnapshot(let s): StorageJob.save(s).abandon(error)
      case .complete(let outcomes): for o in outcomes { o.deliver() }
      case .answerRead(let completion, _): completion(.failure(error))
      case .answerCompaction(let completion, _): completion(.failure(error))
      case .handOff(let handedOff, _): handedOff(error)
      case .reportStatus(let reply, let status): reply(status)
      case .write, .send, .leaderChanged, .forwardTargetChanged, .refusePeer, .answerDroppedForward, .forwardDropped:
        break
      }
    }
  }
}

extension Node {
  /// A peer's message was refused at the core's boundary: counted, logged (at most one line a
  /// second), and the peer's connections closed (not for a term that only leads too far: the
  /// message is well formed, and may come from a member an attacker pushed ahead, which must
  /// keep talking to this one while the gap closes).
  func refusedPeerMessage(from peer: UInt64, type: MessageType, _ refusal: PeerMessageRefusal, now: UInt64) {
    metrics.peerMessagesRefused[refusal.kind]?.increment()
    if let heldBack = refusalLog.admit(now: now) {
      logger.warning(
        "refused a message from a peer",
        metadata: [
          "peer": "\(peer)", "type": "\(type)", "kind": "\(refusal.kind.rawValue)", "reason": "\(refusal.reason)",
          "refusedSinceLastLine": "\(heldBack)",
        ])
    }
    if refusal.catchUpTerm == nil { transport.disconnect(peer: peer) }
  }
}
