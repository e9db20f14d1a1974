import Logging
import Metrics
import Raft

/// The engine's metrics (swift-metrics; nothing is recorded until the application bootstraps a
/// backend). Every instrument carries the dimension `node`.
struct EngineMetrics: Sendable {
  /// From a proposal entering the log on the leader to the Ready that hands it out committed.
  let proposalToCommit: Timer
  /// From that Ready to the entry applied to the state machine.
  let commitToApply: Timer
  /// One WAL batch: from submission to its durable acknowledgement (the fdatasync).
  let walSync: Timer
  /// Entries and bytes (framing included) per WAL batch.
  let walBatchEntries: Recorder
  let walBatchBytes: Recorder
  /// Handling one Ready on the run loop.
  let readyHandling: Timer
  /// Inputs taken by one wake of the run loop.
  let inboxDepth: Recorder
  /// Peer messages refused at the core's boundary, by kind (`PeerMessageRefusal.Kind`).
  let peerMessagesRefused: [PeerMessageRefusal.Kind: Counter]

  /// The instruments of node `node`, from `factory` (the bootstrapped global one when nil).
  init(node: UInt64, factory: MetricsFactory? = nil) {
    let d = [("node", String(node))]
    let f = factory ?? MetricsSystem.factory
    proposalToCommit = Timer(label: "raft_proposal_to_commit", dimensions: d, factory: f)
    commitToApply = Timer(label: "raft_commit_to_apply", dimensions: d, factory: f)
    walSync = Timer(label: "raft_wal_batch_sync", dimensions: d, factory: f)
    walBatchEntries = Recorder(label: "raft_wal_batch_entries", dimensions: d, factory: f)
    walBatchBytes = Recorder(label: "raft_wal_batch_bytes", dimensions: d, factory: f)
    readyHandling = Timer(label: "raft_ready_handling", dimensions: d, factory: f)
    inboxDepth = Recorder(label: "raft_inbox_depth", dimensions: d, factory: f)
    var refused: [PeerMessageRefusal.Kind: Counter] = [:]
    for kind in PeerMessageRefusal.Kind.allCases {
      refused[kind] = Counter(
        label: "raft_peer_messages_refused_total", dimensions: d + [("kind", kind.rawValue)], factory: f)
    }
    peerMessagesRefused = refused
  }
}

/// Lets through one log line per interval and counts the ones held back in between (a hostile
/// peer must not be able to flood the log). One thread at a time.
struct LogRateLimiter {
  let intervalNanoseconds: UInt64
  /// When the last line went out (0: never).
  private var lastNanoseconds: UInt64 = 0
  /// Lines held back since then.
  private var suppressed = 0

  init(intervalNanoseconds: UInt64) {
    self.intervalNanoseconds = intervalNanoseconds
  }

  /// Whether a line may go out at `now`; if so, how many were held back before it.
  mutating func admit(now: UInt64) -> Int? {
    if lastNanoseconds != 0, now &- lastNanoseconds < intervalNanoseconds {
      suppressed += 1
      return nil
    }
    lastNanoseconds = now
    defer { suppressed = 0 }
    return suppressed
  }
}

/// Raft's and the WAL's log lines, through swift-log.
final class SwiftLogRaftLogger: RaftLogger, @unchecked Sendable {
  let logger: Logger

  init(_ logger: Logger) { self.logger = logger }

  func isEnabled(_ level: RaftLogLevel) -> Bool { logger.logLevel <= Self.level(level) }

  func log(_ level: RaftLogLevel, _ message: String) { logger.log(level: Self.level(level), "\(message)") }

  static func level(_ l: RaftLogLevel) -> Logger.Level {
    switch l {
    case .debug: .debug
    case .info: .info
    case .warning: .warning
    case .error: .error
    }
  }
}
