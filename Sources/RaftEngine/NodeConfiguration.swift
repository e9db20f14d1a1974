import Logging
import Metrics
import Raft
import RaftWAL

/// The leader a node knows of, from some term on.
public struct LeaderChange: Sendable, Equatable, CustomStringConvertible {
  /// The leader's id; nil while none is known (an election is under way, or this node is
  /// partitioned).
  public var leader: UInt64?
  /// The node's term when it learned of the change.
  public var term: UInt64

  public init(leader: UInt64?, term: UInt64) {
    self.leader = leader
    self.term = term
  }

  public var description: String { "leader \(leader.map(String.init) ?? "none") in term \(term)" }
}

/// How a `Node` runs: identity, Ready handling, timing, Raft limits, and the WAL's options.
public struct NodeConfiguration: Sendable {
  /// How Ready is handled.
  public enum ReadyHandling: String, Sendable, CaseIterable {
    /// The run loop persists each Ready through the WAL (write + sync), sends, applies, then
    /// advances: the etcd/raftexample baseline.
    case sync
    /// Asynchronous storage writes: appends go to the append worker, applies to the apply
    /// worker, and their responses come back to the run loop's inbox; the loop never waits.
    case async
  }

  /// How many threads do the asynchronous storage work (etcd's LocalAppendThread and
  /// LocalApplyThread).
  public enum StorageThreads: String, Sendable, CaseIterable {
    /// `.one` on machines of two processors or fewer, `.two` otherwise.
    case auto
    /// One thread appends and applies (it applies while the syncs run): with the run loop, two
    /// engine threads per node, which two cores can keep running without wake-ups.
    case one
    /// An append worker and an apply worker: applying never delays the next write.
    case two

    /// `.one` or `.two`.
    public var resolved: StorageThreads {
      guard self == .auto else { return self }
      return SpinBudget.processors <= 2 ? .one : .two
    }
  }

  /// This node's id (non-zero).
  public var id: UInt64
  /// The voters of a new cluster (used only when the WAL directory is empty). Empty: the node
  /// joins an existing cluster (it was added by a conf change, and learns the log, the
  /// configuration included, from the leader).
  public var peers: [UInt64]
  /// The WAL directory.
  public var directory: String
  /// The application applied the log through this index before the node restarted (it keeps
  /// its state durably itself): Raft hands out only the entries above it (etcd-raft's
  /// `Config.Applied`). Clamped to the recovered commit index (entries above it come again).
  /// 0: everything above the snapshot is applied again.
  public var appliedIndex: UInt64 = 0
  public var readyHandling: ReadyHandling = .async
  /// Async mode: one storage thread or two (append, apply).
  public var storageThreads: StorageThreads = .auto
  public var wal = WALOptions()
  public var electionTick = 10
  public var heartbeatTick = 1
  /// One Raft tick, in microseconds.
  public var tickMicroseconds = 10_000
  public var maxSizePerMsg: UInt64 = 1 << 20
  public var maxInflightMsgs = 256
  public var maxCommittedSizePerReady: UInt64 = 0
  /// The leader refuses proposals (`.dropped`) while the entries it appended and not yet
  /// committed carry more than this many payload bytes (etcd-raft's
  /// `MaxUncommittedEntriesSize`; 0: no limit): a leader cut off from its quorum, or behind
  /// a slow one, does not let the uncommitted log grow without bound.
  public var maxUncommittedEntriesSize: UInt64 = 64 << 20
  /// Bytes of entries in flight to one follower at most (etcd-raft's `MaxInflightBytes`; 0: no
  /// limit; at least `maxSizePerMsg`): bounds what a follower can be sent ahead of its answers.
  public var maxInflightBytes: UInt64 = 32 << 20
  public var preVote = true
  public var checkQuorum = true
  /// Take a snapshot of the state machine (`StateMachine.snapshotData`) every this many applied
  /// entries and compact the log behind it (etcd's `SnapshotCount`); 0: never.
  public var snapshotEntries: UInt64 = 10_000
  /// Entries kept behind a snapshot for slow followers (etcd's `SnapshotCatchUpEntries`).
  public var compactionRetainEntries: UInt64 = 5_000
  /// Also snapshot once the entries applied since the last snapshot carry this many payload
  /// bytes (0: by count only; `snapshotEntries` 0 still means never). With large values the count alone would let the log held in
  /// memory (`WALStorage` keeps every entry above the compaction point) grow to count x value
  /// size: 10,000 entries of 64 KiB are 640 MiB.
  public var snapshotBytes: UInt64 = 64 << 20
  /// Keep at most this many payload bytes of entries behind a snapshot, whatever
  /// `compactionRetainEntries` allows (0: by count only).
  public var compactionRetainBytes: UInt64 = 32 << 20
  /// Proposals queued on the run loop at most (beyond it `propose` fails with `.busy`).
  public var inboxCapacity = 1 << 16
  /// Inputs queued on the run loop from which the transport stops reading from peers (NIO
  /// back-pressure) until the run loop catches up: a peer's messages are never buffered
  /// without bound.
  public var inboxPeerBacklogMax = 4096
  /// How long the run loop may poll its inbox before it parks, in nanoseconds, while a worker's
  /// answer is due (a write's durable acknowledgement, an apply outcome) and `SpinBudget`
  /// grants it one of its slots (one fewer than the processors: on 2 cores one thread spins at
  /// a time); with nothing outstanding it parks at once. The apply worker polls as long when a
  /// slot is free. The append worker never polls: it waits in the WAL's ring for the disk and
  /// new work together. Long enough to cover one disk sync.
  public var spinNanoseconds: UInt64 = 300_000
  /// The polling bound instead of `spinNanoseconds` while the node is loaded (its last turn
  /// took more than `lightTurnInputs` inputs) and the process runs more engine threads than
  /// there are processors (`SpinBudget.oversubscribed`: several nodes in one process), in
  /// nanoseconds. Then another engine thread always wants the core a poller holds, and a turn
  /// handles so many entries that the wake-up parking costs is a small share of it: poll for
  /// about a wake-up's cost, then park. (With a core to spare, polling through the sync buys
  /// throughput: measured 1 node, 64 to 256 clients, +7 to +45%.)
  public var loadedSpinNanoseconds: UInt64 = 30_000
  /// How much lower than its creator's the run loop thread's scheduling priority is: a nice
  /// increment, 0 to 19 (Linux keeps one per thread). With the cores contended (several
  /// members or a load generator on one machine), the run loop then runs after the threads
  /// that feed it (the transport's, the application's), so each of its turns takes more
  /// inputs: bigger batches, fewer messages, syncs and wake-ups per entry. With a core to
  /// spare it changes nothing. 0: the creator's priority.
  public var runLoopNiceIncrement = 0
  /// Inputs in a turn up to which the node counts as lightly loaded (polls up to
  /// `spinNanoseconds`).
  public static let lightTurnInputs = 8
  /// Where the node, Raft and the WAL log (swift-log); Raft's own lines at `.debug`/`.info`
  /// show only when the level allows.
  public var logger = Logger(label: "swift-raft")
  /// Where metrics go; nil: swift-metrics' bootstrapped factory (a no-op until the application
  /// bootstraps one). Instruments: `raft_proposal_to_commit`, `raft_commit_to_apply`,
  /// `raft_wal_batch_sync` (timers), `raft_wal_batch_entries`, `raft_wal_batch_bytes`,
  /// `raft_inbox_depth` (recorders), `raft_ready_handling` (timer), each with a `node` dimension.
  public var metricsFactory: (any MetricsFactory & Sendable)? = nil
  /// Checks a snapshot's data from a peer before it reaches the node: nil when the state
  /// machine can restore from it, else why not. The transport runs it on the snapshot stream's
  /// thread (not the run loop) and closes the stream of a snapshot it refuses, so that a peer
  /// cannot make the state machine fail on restore. Nil: every snapshot's data is taken.
  public var snapshotDataCheck: (@Sendable ([UInt8]) -> String?)? = nil
  /// Called once, on the run loop's thread, when the node stops on a failure: the storage
  /// failed (an I/O error, a full disk) or an invariant broke. The node accepts nothing more
  /// (proposals fail with the error); what it acknowledged before is durable. etcd's answer is
  /// fail-stop: log the cause and exit non-zero, so that an operator (or a supervisor) looks at
  /// the disk before the member comes back. Nil: the node just stays stopped.
  public var onFailure: (@Sendable (EngineError) -> Void)? = nil
  /// On the leader: answer a proposal a follower forwarded (`Node.forward`) that Raft drops
  /// here (the uncommitted-bytes limit, a leadership transfer in progress) by sending back the
  /// first this many bytes of each of its normal entries, where the application keeps what
  /// identifies its request; the follower gets them in `onForwardDropped` and fails its callers
  /// at once instead of at their deadline. 0: such proposals are dropped without an answer, as
  /// etcd-raft does.
  public var forwardTagBytes = 0
  /// On a follower: a proposal it forwarded was dropped by the node it went to, which sent
  /// back these tags (the first `forwardTagBytes` bytes of each normal entry). Called on the
  /// run loop's thread; keep it short.
  public var onForwardDropped: (@Sendable ([Payload]) -> Void)? = nil
  /// Called on the run loop's thread each time the leader this node knows of changes (nil: none
  /// known, as in an election). Keep it short: the run loop waits for it.
  public var onLeaderChange: (@Sendable (LeaderChange) -> Void)? = nil

  public init(id: UInt64, peers: [UInt64], directory: String) {
    self.id = id
    self.peers = peers
    self.directory = directory
  }
}
