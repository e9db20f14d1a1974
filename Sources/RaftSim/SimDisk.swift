import Raft
import RaftEngine
import RaftWAL

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

/// A node's disk as the WAL gives it (the model behind `SimLog`): the state that is durable,
/// and the writes made since the last sync, each with the WAL's sequence number. A crash loses
/// the unsynced writes, except that a prefix of them may have reached the platter, the last of
/// those possibly torn (a prefix of its records: snapshot, entries, hard state, in the WAL's
/// order); a record itself is never half there (the WAL's CRC cuts it).
///
/// It outlives the node's processes: the simulation keeps it across crashes.
final class SimDisk {
  /// Fault injection (`--inject-skip-sync`): `sync` acknowledges the writes without making them
  /// durable, so a crash can lose acknowledged writes.
  let skipsSync: Bool

  init(skipsSync: Bool = false) { self.skipsSync = skipsSync }

  /// One write: what one `WAL.append` (or `appendDeferred`) takes.
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
  /// Written, not yet synced, oldest first.
  private(set) var pending: [Write] = []

  // The WAL's sequence numbers (they restart with each process, as the WAL's do).
  private(set) var nextSequence: UInt64 = 1
  /// The highest sequence durable together with every write before it.
  private(set) var durableSequence: UInt64 = 0

  /// Adds a write; returns its sequence. A write with nothing in it is durable as soon as every
  /// write before it is.
  func write(_ w: Write) -> UInt64 {
    let sequence = nextSequence
    nextSequence += 1
    if w.snapshot == nil && w.entries.isEmpty && w.hardState == nil {
      if pending.isEmpty { durableSequence = sequence }
    } else {
      pending.append(w)
    }
    return sequence
  }

  /// Adds a hard state that rides with the next sync; returns the sequence of the write before
  /// it (as the WAL's `appendDeferred`).
  func writeDeferred(_ hs: HardState) -> UInt64 {
    pending.append(Write(snapshot: nil, entries: [], hardState: hs))
    return nextSequence - 1
  }

  /// Makes every write so far durable.
  func sync() {
    if skipsSync {
      durableSequence = nextSequence - 1
      return
    }
    for w in pending { persist(w) }
    pending.removeAll()
    durableSequence = nextSequence - 1
  }

  /// The machine dies: what survives of the unsynced writes is up to `rng`. The next process
  /// starts its sequences over.
  func crash(_ rng: inout SimRandom) {
    let reached = rng.below(pending.count + 1)
    for k in 0..<reached {
      if k == reached - 1 && rng.chance(0.5) {
        persistTorn(pending[k], &rng)
      } else {
        persist(pending[k])
      }
    }
    pending.removeAll()
    nextSequence = 1
    durableSequence = 0
  }

  /// A snapshot taken by the application, saved durably at once (the WAL syncs everything
  /// written before, then writes and syncs the snapshot file and its record); the log below it
  /// is compacted.
  func saveSnapshot(_ s: Snapshot) {
    sync()
    guard s.metadata.index > snapshot.metadata.index else { return }
    snapshot = s
    entries.removeAll { $0.index <= s.metadata.index }
  }

  private func persist(_ w: Write) {
    if let s = w.snapshot { install(s) }
    append(w.entries)
    if let hs = w.hardState { hardState = hs }
  }

  private func persistTorn(_ w: Write, _ rng: inout SimRandom) {
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
  private func install(_ s: Snapshot) {
    guard s.metadata.index > snapshot.metadata.index else { return }
    snapshot = s
    entries.removeAll()
  }

  private func append(_ es: [Entry]) {
    let floor = snapshot.metadata.index
    let fresh = es.drop { $0.index <= floor }
    guard let first = fresh.first else { return }
    // Write order: a write of index i replaces the log from i on (a new leader's entries).
    precondition(first.index <= floor + UInt64(entries.count) + 1, "SimDisk: a gap in the log")
    entries.removeAll { $0.index >= first.index }
    entries += fresh
  }
}

/// Thrown by `SimLog.sync` when the simulation decides the machine dies before the sync.
struct SimulatedCrash: Error {}

/// The engine's log over the model disk: the `EngineLog` the simulated append side writes to,
/// as the engine's append worker writes to the WAL. What it made durable is visible to Raft
/// through `storage`.
final class SimLog: EngineLog {
  let disk: SimDisk
  /// What Raft reads.
  let storage: MemoryStorage
  /// Asked before each sync: true means the machine dies first (the caller crashes it).
  private let crashesBeforeSync: () -> Bool

  init(disk: SimDisk, storage: MemoryStorage, crashesBeforeSync: @escaping () -> Bool) {
    self.disk = disk
    self.storage = storage
    self.crashesBeforeSync = crashesBeforeSync
  }

  func append(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws -> UInt64 {
    disk.write(SimDisk.Write(snapshot: snapshot, entries: entries, hardState: hardState))
  }

  func appendDeferred(hardState: HardState) throws -> UInt64 { disk.writeDeferred(hardState) }

  var durableSequence: UInt64 { disk.durableSequence }

  func sync() throws {
    if crashesBeforeSync() { throw SimulatedCrash() }
    disk.sync()
  }

  func applyDurable(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws {
    if let snapshot { try storage.applySnapshot(snapshot) }
    if !entries.isEmpty { try storage.append(entries) }
    if let hardState { try storage.setHardState(hardState) }
  }

  func save(_ s: SnapshotSave) throws {
    let snap = try storage.createSnapshot(s.index, confState: s.confState, data: s.data)
    disk.saveSnapshot(snap)
    if let through = s.compactThrough { try storage.compact(through) }
  }
}

/// The engine's log over the real WAL (`--disk wal`): what the append worker writes to, with
/// the simulation's crash before a sync.
final class SimWALLog: EngineLog {
  let storage: WALStorage
  /// Asked before each sync: true means the machine dies first (the caller crashes it).
  private let crashesBeforeSync: () -> Bool

  init(storage: WALStorage, crashesBeforeSync: @escaping () -> Bool) {
    self.storage = storage
    self.crashesBeforeSync = crashesBeforeSync
  }

  func append(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws -> UInt64 {
    try storage.append(entries: entries, hardState: hardState, snapshot: snapshot)
  }

  func appendDeferred(hardState: HardState) throws -> UInt64 { try storage.appendDeferred(hardState: hardState) }

  var durableSequence: UInt64 { storage.durableSequence }

  func sync() throws {
    if crashesBeforeSync() { throw SimulatedCrash() }
    try storage.sync()
  }

  func applyDurable(entries: [Entry], hardState: HardState?, snapshot: Snapshot?) throws {
    try storage.applyDurable(entries: entries, hardState: hardState, snapshot: snapshot)
  }

  func save(_ s: SnapshotSave) throws { try storage.save(s) }
}
