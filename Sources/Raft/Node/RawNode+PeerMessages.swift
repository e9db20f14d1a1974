// What a peer's message must satisfy before it reaches Raft: everything that would make the
// algorithm panic (as etcd-raft does: it trusts its peers), make the storage refuse the write it
// leads to, or push the term where the cluster can no longer elect.

/// Limits on what a peer may send.
public struct PeerMessageLimits: Sendable {
  /// Terms up to here move freely, as in etcd-raft. A cluster electing a leader every
  /// millisecond takes 146 million years to get here, so no honest cluster ever does; and the
  /// 2^62 terms above leave room for as many elections after an attacker pushed the terms up.
  public static let termFreeMax: UInt64 = 1 << 62
  /// Above `termFreeMax`, a message's term may lead `max(the receiver's term, termFreeMax)` by at
  /// most this much: an attacker must send 2^46 messages to climb to the end of the term space,
  /// where `term + 1` would not exist and the cluster could no longer elect. A receiver that
  /// refuses a term for leading too far moves its own term up by this much instead
  /// (`catchUpTerm`), so that members pushed apart by an attacker close the gap again, one
  /// message at a time, once it is gone.
  public static let termStepMax: UInt64 = 1 << 16

  /// The largest encoded entry (`RaftCodec.encodedSize`) the log stores: a larger one from a
  /// peer would make the storage refuse the write.
  public let entryBytesMax: Int
  /// The largest payload an entry may carry whatever its other fields: `entryBytesMax` less an
  /// entry's fields at their widest and the longest length prefix of its data. (A payload up to
  /// here needs no exact size; the largest proposal the engine takes.)
  public let payloadBytesMax: Int

  public init(entryBytesMax: Int = .max) {
    self.entryBytesMax = entryBytesMax
    let overhead = RaftCodec.encodedSize(Entry(term: .max, index: .max, type: .confChangeV2)) + 10
    payloadBytesMax = entryBytesMax == .max ? .max : max(0, entryBytesMax - overhead)
  }
}

/// Why a peer's message was refused.
public struct PeerMessageRefusal: Error, Sendable, Equatable, CustomStringConvertible {
  /// The kinds of refusal (a metric label each).
  public enum Kind: String, Sendable, CaseIterable {
    /// A term that would wedge the cluster, or a term missing where one belongs.
    case term
    /// A message type that never travels between peers, or fields it never carries.
    case malformed
    /// Entries that are not consecutive after the message's index, whose terms go back, or
    /// that the log cannot store.
    case entries
    /// A commit index beyond the receiver's log.
    case commit
    /// A conf change that does not decode, or that the configuration cannot take.
    case confChange
    /// A snapshot whose metadata does not fit (no voters, a configuration that cannot be
    /// restored, a term above the message's).
    case snapshot
  }

  public var kind: Kind
  public var reason: String
  /// For a term that leads too far: the term the receiver moves to instead (`catchUpTerm`).
  public var catchUpTerm: UInt64?

  public init(_ kind: Kind, _ reason: String) {
    self.kind = kind
    self.reason = reason
  }

  public var description: String { reason }
}

extension RawNode {
  /// Checks a message from peer `m.from` against this node's state: nil when Raft may step it,
  /// or why it must be dropped. Every message an honest peer sends passes, whatever it is
  /// delayed by or reordered with; what fails would make Raft panic, the storage refuse a
  /// write, or the cluster stop electing.
  public func refusal(ofPeerMessage m: Message, limits: PeerMessageLimits) -> PeerMessageRefusal? {
    let r = raft
    if m.from == noNode { return PeerMessageRefusal(.malformed, "a message from node 0") }
    if !m.responses.isEmpty { return PeerMessageRefusal(.malformed, "\(m.type) carrying responses") }

    // Terms: proposals and read requests travel without one; everything else has one.
    switch m.type {
    case .msgProp, .msgReadIndex:
      if m.term != 0 { return PeerMessageRefusal(.term, "\(m.type) with term \(m.term) (forwarded ones have none)") }
    case .msgApp, .msgAppResp, .msgVote, .msgVoteResp, .msgPreVote, .msgPreVoteResp, .msgSnap, .msgHeartbeat,
      .msgHeartbeatResp, .msgTransferLeader, .msgTimeoutNow, .msgReadIndexResp:
      if m.term == 0 { return PeerMessageRefusal(.term, "\(m.type) without a term") }
      let floor = max(r.term, PeerMessageLimits.termFreeMax)
      if m.term > floor, m.term - floor > PeerMessageLimits.termStepMax {
        var refusal = PeerMessageRefusal(
          .term,
          "\(m.type) at term \(m.term): above \(PeerMessageLimits.termFreeMax), a term may lead ours (\(r.term)) "
            + "by at most \(PeerMessageLimits.termStepMax)")
        refusal.catchUpTerm = floor + PeerMessageLimits.termStepMax
        return refusal
      }
    default:
      return PeerMessageRefusal(.malformed, "\(m.type) does not travel between peers")
    }

    switch m.type {
    case .msgApp:
      if m.logTerm > m.term {
        return PeerMessageRefusal(
          .entries, "MsgApp whose previous entry's term \(m.logTerm) is above its term \(m.term)")
      }
      return refusal(ofEntries: m.entries, after: m.index, termAtLeast: m.logTerm, termAtMost: m.term, limits: limits)
    case .msgHeartbeat:
      let last = r.raftLog.lastIndex()
      if m.commit > last {
        return PeerMessageRefusal(.commit, "MsgHeartbeat committing \(m.commit), beyond our last index \(last)")
      }
    case .msgProp:
      if m.entries.isEmpty { return PeerMessageRefusal(.entries, "MsgProp without entries") }
      var firstConfChange = true
      for e in m.entries {
        if let refusal = refusal(ofSize: e, limits: limits) { return refusal }
        guard e.type != .normal else { continue }
        let cc: AnyConfChange
        do {
          guard let decoded = try e.decodedConfChange() else { continue }
          cc = decoded
        } catch {
          return PeerMessageRefusal(.confChange, "MsgProp with a conf change that does not decode: \(error)")
        }
        // Only the first can take effect: the leader turns the others into empty entries.
        if firstConfChange, r.state == .leader, let why = confChangeRefusal(cc) {
          return PeerMessageRefusal(.confChange, "MsgProp with a conf change the configuration cannot take: \(why)")
        }
        firstConfChange = false
      }
    case .msgSnap:
      guard let s = m.snapshot else { return PeerMessageRefusal(.snapshot, "MsgSnap without a snapshot") }
      return refusal(ofSnapshot: s.metadata, term: m.term)
    case .msgReadIndex, .msgReadIndexResp:
      if m.entries.count != 1 {
        return PeerMessageRefusal(.malformed, "\(m.type) with \(m.entries.count) entries (its context is one entry)")
      }
    case .msgTransferLeader:
      // Only a leader takes one from a peer (a follower forwards its own). A follower that
      // knows its leader at the message's term would forward it with the term set, which Raft
      // refuses to send (etcd-raft panics); an honest one never gets there (a follower that
      // was the leader at that term stepped down without a leader).
      if r.state == .follower, m.term == r.term, r.lead != noNode {
        return PeerMessageRefusal(.malformed, "MsgTransferLeader sent to a follower of node \(r.lead)")
      }
    case .msgVote, .msgPreVote:
      if m.logTerm > m.term {
        return PeerMessageRefusal(.term, "\(m.type) whose last entry's term \(m.logTerm) is above its term \(m.term)")
      }
    default:
      break
    }
    return nil
  }

  /// Moves this node's term up to `refusal.catchUpTerm` (as a follower without a leader or a
  /// vote), for a message refused for a term that leads too far, wherever Raft would have taken
  /// the message's term (`Raft.step`): not from a pre-vote or a granted pre-vote response
  /// (which never change a term), nor from a vote request within a live leader's lease. A
  /// node's term may rise at any time without harm to safety; this lets members that an
  /// attacker pushed apart close the gap.
  public func catchUpTerm(after refusal: PeerMessageRefusal, of m: Message) {
    let r = raft
    guard let t = refusal.catchUpTerm, t > r.term else { return }
    switch m.type {
    case .msgPreVote:
      return
    case .msgPreVoteResp where !m.reject:
      return
    case .msgVote:
      let force = m.context == CampaignType.transferContext
      let inLease = r.checkQuorum && r.lead != noNode && r.electionElapsed < r.electionTimeout
      if !force && inLease { return }
    default:
      break
    }
    r.becomeFollower(term: t, lead: noNode)
  }

  /// Why the current configuration cannot take `cc` once it is committed, as the leader
  /// decides at proposal time (nil: it can, or the leader will turn it into an empty entry).
  /// A committed conf change that fails here would stop every member that applies it.
  public func confChangeRefusal(_ cc: AnyConfChange) -> String? {
    let r = raft
    if r.pendingConfIndex > r.raftLog.applied { return nil }  // the leader drops it
    let v2 = cc.asV2
    let joint = !r.tracker.config.voters.outgoing.ids.isEmpty
    if joint != v2.changes.isEmpty { return nil }  // the leader drops it
    let changer = Changer(tracker: r.tracker, lastIndex: r.raftLog.lastIndex())
    do {
      _ = try changer.apply(v2)
    } catch {
      return "\(error)"
    }
    return nil
  }

  private func refusal(
    ofEntries entries: [Entry], after index: UInt64, termAtLeast low: UInt64, termAtMost high: UInt64,
    limits: PeerMessageLimits
  ) -> PeerMessageRefusal? {
    guard !entries.isEmpty else { return nil }
    if UInt64(entries.count) > UInt64.max - index {
      return PeerMessageRefusal(.entries, "entries after index \(index) run past the end of the index space")
    }
    var term = low
    for (k, e) in entries.enumerated() {
      if e.index != index + 1 + UInt64(k) {
        return PeerMessageRefusal(
          .entries, "entry \(k) of a MsgApp after index \(index) has index \(e.index), not \(index + 1 + UInt64(k))")
      }
      if e.term < term || e.term > high {
        return PeerMessageRefusal(
          .entries, "entry \(e.index) has term \(e.term): terms must rise from \(low) and stay at most \(high)")
      }
      term = e.term
      if let refusal = refusal(ofSize: e, limits: limits) { return refusal }
      if e.type != .normal {
        do {
          _ = try e.decodedConfChange()
        } catch {
          return PeerMessageRefusal(.confChange, "entry \(e.index) is a conf change that does not decode: \(error)")
        }
      }
    }
    return nil
  }

  private func refusal(ofSize e: Entry, limits: PeerMessageLimits) -> PeerMessageRefusal? {
    // The exact size only for a payload near the limit (this runs for every replicated entry).
    guard e.data.count > limits.payloadBytesMax else { return nil }
    let size = RaftCodec.encodedSize(e)
    guard size > limits.entryBytesMax else { return nil }
    return PeerMessageRefusal(.entries, "an entry of \(size) bytes, above the log's limit of \(limits.entryBytesMax)")
  }

  private func refusal(ofSnapshot md: SnapshotMetadata, term: UInt64) -> PeerMessageRefusal? {
    if md.index == 0 || md.index == .max || md.term == 0 {
      return PeerMessageRefusal(.snapshot, "snapshot at index \(md.index), term \(md.term)")
    }
    if md.term > term {
      return PeerMessageRefusal(.snapshot, "snapshot of term \(md.term) sent at term \(term)")
    }
    let cs = md.confState
    if cs.voters.isEmpty { return PeerMessageRefusal(.snapshot, "snapshot whose configuration has no voters") }
    let scratch = ProgressTracker(
      maxInflight: raft.tracker.maxInflight, maxInflightBytes: raft.tracker.maxInflightBytes)
    do {
      let (config, progress) = try restoreConfState(Changer(tracker: scratch, lastIndex: md.index), cs)
      let restored = ProgressTracker(
        maxInflight: scratch.maxInflight, maxInflightBytes: scratch.maxInflightBytes, config: config,
        progress: progress)
      if !cs.isEquivalent(to: restored.confState()) {
        return PeerMessageRefusal(.snapshot, "snapshot configuration \(cs) restores as \(restored.confState())")
      }
    } catch {
      return PeerMessageRefusal(.snapshot, "snapshot configuration \(cs) cannot be restored: \(error)")
    }
    return nil
  }
}
