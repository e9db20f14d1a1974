/// One client operation on a key-value register, as the client saw it.
public struct ClientOperation: Sendable, Equatable, CustomStringConvertible {
  public enum Kind: Sendable, Equatable {
    /// Writes `value` (values are unique per history).
    case put(UInt64)
    /// Read the value (nil: the key was never written).
    case get(UInt64?)
  }

  public var client: Int
  public var key: UInt64
  public var kind: Kind
  /// When the client invoked it, and when it got the answer (nil: never, so it may or may not
  /// have taken effect: a write whose proposal was lost with a crash, say). Logical times,
  /// unique across the history.
  public var invoked: UInt64
  public var returned: UInt64?

  public var description: String {
    let what: String
    switch kind {
    case .put(let v): what = "put(k\(key), \(v))"
    case .get(let v): what = "get(k\(key)) = \(v.map(String.init) ?? "nil")"
    }
    return "client \(client) \(what) [\(invoked), \(returned.map(String.init) ?? "never")]"
  }
}

/// Checks that a history of register operations is linearizable: there is one order of the
/// operations, consistent with real time (an operation that returned before another was invoked
/// comes first), in which every read returns the latest write. Operations that never returned may
/// be placed anywhere after their invocation, or left out.
///
/// Keys are independent (a history is linearizable when each key's is), so each key is checked on
/// its own, by the Wing & Gong search with memoization of (operations placed, register value).
public enum LinearizabilityChecker {
  /// nil when `history` is linearizable; otherwise the key whose operations are not, and them.
  public static func check(_ history: [ClientOperation]) -> (key: UInt64, operations: [ClientOperation])? {
    let byKey = Dictionary(grouping: history, by: \.key)
    for key in byKey.keys.sorted() {
      let ops = byKey[key]!.sorted { $0.invoked < $1.invoked }
      if !linearizable(ops) { return (key, ops) }
    }
    return nil
  }

  /// The search for one key's operations (sorted by invocation).
  static func linearizable(_ ops: [ClientOperation]) -> Bool {
    let n = ops.count
    let words = (n + 63) / 64
    struct Key: Hashable {
      var placed: [UInt64]
      var value: UInt64?
    }
    var failed = Set<Key>()
    var placed = [UInt64](repeating: 0, count: words)
    let completed = ops.indices.filter { ops[$0].returned != nil }
    var completedLeft = completed.count

    func isPlaced(_ i: Int) -> Bool { placed[i / 64] & (1 << UInt64(i % 64)) != 0 }
    func flip(_ i: Int) { placed[i / 64] ^= 1 << UInt64(i % 64) }

    func search(_ value: UInt64?) -> Bool {
      if completedLeft == 0 { return true }
      let key = Key(placed: placed, value: value)
      if failed.contains(key) { return false }
      // The earliest answer among the operations not placed: anything placed next must have been
      // invoked before it.
      var horizon = UInt64.max
      for i in completed where !isPlaced(i) { horizon = min(horizon, ops[i].returned!) }
      for i in 0..<n where !isPlaced(i) {
        let op = ops[i]
        if op.invoked > horizon { break }  // sorted by invocation: no later one qualifies
        var next = value
        switch op.kind {
        case .put(let v): next = v
        case .get(let v):
          guard v == value else { continue }
        }
        flip(i)
        if op.returned != nil { completedLeft -= 1 }
        if search(next) { return true }
        if op.returned != nil { completedLeft += 1 }
        flip(i)
      }
      failed.insert(key)
      return false
    }
    return search(nil)
  }
}
