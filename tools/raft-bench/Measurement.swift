/// Percentiles of a set of samples (exact: the samples are sorted).
struct Samples {
  private(set) var values: [UInt64] = []

  mutating func add(_ v: UInt64) { values.append(v) }

  var count: Int { values.count }

  /// The `p`-th percentile (0...100) by nearest rank; 0 when there are no samples.
  func percentile(_ p: Double) -> UInt64 {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
  }
}

/// `1234567` as "1,234,567".
func grouped(_ v: Double) -> String {
  let n = Int(v.rounded())
  let s = String(n)
  var out = ""
  for (i, c) in s.reversed().enumerated() {
    if i > 0 && i % 3 == 0 { out.append(",") }
    out.append(c)
  }
  return String(out.reversed())
}

func fixed(_ v: Double, _ digits: Int) -> String {
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  let r = (v * scale).rounded() / scale
  if digits == 0 { return String(Int(r)) }
  var s = String(r)
  if let dot = s.firstIndex(of: ".") {
    let decimals = s.distance(from: dot, to: s.endIndex) - 1
    if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
  } else if digits > 0 {
    s += "." + String(repeating: "0", count: digits)
  }
  return s
}

func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
  let n = s.count
  if n >= width { return s }
  return left ? s + String(repeating: " ", count: width - n) : String(repeating: " ", count: width - n) + s
}
