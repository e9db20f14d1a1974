import Raft

extension EngineCore {
  /// Whether `processReady` has anything to do.
  public func hasReady() -> Bool {
    state == .running && (!waitingBatches.isEmpty || rawNode.hasReady())
  }

  /// Proposes the waiting batches, then hands out one Ready as actions. Sync mode: perform the
  /// actions in order, then call `advance()`. Does nothing when `hasReady()` is false.
  public mutating func processReady(nowNanoseconds now: UInt64) {
    precondition(state != .awaitingAdvance, "EngineCore: processReady before advance (sync mode)")
    guard state == .running else { return }
    proposeWaiting(now: now)
    guard rawNode.hasReady() else { return }
    let rd = rawNode.ready()
    if let soft = rd.softState { softStateChanged(soft) }
    for rs in rd.readStates {
      if let waiter = takeReadWaiter(rs.requestCtx) { actions.append(.answerRead(waiter, .success(rs.index))) }
    }
    switch configuration.readyHandling {
    case .async: handOutAsync(rd, now: now)
    case .sync: handOutSync(rd, now: now)
    }
  }

  /// Sync mode: whether a Ready was handed out and `advance()` must come next.
  public var awaitsAdvance: Bool { state == .awaitingAdvance }

  /// Sync mode: the Ready handed out by `processReady` was performed (persisted, sent,
  /// applied).
  public mutating func advance() {
    switch state {
    case .awaitingAdvance:
      state = .running
      rawNode.advance()
    case .stopped:
      return
    case .running:
      preconditionFailure("EngineCore: advance without a Ready handed out")
    }
  }

  // MARK: Async

  private mutating func handOutAsync(_ rd: Ready, now: UInt64) {
    var remote: [Message] = []
    var toSelf: [Message] = []
    for m in rd.messages {
      switch m.to {
      case localAppendThread: handOutWrite(of: m)
      case localApplyThread: handOutApply(m.entries, responses: m.responses, now: now)
      case id: toSelf.append(m)
      default: remote.append(m)
      }
      if state == .stopped { return }
    }
    if !remote.isEmpty { actions.append(.send(remote)) }
    for m in toSelf { step(m) }
  }

  /// The write of one `MsgStorageAppend`.
  private mutating func handOutWrite(of m: Message) {
    let hs = HardState(term: m.term, vote: m.vote, commit: m.commit)
    let hardState = hs.isEmpty ? nil : hs
    let snapshot = m.snapshot
    var durability = StorageWrite.Durability.sync
    if m.entries.isEmpty, snapshot == nil, let hardState, !mustSync(hardState, lastWrittenHardState, entryCount: 0) {
      durability = .deferred
    }
    emitWrite(
      StorageWrite(
        entries: m.entries, hardState: hardState, snapshot: snapshot, durability: durability, responses: m.responses))
  }

  // MARK: Sync

  private mutating func handOutSync(_ rd: Ready, now: UInt64) {
    let hardState = rd.hardState.isEmpty ? nil : rd.hardState
    let snapshot: Snapshot? = rd.hasSnapshot ? rd.snapshot : nil
    if !rd.entries.isEmpty || hardState != nil || snapshot != nil {
      // MustSync is false when only the commit index moved: no sync of its own (the record
      // joins the next synced write; a lost commit index is recomputed after a restart).
      emitWrite(
        StorageWrite(
          entries: rd.entries, hardState: hardState, snapshot: snapshot,
          durability: rd.mustSync || snapshot != nil ? .sync : .deferred, responses: []))
    }
    if let snapshot { snapshotInstalled(snapshot) }
    var remote: [Message] = []
    for m in rd.messages where m.to != id { remote.append(m) }
    if !remote.isEmpty { actions.append(.send(remote)) }
    handOutApply(rd.committedEntries, responses: [], now: now)
    if state == .running { state = .awaitingAdvance }
  }

  // MARK: Writes

  private mutating func emitWrite(_ write: StorageWrite) {
    var w = write
    if w.durability == .deferred && w.responses.isEmpty {
      // Only the commit index moved and nobody waits for it: nothing to hand the log now (a
      // write and a wake-up of the append side for a record that needs no sync). It rides
      // with the next write; a newer hard state replaces it.
      precondition(w.entries.isEmpty && w.snapshot == nil, "EngineCore: only a lone hard state is deferred")
      heldHardState = w.hardState
      lastWrittenHardState = w.hardState!
      return
    }
    if let held = heldHardState {
      heldHardState = nil
      if w.hardState == nil { w.hardState = held }
    }
    if let hs = w.hardState { lastWrittenHardState = hs }
    if w.responses.contains(where: { $0.type == .msgStorageAppendResp && $0.to == id }) {
      appendResponsesAwaited += 1
    }
    if let s = w.snapshot {
      savedSnapshotIndex = max(savedSnapshotIndex, s.metadata.index)
      compactedThrough = max(compactedThrough, s.metadata.index)
    }
    if configuration.faults.acknowledgeBeforeSync { w.durability = .unsynced }
    actions.append(.write(w))
  }

  // MARK: Proposals

  /// Proposes every waiting batch in one message; each batch waits on its own range.
  mutating func proposeWaiting(now: UInt64) {
    guard !waitingBatches.isEmpty else { return }
    defer { waitingBatches.removeAll(keepingCapacity: true) }
    // The entries go to Raft with their only reference (Raft stamps them in place and the
    // unstable log adopts the array).
    var entries: [Entry] = []
    swap(&entries, &waitingEntries)
    guard rawNode.isLeader else {
      let error = notLeader
      actions.append(.complete(waitingBatches.map { refused($0.completion, error) }))
      return
    }
    register(proposing: consume entries, as: waitingBatches, isConfChange: false, now: now)
  }

  /// Proposes `entries` as one message and registers one record per batch, each taking its
  /// `count` entries in order; when Raft refuses them, every batch fails.
  mutating func register(
    proposing entries: consuming [Entry], as batches: [WaitingBatch], isConfChange: Bool, now: UInt64
  ) {
    let range: ClosedRange<UInt64>?
    do {
      range = try rawNode.propose(entries: consume entries)
    } catch {
      range = nil
    }
    guard let range else {
      actions.append(.complete(batches.map { refused($0.completion, .dropped) }))
      return
    }
    let term = rawNode.term
    var superseded: [ProposalOutcome] = []
    var next = range.lowerBound
    for b in batches {
      let n = UInt64(b.count)
      proposals.append(
        ProposalRing.Record(
          first: next, last: next + n - 1, term: term, isConfChange: isConfChange, completion: b.completion,
          proposedAtNanoseconds: now), superseded: &superseded)
      next += n
    }
    precondition(next == range.upperBound + 1, "EngineCore: the batches do not cover the appended range")
    if !superseded.isEmpty { actions.append(.complete(superseded)) }
  }

  // MARK: Applying

  /// Hands committed entries out for applying: gives their conf changes to Raft (in order, now:
  /// they are committed and durable here), settles the proposal batches they decide, and asks
  /// for a snapshot when one is due.
  mutating func handOutApply(_ entries: [Entry], responses: [Message], now: UInt64) {
    guard let first = entries.first, let last = entries.last else { return }
    precondition(first.index == handedOutIndex + 1, "EngineCore: committed entries handed out with a gap or twice")
    handedOutIndex = last.index
    var confChanges: [CommittedConfChange] = []
    // Looked for in place: copying each entry out would retain and release its payload.
    let confChangeAt = entries.withUnsafeBufferPointer { buf in buf.indices.filter { buf[$0].type != .normal } }
    for k in confChangeAt {
      let e = entries[k]
      let decoded: AnyConfChange?
      do {
        decoded = try e.decodedConfChange()
      } catch {
        fail("committed conf change at index \(e.index) cannot be decoded: \(error)")
        return
      }
      guard let cc = decoded else { continue }
      confState = rawNode.applyConfChange(cc)
      recordConfState(confState, at: e.index)
      if cc.asV2.changes.contains(where: { $0.type == .addNode || $0.type == .addLearnerNode }) { nodeAdded = true }
      confChanges.append(CommittedConfChange(index: e.index, term: e.term, change: cc))
    }
    var completions: [ProposalOutcome] = []
    proposals.resolve(committed: entries, into: &completions)
    var snapshotConfState: ConfState?
    var bytes: UInt64 = 0
    entries.withUnsafeBufferPointer { buf in for e in buf { bytes &+= UInt64(e.data.count) } }
    bytesSinceSnapshot += bytes
    appliedBytesTotal += bytes
    let every = configuration.snapshotEntries
    let everyBytes = configuration.snapshotBytes
    // Marks only matter (and are only trimmed) when snapshots are taken.
    if every > 0 && configuration.compactionRetainBytes > 0 {
      appliedBytesMarks.append((last.index, appliedBytesTotal))
    }
    // `snapshotEntries` 0: never; the byte cadence only adds a trigger.
    if every > 0 && last.index > snapshotPolicyIndex
      && (nodeAdded || last.index >= snapshotPolicyIndex + every
        || (everyBytes > 0 && bytesSinceSnapshot >= everyBytes))
    {
      snapshotPolicyIndex = last.index
      bytesSinceSnapshot = 0
      nodeAdded = false
      snapshotConfState = confState
    }
    actions.append(
      .apply(
        ApplyJob(
          entries: entries, confChanges: confChanges, completions: completions, snapshotConfState: snapshotConfState,
          responses: responses, committedAtNanoseconds: now)))
  }

  // MARK: Snapshots

  /// A leader's snapshot replaces the log: the state machine restores from it after every job
  /// handed out before, and the batches it overtook fail.
  mutating func snapshotInstalled(_ snapshot: Snapshot) {
    let index = snapshot.metadata.index
    precondition(index > handedOutIndex, "EngineCore: a snapshot at \(index) below the applied entries")
    handedOutIndex = index
    confState = snapshot.metadata.confState
    snapshotPolicyIndex = index
    bytesSinceSnapshot = 0
    nodeAdded = false
    appliedBytesMarks.removeAll()
    savedSnapshotIndex = max(savedSnapshotIndex, index)
    compactedThrough = max(compactedThrough, index)
    recordConfState(confState, at: index)
    var overtaken: [ProposalOutcome] = []
    proposals.failThrough(index, into: &overtaken)
    actions.append(.restore(RestoreJob(snapshot: snapshot, completions: overtaken)))
  }

  /// The state machine's snapshot at `index`: saved unless a newer one was handed to the log
  /// meanwhile; the log is compacted `compactionRetainEntries` behind it.
  mutating func saveSnapshot(
    index: UInt64, confState: ConfState, data: [UInt8],
    answers: [@Sendable (Result<UInt64, EngineError>) -> Void] = []
  ) {
    guard index > savedSnapshotIndex else { return }
    savedSnapshotIndex = index
    var through = index > configuration.compactionRetainEntries ? index - configuration.compactionRetainEntries : 0
    through = max(through, retainedByBytes(behind: index))
    var compactThrough: UInt64?
    if through > compactedThrough {
      compactThrough = through
      compactedThrough = through
    }
    while let m = appliedBytesMarks.first, m.index <= compactedThrough { appliedBytesMarks.removeFirst() }
    actions.append(
      .saveSnapshot(
        SnapshotSave(
          index: index, confState: confState, data: data, compactThrough: compactThrough, answers: answers)))
  }

  /// With `compactionRetainBytes`: the index through which to compact so that at most that
  /// many payload bytes of entries stay behind a snapshot at `index` (marks are apply jobs, so
  /// it keeps whole jobs); 0 without it.
  func retainedByBytes(behind index: UInt64) -> UInt64 {
    let retain = configuration.compactionRetainBytes
    guard retain > 0, let at = appliedBytesMarks.last(where: { $0.index <= index }) else { return 0 }
    // The oldest mark after which, up to `index`, at most `retain` bytes remain (`at` itself
    // qualifies: then nothing is kept behind the snapshot). When the oldest mark already
    // qualifies, the bytes do not force a compaction (the count decides).
    for (k, m) in appliedBytesMarks.enumerated() where at.total - m.total <= retain { return k == 0 ? 0 : m.index }
    return at.index
  }

  // MARK: Leadership

  private mutating func softStateChanged(_ soft: SoftState) {
    let target = rawNode.proposalForwardTarget ?? 0
    if target != knownForwardTarget {
      knownForwardTarget = target
      actions.append(.forwardTargetChanged(target == 0 ? nil : target))
    }
    let lead = soft.lead == noNode ? 0 : soft.lead
    guard lead != knownLeader else { return }
    knownLeader = lead
    actions.append(.leaderChanged(leader: lead == 0 ? nil : lead, state: soft.raftState))
    // Read index requests in flight may be lost with the old leader: fail them now.
    failReads(.dropped)
  }

  /// The core cannot go on (a committed entry it cannot apply): it stops, and `failure` says
  /// why.
  mutating func fail(_ why: String) {
    failure = why
    stop(.internalFailure(why))
  }
}
