import Raft

/// The simulated network: each message is delivered after a random delay, or dropped, or
/// delivered twice; messages of one pair (from, to) keep their order, except a duplicate, which
/// comes later (as a retransmission would); different pairs interleave freely. A partition drops
/// every message between its two sides until it heals.
final class SimNetwork {
  private struct InFlight {
    var at: Int
    var order: UInt64
    var message: Message
  }

  private struct Pair: Hashable {
    var from: UInt64
    var to: UInt64
  }

  private var dropRate: Double
  private var duplicateRate: Double
  private let maxDelay: Int
  /// Sorted by (at, order). Invariant: per pair, `at` never decreases with `order`.
  private var inFlight: [InFlight] = []
  private var lastAt: [Pair: Int] = [:]
  private var order: UInt64 = 0
  private var side: Set<UInt64>? = nil
  /// Snapshots dropped since the last `takeLostSnapshots` (their senders are told).
  private var lostSnapshots: [Message] = []

  init(dropRate: Double, duplicateRate: Double, maxDelay: Int) {
    self.dropRate = dropRate
    self.duplicateRate = duplicateRate
    self.maxDelay = maxDelay
  }

  var isPartitioned: Bool { side != nil }

  /// Cuts the nodes in `side` off from the others.
  func partition(_ side: Set<UInt64>) { self.side = side }

  func heal() { side = nil }

  /// No more drops or duplicates (the delays stay).
  func stopFaults() {
    dropRate = 0
    duplicateRate = 0
  }

  func send(_ m: Message, at now: Int, _ rng: inout SimRandom) {
    if rng.chance(dropRate) || cut(m) {
      if m.type == .msgSnap { lostSnapshots.append(m) }
      return
    }
    let pair = Pair(from: m.from, to: m.to)
    let at = max(now + rng.within(1...maxDelay), lastAt[pair] ?? 0)
    lastAt[pair] = at
    enqueue(InFlight(at: at, order: nextOrder(), message: m))
    if rng.chance(duplicateRate) {
      enqueue(InFlight(at: at + rng.within(1...20), order: nextOrder(), message: m))
    }
  }

  /// The messages due at `now`, in delivery order (a partition drops those crossing it).
  func due(at now: Int, _ rng: inout SimRandom) -> [Message] {
    var out: [Message] = []
    var k = 0
    while k < inFlight.count && inFlight[k].at <= now {
      let m = inFlight[k].message
      if !cut(m) {
        out.append(m)
      } else if m.type == .msgSnap {
        lostSnapshots.append(m)
      }
      k += 1
    }
    inFlight.removeFirst(k)
    return out
  }

  func takeLostSnapshots() -> [Message] {
    defer { lostSnapshots = [] }
    return lostSnapshots
  }

  private func cut(_ m: Message) -> Bool {
    guard let side else { return false }
    return side.contains(m.from) != side.contains(m.to)
  }

  private func nextOrder() -> UInt64 {
    order += 1
    return order
  }

  private func enqueue(_ f: InFlight) {
    // Binary search for the first element after (at, order).
    var lo = 0
    var hi = inFlight.count
    while lo < hi {
      let mid = (lo + hi) / 2
      if inFlight[mid].at <= f.at { lo = mid + 1 } else { hi = mid }
    }
    inFlight.insert(f, at: lo)
  }
}
