/// How read-only requests (ReadIndex) are served.
public enum ReadOnlyOption: Sendable, Equatable {
  /// Confirm leadership with a quorum of heartbeat acknowledgements (linearizable, the default).
  case safe
  /// Rely on the leader lease (CheckQuorum must be on); affected by clock drift.
  case leaseBased
}

/// A source of randomness for the election timeout. The algorithm layer never draws randomness
/// by itself: it uses the generator handed to it in `Config`, so a seeded run is reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
  private var state: UInt64

  /// A generator whose sequence is fully determined by `seed`.
  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// The parameters of one Raft node (etcd-raft's `Config`). `validate()` checks them and fills in
/// the defaults that depend on other fields.
public struct Config {
  /// This node's id; neither 0 nor one of the local thread targets.
  public var id: UInt64
  /// Ticks without hearing from a leader before a follower campaigns. Must exceed `heartbeatTick`.
  public var electionTick: Int
  /// Ticks between heartbeats of a leader.
  public var heartbeatTick: Int
  /// Where the stable log, the hard state and the snapshot are read from.
  public var storage: Storage
  /// The last applied index, when restarting. Entries up to it are not returned again.
  public var applied: UInt64
  /// Hand storage work out as MsgStorageAppend / MsgStorageApply messages instead of Ready
  /// fields acknowledged by `advance()`.
  public var asyncStorageWrites: Bool
  /// Byte limit of the entries in one MsgApp (`Entry.size`); a message always carries at least
  /// one entry. 0: one entry per message. Default 1 MiB (etcd-raft leaves it to the caller).
  public var maxSizePerMsg: UInt64
  /// Byte limit of the committed entries being applied at once (across Readys in async mode).
  /// 0 means "same as maxSizePerMsg".
  public var maxCommittedSizePerReady: UInt64
  /// Payload byte limit of the uncommitted tail a leader accepts; 0 means no limit.
  public var maxUncommittedEntriesSize: UInt64
  /// Limit of in-flight MsgApp messages per follower in StateReplicate. Must be > 0.
  public var maxInflightMsgs: Int
  /// Limit of in-flight MsgApp payload bytes per follower; 0 means no limit.
  public var maxInflightBytes: UInt64
  /// The leader steps down when a quorum has not been active for an election timeout.
  public var checkQuorum: Bool
  /// Run a pre-election round before incrementing the term.
  public var preVote: Bool
  /// How ReadIndex requests are served.
  public var readOnlyOption: ReadOnlyOption
  /// Followers drop proposals instead of forwarding them to the leader.
  public var disableProposalForwarding: Bool
  /// Skip the propose-time checks of conf changes against the active configuration.
  public var disableConfChangeValidation: Bool
  /// A leader removed from (or demoted in) the configuration steps down.
  public var stepDownOnRemoval: Bool
  /// Where log lines go.
  public var logger: RaftLogger
  /// The seed of the election timeout randomisation.
  public var randomSeed: UInt64

  /// A configuration with etcd-raft's usual defaults: election 10 ticks, heartbeat 1 tick,
  /// 1 MiB per MsgApp, 256 in-flight messages, a random seed.
  public init(id: UInt64, electionTick: Int = 10, heartbeatTick: Int = 1, storage: Storage) {
    self.id = id
    self.electionTick = electionTick
    self.heartbeatTick = heartbeatTick
    self.storage = storage
    self.applied = 0
    self.asyncStorageWrites = false
    self.maxSizePerMsg = 1 << 20
    self.maxCommittedSizePerReady = 0
    self.maxUncommittedEntriesSize = 0
    self.maxInflightMsgs = 256
    self.maxInflightBytes = 0
    self.checkQuorum = false
    self.preVote = false
    self.readOnlyOption = .safe
    self.disableProposalForwarding = false
    self.disableConfChangeValidation = false
    self.stepDownOnRemoval = false
    self.logger = DiscardLogger()
    var g = SystemRandomNumberGenerator()
    self.randomSeed = g.next()
  }

  /// Checks the configuration and fills in derived defaults; throws `RaftError.invalidConfig`
  /// naming the offending field.
  public mutating func validate() throws {
    if id == noNode { throw RaftError.invalidConfig("cannot use none (0) as id") }
    if id == localAppendThread || id == localApplyThread {
      throw RaftError.invalidConfig("cannot use a local thread target (\(id)) as id")
    }
    if heartbeatTick <= 0 {
      throw RaftError.invalidConfig("heartbeat tick must be greater than 0 (got \(heartbeatTick))")
    }
    if electionTick <= heartbeatTick {
      throw RaftError.invalidConfig(
        "election tick must be greater than heartbeat tick (election \(electionTick), heartbeat \(heartbeatTick))")
    }
    if maxUncommittedEntriesSize == 0 { maxUncommittedEntriesSize = noLimit }
    if maxCommittedSizePerReady == 0 { maxCommittedSizePerReady = maxSizePerMsg }
    if maxInflightMsgs <= 0 {
      throw RaftError.invalidConfig("max inflight messages must be greater than 0 (got \(maxInflightMsgs))")
    }
    if maxInflightBytes == 0 {
      maxInflightBytes = noLimit
    } else if maxInflightBytes < maxSizePerMsg {
      throw RaftError.invalidConfig(
        "max inflight bytes must be >= max message size (\(maxInflightBytes) < \(maxSizePerMsg))")
    }
    if readOnlyOption == .leaseBased && !checkQuorum {
      throw RaftError.invalidConfig("CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased")
    }
  }
}
