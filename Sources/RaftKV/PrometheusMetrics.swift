import CoreMetrics
import Synchronization

/// A swift-metrics backend that keeps every instrument's value in memory and renders them in
/// Prometheus' text exposition format (version 0.0.4), for `GET /metrics`.
///
/// Counters become `counter`s, meters and plain recorders `gauge`s, aggregating recorders and
/// timers `histogram`s (timers in seconds) with fixed exponential buckets. Instruments made
/// twice with the same label and dimensions share one series.
public final class PrometheusMetrics: MetricsFactory, Sendable {
  private let series = Mutex<[SeriesKey: any PrometheusSeries]>([:])

  public init() {}

  struct SeriesKey: Hashable {
    var name: String
    var labels: [String]
  }

  private func make<S: PrometheusSeries>(
    _ label: String, _ dimensions: [(String, String)], _ create: (String, String) -> S
  ) -> S {
    let name = Self.sanitize(label)
    let labels = dimensions.map { "\(Self.sanitize($0.0))=\"\(Self.escape($0.1))\"" }
    let key = SeriesKey(name: name, labels: labels)
    return series.withLock { all in
      if let existing = all[key] as? S { return existing }
      let s = create(name, labels.joined(separator: ","))
      all[key] = s
      return s
    }
  }

  public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
    make(label, dimensions) { PrometheusValue(name: $0, labels: $1, type: "counter") }
  }

  public func makeFloatingPointCounter(label: String, dimensions: [(String, String)])
    -> any FloatingPointCounterHandler
  {
    make(label, dimensions) { PrometheusValue(name: $0, labels: $1, type: "counter") }
  }

  public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
    make(label, dimensions) { PrometheusValue(name: $0, labels: $1, type: "gauge") }
  }

  public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
    if aggregate {
      return make(label, dimensions) {
        PrometheusHistogram(name: $0, labels: $1, buckets: Self.sizeBuckets, divisor: 1)
      }
    }
    return make(label, dimensions) { PrometheusValue(name: $0, labels: $1, type: "gauge") }
  }

  public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
    make(label + "_seconds", dimensions) {
      PrometheusHistogram(name: $0, labels: $1, buckets: Self.secondsBuckets, divisor: 1e9)
    }
  }

  public func destroyCounter(_ handler: any CounterHandler) {}
  public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
  public func destroyMeter(_ handler: any MeterHandler) {}
  public func destroyRecorder(_ handler: any RecorderHandler) {}
  public func destroyTimer(_ handler: any TimerHandler) {}

  /// Every series in the text format, grouped by metric name (one `# TYPE` line each).
  public func render() -> String {
    let all = series.withLock { Array($0.values) }
    var byName: [String: [any PrometheusSeries]] = [:]
    for s in all { byName[s.name, default: []].append(s) }
    var out = ""
    for name in byName.keys.sorted() {
      let group = byName[name]!.sorted { $0.labels < $1.labels }
      out += "# TYPE \(name) \(group[0].type)\n"
      for s in group { s.render(into: &out) }
    }
    return out
  }

  /// Latency buckets, in seconds: 50 µs to 10 s.
  static let secondsBuckets: [Double] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
  ]
  /// Size buckets (entries, bytes): powers of 4 from 1 to 4 Mi.
  static let sizeBuckets: [Double] = (0...11).map { Double(1 << (2 * $0)) }

  /// Metric and label names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
  static func sanitize(_ s: String) -> String {
    var out = ""
    for (k, c) in s.unicodeScalars.enumerated() {
      let ok =
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || c == ":" || (k > 0 && c >= "0" && c <= "9")
      out.unicodeScalars.append(ok ? c : "_")
    }
    return out.isEmpty ? "_" : out
  }

  /// Label values: backslash, double quote and newline escaped.
  static func escape(_ s: String) -> String {
    var out = ""
    for c in s {
      switch c {
      case "\\": out += "\\\\"
      case "\"": out += "\\\""
      case "\n": out += "\\n"
      default: out.append(c)
      }
    }
    return out
  }
}

/// One rendered series.
protocol PrometheusSeries: AnyObject, Sendable {
  var name: String { get }
  var labels: String { get }
  var type: String { get }
  func render(into out: inout String)
}

/// Formats a sample value the way Prometheus reads it.
private func format(_ v: Double) -> String {
  if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
  return "\(v)"
}

/// A counter or a gauge: one value.
final class PrometheusValue: PrometheusSeries, CounterHandler, FloatingPointCounterHandler, MeterHandler,
  RecorderHandler, Sendable
{
  let name: String
  let labels: String
  let type: String
  private let value = Mutex<Double>(0)

  init(name: String, labels: String, type: String) {
    self.name = name
    self.labels = labels
    self.type = type
  }

  func increment(by amount: Int64) { value.withLock { $0 += Double(amount) } }
  func increment(by amount: Double) { value.withLock { $0 += amount } }
  func decrement(by amount: Double) { value.withLock { $0 -= amount } }
  func reset() { value.withLock { $0 = 0 } }
  func set(_ v: Int64) { value.withLock { $0 = Double(v) } }
  func set(_ v: Double) { value.withLock { $0 = v } }
  func record(_ v: Int64) { set(v) }
  func record(_ v: Double) { set(v) }

  func render(into out: inout String) {
    let v = value.withLock { $0 }
    out += labels.isEmpty ? "\(name) \(format(v))\n" : "\(name){\(labels)} \(format(v))\n"
  }
}

/// A histogram: cumulative bucket counts, a sum and a count.
final class PrometheusHistogram: PrometheusSeries, RecorderHandler, TimerHandler, Sendable {
  let name: String
  let labels: String
  let type = "histogram"
  private let buckets: [Double]
  /// Divides each recorded value (1e9: nanoseconds to seconds).
  private let divisor: Double

  private struct Counts {
    var perBucket: [UInt64]
    /// In the recorded unit (divided by `divisor` when rendered).
    var sum = 0.0
    var count: UInt64 = 0
  }
  private let counts: Mutex<Counts>

  init(name: String, labels: String, buckets: [Double], divisor: Double) {
    self.name = name
    self.labels = labels
    self.buckets = buckets
    self.divisor = divisor
    counts = Mutex(Counts(perBucket: Array(repeating: 0, count: buckets.count)))
  }

  func record(_ v: Int64) { observe(Double(v)) }
  func record(_ v: Double) { observe(v) }
  func recordNanoseconds(_ duration: Int64) { observe(Double(duration)) }

  private func observe(_ v: Double) {
    let k = buckets.firstIndex { v / divisor <= $0 }
    counts.withLock { c in
      if let k { c.perBucket[k] += 1 }
      c.sum += v
      c.count += 1
    }
  }

  func render(into out: inout String) {
    let c = counts.withLock { $0 }
    let sep = labels.isEmpty ? "" : ","
    var cumulative: UInt64 = 0
    for (k, bound) in buckets.enumerated() {
      cumulative += c.perBucket[k]
      out += "\(name)_bucket{\(labels)\(sep)le=\"\(format(bound))\"} \(cumulative)\n"
    }
    out += "\(name)_bucket{\(labels)\(sep)le=\"+Inf\"} \(c.count)\n"
    let braces = labels.isEmpty ? "" : "{\(labels)}"
    out += "\(name)_sum\(braces) \(format(c.sum / divisor))\n"
    out += "\(name)_count\(braces) \(c.count)\n"
  }
}
