import Raft

/// A seeded random source: the only randomness of a simulation (Raft's SplitMix64).
public struct SimRandom: Sendable {
  private var generator: SplitMix64

  public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

  public mutating func next() -> UInt64 { generator.next() }

  /// A number in `0..<n` (n > 0).
  public mutating func below(_ n: Int) -> Int {
    precondition(n > 0, "SimRandom.below: empty range")
    return Int(next() % UInt64(n))
  }

  /// A number in `range`.
  public mutating func within(_ range: ClosedRange<Int>) -> Int { range.lowerBound + below(range.count) }

  /// True with probability `p`.
  public mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }

  /// A random element of a non-empty collection.
  public mutating func pick<C: Collection>(_ c: C) -> C.Element {
    c[c.index(c.startIndex, offsetBy: below(c.count))]
  }
}

/// A node's disk as the WAL gives it: the state that is durable, and the writes made since the
/// last sync. A crash loses the unsynced writes, except that a prefix of them may have reached
/// the platter, the last of those possibly torn (a prefix of its records: snapshot, entries,
/// hard state, in the WAL's order); a record itself is never half there (the WAL's CRC cuts it).
struct SimDisk {
  /// One write: what one `WAL.append` takes.
  struct Write {
    var snapshot: Snapshot?
    var entries: [Entry]
    var hardState: HardState?
  }

  private(set) var hardState = HardState()
  /// The hard state as recovery gives it: a snapshot's index is committed (a torn write can keep
  /// an installed snapshot's record and lose the hard state written after it), so the commit
  /// index is raised to it, as the WAL's recovery does.
  var recoveredHardState: HardState {
    var hs = hardState
    hs.commit = max(hs.commit, snapshot.metadata.index)
    return hs
  }
  private(set) var snapshot = Snapshot()
  /// The log above the snapshot. Invariant: consecutive, starting at `snapshot.index + 1`.
  private(set) var entries: [Entry] = []
  /// Members this node saw removed (etcd keeps them in its membership store and refuses their
  /// messages, so that a removed member that never learned it cannot disrupt the cluster).
  /// Kept across crashes.
  var removedMembers: Set<UInt64> = []
  /// Written, not yet synced, oldest first.
  private(set) var pending: [Write] = []

  /// The hard state as the disk will have it once the pending writes are synced.
  var latestHardState: HardState {
    pending.last(where: { $0.hardState != nil })?.hardState ?? hardState
  }

  mutating func write(_ w: Write) { pending.append(w) }

  mutating func sync() {
    for w in pending { persist(w) }
    pending.removeAll()
  }

  /// The machine dies: what survives of the unsynced writes is up to `rng`.
  mutating func crash(_ rng: inout SimRandom) {
    let reached = rng.below(pending.count + 1)
    for k in 0..<reached {
      if k == reached - 1 && rng.chance(0.5) {
        persistTorn(pending[k], &rng)
      } else {
        persist(pending[k])
      }
    }
    pending.removeAll()
  }

  /// A snapshot taken by the application, saved durably at once (the WAL writes and syncs the
  /// snapshot file and its record); the log below it is compacted.
  mutating func saveSnapshot(_ s: Snapshot) {
    guard s.metadata.index > snapshot.metadata.index else { return }
    snapshot = s
    entries.removeAll { $0.index <= s.metadata.index }
  }

  private mutating func persist(_ w: Write) {
    if let s = w.snapshot { install(s) }
    append(w.entries)
    if let hs = w.hardState { hardState = hs }
  }

  private mutating func persistTorn(_ w: Write, _ rng: inout SimRandom) {
    let records = (w.snapshot == nil ? 0 : 1) + w.entries.count + (w.hardState == nil ? 0 : 1)
    guard records > 0 else { return }
    var keep = rng.below(records)  // fewer than all of them
    if let s = w.snapshot {
      if keep == 0 { return }
      install(s)
      keep -= 1
    }
    append(Array(w.entries.prefix(keep)))
  }

  /// A snapshot from the leader replaces the log.
  private mutating func install(_ s: Snapshot) {
    guard s.metadata.index > snapshot.metadata.index else { return }
    snapshot = s
    entries.removeAll()
  }

  private mutating func append(_ es: [Entry]) {
    let floor = snapshot.metadata.index
    let fresh = es.drop { $0.index <= floor }
    guard let first = fresh.first else { return }
    // Write order: a write of index i replaces the log from i on (a new leader's entries).
    precondition(first.index <= floor + UInt64(entries.count) + 1, "SimDisk: a gap in the log")
    entries.removeAll { $0.index >= first.index }
    entries += fresh
  }
}
