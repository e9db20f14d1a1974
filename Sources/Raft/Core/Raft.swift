/// The Raft algorithm for one node (etcd-raft's `raft` struct): pure and single-threaded. It
/// never performs I/O; everything it wants done comes out through `RawNode.ready()`.
///
/// The state machine's transitions are spread over `Raft+Election.swift` (terms, votes,
/// ticks), `Raft+Step.swift` (message dispatch per role), `Raft+Replication.swift` (appends,
/// heartbeats, snapshots) and `Raft+Configuration.swift` (membership).
public final class Raft {
  /// This node's id.
  public let id: UInt64
  /// The current term. Invariant: never decreases.
  @exclusivity(unchecked) public internal(set) var term: UInt64 = 0
  /// Whom this node voted for in `term` (`noNode` if nobody).
  @exclusivity(unchecked) public internal(set) var vote: UInt64 = noNode

  /// ReadIndex answers waiting to be handed out in the next Ready.
  @exclusivity(unchecked) var readStates: [ReadState] = []

  /// The log: stable (in `Storage`) and unstable parts.
  public let raftLog: RaftLog

  let maxMsgSize: UInt64
  let maxUncommittedSize: UInt64

  /// Progress of every peer and the active configuration.
  @exclusivity(unchecked) public internal(set) var tracker: ProgressTracker

  @exclusivity(unchecked) public internal(set) var state: StateType = .follower

  /// Whether this node is a learner in the active configuration.
  @exclusivity(unchecked) public internal(set) var isLearner = false

  /// Messages to send right away. Invariant: none is addressed to this node.
  @exclusivity(unchecked) var msgs: [Message] = []
  /// Messages to release only once the unstable state accumulated so far (term, vote, entries,
  /// snapshot) is durable: MsgAppResp, MsgVoteResp and MsgPreVoteResp, possibly to this node.
  @exclusivity(unchecked) var msgsAfterAppend: [Message] = []

  /// The leader known in `term` (`noNode` when none).
  @exclusivity(unchecked) public internal(set) var lead: UInt64 = noNode
  /// The target of a leadership transfer in progress (`noNode` when none).
  @exclusivity(unchecked) public internal(set) var leadTransferee: UInt64 = noNode
  /// An index at or above the last conf change in the log. A new conf change may only be
  /// proposed once `raftLog.applied` has reached it (one pending change at a time).
  @exclusivity(unchecked) var pendingConfIndex: UInt64 = 0
  let disableConfChangeValidation: Bool
  /// Estimated payload bytes of the leader's uncommitted tail (never an overestimate).
  @exclusivity(unchecked) var uncommittedSize: UInt64 = 0

  @exclusivity(unchecked) var readOnly: ReadOnly

  /// Ticks since the last election timeout (leader, candidate) or since the last valid message
  /// from the leader (follower).
  @exclusivity(unchecked) var electionElapsed = 0
  /// Ticks since the last heartbeat broadcast (leader only).
  @exclusivity(unchecked) var heartbeatElapsed = 0

  let checkQuorum: Bool
  let preVote: Bool

  let heartbeatTimeout: Int
  let electionTimeout: Int
  /// Drawn from [electionTimeout, 2 * electionTimeout - 1] on every reset.
  @exclusivity(unchecked) var randomizedElectionTimeout = 0
  let disableProposalForwarding: Bool
  let stepDownOnRemoval: Bool

  @exclusivity(unchecked) var random: SplitMix64
  let logger: RaftLogger

  /// MsgReadIndex requests received before the leader committed an entry of its term.
  @exclusivity(unchecked) var pendingReadIndexMessages: [Message] = []

  /// Builds the node from `config` and the state found in its storage.
  init(config c: Config) throws {
    var c = c
    try c.validate()
    id = c.id
    logger = c.logger
    raftLog = RaftLog(storage: c.storage, logger: c.logger, maxApplyingEntsSize: c.maxCommittedSizePerReady)
    let (hs, cs) = try c.storage.initialState()
    maxMsgSize = c.maxSizePerMsg
    maxUncommittedSize = c.maxUncommittedEntriesSize
    tracker = ProgressTracker(maxInflight: c.maxInflightMsgs, maxInflightBytes: c.maxInflightBytes)
    electionTimeout = c.electionTick
    heartbeatTimeout = c.heartbeatTick
    checkQuorum = c.checkQuorum
    preVote = c.preVote
    readOnly = ReadOnly(option: c.readOnlyOption)
    disableProposalForwarding = c.disableProposalForwarding
    disableConfChangeValidation = c.disableConfChangeValidation
    stepDownOnRemoval = c.stepDownOnRemoval
    // Mixed with the id so that nodes sharing one Config still draw different timeouts.
    random = SplitMix64(seed: c.randomSeed ^ (c.id &* 0x9E37_79B9_7F4A_7C15))

    let (cfg, progress) = try restoreConfState(Changer(tracker: tracker, lastIndex: raftLog.lastIndex()), cs)
    assertConfStatesEquivalent(cs, switchToConfig(cfg, progress))

    if !hs.isEmpty { loadState(hs) }
    if c.applied > 0 { raftLog.appliedTo(c.applied, size: 0) }
    becomeFollower(term: term, lead: noNode)

    logger.info(
      "newRaft \(hx(id)) [peers: [\(tracker.voterNodes().map { hx($0) }.joined(separator: ","))], term: \(term), "
        + "commit: \(raftLog.committed), applied: \(raftLog.applied), lastindex: \(raftLog.lastIndex()), "
        + "lastterm: \(raftLog.lastTerm())]")
  }

  var hasLeader: Bool { lead != noNode }

  var softState: SoftState { SoftState(lead: lead, raftState: state) }

  var hardState: HardState { HardState(term: term, vote: vote, commit: raftLog.committed) }

  /// Queues `m` for sending. Responses that vote (MsgAppResp, MsgVoteResp, MsgPreVoteResp) wait
  /// in `msgsAfterAppend` until the state they vouch for is durable; everything else goes out
  /// with the next Ready.
  func send(_ message: consuming Message) {
    var m = message
    if m.from == noNode { m.from = id }
    switch m.type {
    case .msgVote, .msgVoteResp, .msgPreVote, .msgPreVoteResp:
      // Campaign messages always carry the term they are about (never 0).
      if m.term == 0 { logger.panic("term should be set when sending \(m.type)") }
    default:
      if m.term != 0 { logger.panic("term should not be set when sending \(m.type) (was \(m.term))") }
      // Proposals and read requests forwarded to the leader are term-less, like local messages.
      if m.type != .msgProp && m.type != .msgReadIndex { m.term = term }
    }
    switch m.type {
    case .msgAppResp, .msgVoteResp, .msgPreVoteResp:
      msgsAfterAppend.append(m)
    default:
      if m.to == id { logger.panic("message should not be self-addressed when sending \(m.type)") }
      msgs.append(m)
    }
  }

  func loadState(_ st: HardState) {
    if st.commit < raftLog.committed || st.commit > raftLog.lastIndex() {
      logger.panic(
        "\(hx(id)) state.commit \(st.commit) is out of range [\(raftLog.committed), \(raftLog.lastIndex())]")
    }
    raftLog.committed = st.commit
    term = st.term
    vote = st.vote
  }

  /// Test hook (etcd's `SetRandomizedElectionTimeout`).
  func setRandomizedElectionTimeout(_ v: Int) { randomizedElectionTimeout = v }
}

/// Lower-case hex, the way etcd-raft prints node ids in its log lines.
@inline(__always)
func hx(_ v: UInt64) -> String { String(v, radix: 16) }

extension Raft {
  func assertConfStatesEquivalent(_ a: ConfState, _ b: ConfState) {
    if !a.isEquivalent(to: b) {
      logger.panic("ConfStates not equivalent after sorting:\n\(a)\n\(b)")
    }
  }
}
