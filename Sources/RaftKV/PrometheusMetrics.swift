import CoreMetrics
import Prometheus

/// The member's swift-metrics backend, for `GET /metrics`: swift-prometheus's collector
/// registry, with each metric's `# HELP` line (`help`) and the buckets below.
///
/// Counters become `counter`s, meters and plain recorders `gauge`s, aggregating recorders
/// `histogram`s of sizes, timers `histogram`s in seconds (named `<label>_seconds`). Instruments
/// made twice with the same label and dimensions share one series.
public final class PrometheusMetrics: MetricsFactory, Sendable {
  /// Where the series live; `render()` emits it.
  public let registry: PrometheusCollectorRegistry

  public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) { self.registry = registry }

  /// `# HELP` text by metric name (a metric not listed has no HELP line).
  static let help: [String: String] = [
    "raft_proposal_to_commit_seconds": "From a proposal entering Raft to its entry committing (leader).",
    "raft_commit_to_apply_seconds": "From an entry committing to the state machine applying it.",
    "raft_wal_batch_sync_seconds": "From a WAL batch's submission to its durable acknowledgement.",
    "raft_ready_handling_seconds": "Run loop time spent handing out the Readys of one turn.",
    "raft_wal_batch_entries": "Entries in one WAL batch (one write, one sync).",
    "raft_wal_batch_bytes": "Bytes in one WAL batch, framing included.",
    "raft_inbox_depth": "Inputs the run loop took from its inbox in one turn.",
    "raft_peer_messages_refused_total": "Peer messages refused before Raft saw them, by kind.",
    "raft_term": "The node's current Raft term.",
    "raft_is_leader": "1 while this node is the leader.",
    "raft_commit_index": "The node's commit index.",
    "raft_applied_index": "The highest index the state machine applied.",
    "raft_snapshot_index": "The index of the latest snapshot.",
    "raft_connected_peers": "Peers with an open connection.",
    "raftkv_keys": "Keys in the store.",
    "raftkv_http_requests_total": "HTTP requests answered, by method and status code.",
  ]

  /// Latency buckets: 50 µs to 10 s.
  static let durationBuckets: [Duration] = [
    .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
    .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
    .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
    .seconds(10),
  ]
  /// Size buckets (entries, bytes): powers of 4 from 1 to 4 Mi.
  static let sizeBuckets: [Double] = (0...11).map { Double(1 << (2 * $0)) }

  private func descriptor(_ name: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: Self.help[name] ?? "")
  }

  public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
    registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
  }

  public func makeFloatingPointCounter(label: String, dimensions: [(String, String)])
    -> any FloatingPointCounterHandler
  {
    registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
  }

  public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
    registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
  }

  public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
    guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
    return registry.makeValueHistogram(descriptor: descriptor(label), labels: dimensions, buckets: Self.sizeBuckets)
  }

  public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
    registry.makeDurationHistogram(
      descriptor: descriptor(label + "_seconds"), labels: dimensions, buckets: Self.durationBuckets)
  }

  public func destroyCounter(_ handler: any CounterHandler) {
    if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
  }
  public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
    if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
  }
  public func destroyMeter(_ handler: any MeterHandler) {
    if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
  }
  public func destroyRecorder(_ handler: any RecorderHandler) {
    if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
    if let h = handler as? ValueHistogram { registry.unregisterValueHistogram(h) }
  }
  public func destroyTimer(_ handler: any TimerHandler) {
    if let h = handler as? DurationHistogram { registry.unregisterDurationHistogram(h) }
  }

  /// Every series in Prometheus' text exposition format (0.0.4), with `# HELP` and `# TYPE`.
  public func render() -> String { registry.emitToString() }
}
