import Raft
import XCTest

@testable import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// The real WAL on `FaultInjectingFileSystem`, through thousands of seeded power cuts (during
/// rolls, snapshot saves and compaction too): every acknowledged write comes back byte for
/// byte, recovery never refuses a log that only lost unsynced data, and it refuses data damaged
/// after it was synced. With `injectSkipSync` the same runs must find lost acknowledged writes.
///
/// `SWIFT_RAFT_POWER_CUTS` sets the cuts per I/O path (default 1,000: about 20 s in all in a
/// debug build; 100,000 is a long run).
final class PowerLossTests: XCTestCase {
  static var cutsPerIO: Int { Int(ProcessInfo.processInfo.environment["SWIFT_RAFT_POWER_CUTS"] ?? "") ?? 1000 }

  func testPowerCutsPosix() throws { try runCuts(TestIO(io: .posix)) }
  func testPowerCutsURingInline() throws { try runCuts(TestIO(io: .uring, writes: .inline)) }
  func testPowerCutsURingLinked() throws { try runCuts(TestIO(io: .uring, writes: .linked)) }

  private func runCuts(_ io: TestIO) throws {
    var totals = PowerLossRun.Totals()
    var seed: UInt64 = 1
    while totals.cuts < Self.cutsPerIO {
      var run = PowerLossRun(seed: seed, io: io, skipSync: false)
      let violations = try run.run(cuts: 4)
      XCTAssertEqual(violations, [], "\(io) seed \(seed)")
      if !violations.isEmpty { return }
      totals.add(run.totals)
      seed += 1
    }
    print(
      "power cuts \(io): \(totals.cuts) cuts, \(totals.writes) writes (\(totals.acknowledged) acknowledged), "
        + "\(totals.rolls) segment rolls, \(totals.snapshots) snapshots, \(totals.compactions) compactions; "
        + "\(totals.filesTorn) files kept a torn subset, \(totals.directoryOperationsLost) directory operations lost")
    // The cuts must have hit what they are meant to: rolls, snapshots, torn files, lost renames.
    XCTAssertGreaterThan(totals.rolls, 0)
    XCTAssertGreaterThan(totals.snapshots, 0)
    XCTAssertGreaterThan(totals.compactions, 0)
    XCTAssertGreaterThan(totals.filesTorn, 0)
    XCTAssertGreaterThan(totals.directoryOperationsLost, 0)
    XCTAssertGreaterThan(totals.acknowledged, totals.cuts)
  }

  /// The same runs with the sync skipped find acknowledged writes lost, on every I/O path: the
  /// checks above can fail.
  func testSkippingTheSyncIsCaught() throws {
    for io in TestIO.all {
      var found: [String] = []
      for seed in UInt64(1)...40 where found.isEmpty {
        var run = PowerLossRun(seed: seed, io: io, skipSync: true)
        found = try run.run(cuts: 4)
      }
      XCTAssertFalse(found.isEmpty, "\(io): 40 seeds without a sync lost nothing acknowledged")
      if let first = found.first { print("skip-sync \(io): \(first)") }
    }
  }

  /// Without the directory syncs, cuts lose a segment created by rename, and what was
  /// acknowledged in it: the syncs after each roll, snapshot save and removal are needed.
  func testSkippingTheDirectorySyncIsCaught() throws {
    for io in TestIO.all {
      var found: [String] = []
      for seed in UInt64(1)...300 where found.isEmpty {
        var run = PowerLossRun(seed: seed, io: io, skipSync: false, skipDirectorySync: true)
        found = try run.run(cuts: 4, steps: 200)
      }
      XCTAssertFalse(found.isEmpty, "\(io): 300 seeds without directory syncs lost nothing acknowledged")
      if let first = found.first { print("skip-directory-sync \(io): \(first)") }
    }
  }

  /// A byte damaged after it was synced, in a segment that is not the last (or far from the
  /// end of the last), makes recovery refuse, naming the file.
  func testDamageAfterSyncIsRefused() throws {
    for io in TestIO.all {
      var checked = 0
      for seed in UInt64(1)...200 where checked < 20 {
        var run = PowerLossRun(seed: seed, io: io, skipSync: false)
        try run.open()
        try run.live(steps: 250)
        try run.closeCleanly()
        guard let (file, offset) = run.syncedRecordByte() else { continue }
        run.fs.damage(file, offset: offset)
        XCTAssertThrowsError(try WAL(directory: PowerLossRun.directory, options: run.options, fileSystem: run.fs)) {
          guard case .corrupt(let f, _, _)? = $0 as? WALError else {
            return XCTFail("\(io) seed \(seed): expected corruption, got \($0)")
          }
          XCTAssertEqual(f, file)
        }
        checked += 1
      }
      XCTAssertGreaterThanOrEqual(checked, 20, "\(io): too few runs had synced records to damage")
    }
  }

  /// EIO or ENOSPC from a write or a sync: the WAL reports it and stops; nothing it
  /// acknowledged before is lost across a power cut, and nothing it did not is acknowledged.
  func testInjectedFailuresLoseNothingAcknowledged() throws {
    for io in TestIO.all {
      for (k, fault) in [(FaultInjectingFileSystem.Operation.sync, EIO), (.write, EIO), (.write, ENOSPC)]
        .enumerated()
      {
        var run = PowerLossRun(seed: 1000 + UInt64(k), io: io, skipSync: false)
        let violations = try run.runWithFault(fault.0, errno: fault.1)
        XCTAssertEqual(violations, [], "\(io) \(fault.0) errno \(fault.1)")
      }
      // A full disk: writes beyond the capacity fail with ENOSPC.
      var run = PowerLossRun(seed: 2000, io: io, skipSync: false)
      XCTAssertEqual(try run.runUntilFull(), [], "\(io) disk full")
    }
  }

  /// The fault layer itself: a creation, rename or removal no directory sync covered can be
  /// lost; a synced one never is; unsynced bytes can be lost, synced ones never.
  func testTheFileSystemModel() throws {
    var lostCreate = false
    var keptCreate = false
    for seed in UInt64(1)...64 {
      let fs = FaultInjectingFileSystem()
      try fs.makeDirectory("/d")
      let fd = try fs.open("/d/a", O_RDWR | O_CREAT)
      try [UInt8](repeating: 7, count: 1000).withUnsafeBytes { try fs.write(fd, $0, offset: 0, file: "a") }
      try fs.sync(fd, .datasync, file: "a")
      try [UInt8](repeating: 9, count: 600).withUnsafeBytes { try fs.write(fd, $0, offset: 1000, file: "a") }
      let synced = try fs.open("/d/b", O_RDWR | O_CREAT)
      try fs.syncDirectory("/d")
      let (after, _) = fs.powerCut(seed: seed)
      XCTAssertThrowsError(try fs.list("/d"), "a cut file system is dead")
      XCTAssertNotNil(after.contents(of: "/d/b"), "a synced creation survives")
      _ = synced
      let a = try XCTUnwrap(after.contents(of: "/d/a"))
      XCTAssertEqual(Array(a.prefix(1000)), [UInt8](repeating: 7, count: 1000), "synced bytes survive")
      XCTAssertTrue(a.count <= 1600 && a.dropFirst(1000).allSatisfy { $0 == 9 || $0 == 0 })

      let fresh = FaultInjectingFileSystem()
      try fresh.makeDirectory("/d")
      let c = try fresh.open("/d/c", O_RDWR | O_CREAT)
      try fresh.sync(c, .datasync, file: "c")
      if fresh.powerCut(seed: seed).0.contents(of: "/d/c") == nil { lostCreate = true } else { keptCreate = true }
    }
    XCTAssertTrue(lostCreate && keptCreate, "an unsynced creation is sometimes lost, sometimes kept")
  }
}

/// One seeded run: a WAL written at random (entries, overwrites, hard states, snapshots,
/// compaction; submits, polls and waits in between), power cuts at random points, and the
/// check after each reopening.
struct PowerLossRun {
  static let directory = "/data/wal"

  struct Totals {
    var cuts = 0
    var writes = 0
    var acknowledged = 0
    var rolls = 0
    var snapshots = 0
    var compactions = 0
    var filesTorn = 0
    var directoryOperationsLost = 0

    mutating func add(_ t: Totals) {
      cuts += t.cuts
      writes += t.writes
      acknowledged += t.acknowledged
      rolls += t.rolls
      snapshots += t.snapshots
      compactions += t.compactions
      filesTorn += t.filesTorn
      directoryOperationsLost += t.directoryOperationsLost
    }
  }

  /// The durable state a recovery may return.
  struct State: Equatable {
    var snapshot = Snapshot()
    /// Entries above the snapshot.
    var entries: [Entry] = []
    var hardState = HardState()

    var lastIndex: UInt64 { snapshot.metadata.index + UInt64(entries.count) }

    func term(at index: UInt64) -> UInt64 {
      if index == snapshot.metadata.index { return snapshot.metadata.term }
      return entries[Int(index - snapshot.metadata.index - 1)].term
    }

    /// A write's records in WAL order: entries (a lower first index replaces the log from
    /// there), then the hard state.
    mutating func apply(entries es: [Entry]) {
      guard let first = es.first else { return }
      let floor = snapshot.metadata.index
      entries.removeLast(Int(lastIndex - (first.index - 1)))
      precondition(first.index > floor)
      entries += es
    }

    mutating func apply(snapshot s: Snapshot) {
      let md = s.metadata
      entries.removeFirst(Int(md.index - snapshot.metadata.index))
      snapshot = s
    }

    mutating func apply(_ w: Write) {
      switch w {
      case .entries(let es, let hs):
        apply(entries: es)
        hardState = hs
      case .snapshot(let snap): apply(snapshot: snap)
      }
    }
  }

  /// One write of the current life, as the WAL takes it.
  enum Write {
    case entries([Entry], HardState)
    case snapshot(Snapshot)
  }

  var rng: SplitMix64
  let io: TestIO
  let options: WALOptions
  var fs = FaultInjectingFileSystem()
  var wal: WAL?
  /// The state when the current life began (what recovery returned), and its writes since.
  var base = State()
  var writes: [Write] = []
  var totals = Totals()

  init(seed: UInt64, io: TestIO, skipSync: Bool, skipDirectorySync: Bool = false) {
    rng = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15)
    self.io = io
    var o = WALOptions()
    o.io = io.io
    o.uringWrites = io.writes
    o.segmentBytes = 64 << 10
    o.recordBytesMax = 1024
    o.batchBytesMax = 4096
    o.batchesInFlightMax = 4
    o.syncsInFlightMax = 2
    o.ringDepth = 16
    o.segmentPreparation = .zeroFill
    o.spareInBackground = false  // deterministic for a seed
    o.injectSkipSync = skipSync
    o.injectSkipDirectorySync = skipDirectorySync
    options = o
  }

  mutating func random(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
  mutating func chance(_ percent: Int) -> Bool { random(100) < percent }

  /// `cuts` lives, each ended by a power cut (half of them at a random operation: between a
  /// write and its sync, a rename and its directory sync, inside a roll); returns the
  /// violations found.
  mutating func run(cuts: Int, steps: Int = 60) throws -> [String] {
    try open()
    for _ in 0..<cuts {
      if chance(50) { fs.dieAfter(operations: random(200)) }
      do {
        try live(steps: 5 + random(steps))
      } catch let e as WALError {
        guard fs.isDead else { throw e }
      }
      if let v = try cutAndCheck() { return [v] }
    }
    return []
  }

  mutating func open() throws {
    let w = try WAL(directory: Self.directory, options: options, fileSystem: fs)
    let r = w.recovered
    base = State(snapshot: r.snapshot, entries: r.entries, hardState: r.hardState)
    writes = []
    w.releaseRecovered()
    wal = w
  }

  /// The state after the writes of this life so far.
  var state: State {
    var s = base
    for w in writes { s.apply(w) }
    return s
  }

  /// Writes at random for `steps` steps.
  mutating func live(steps: Int) throws {
    let wal = self.wal!
    var s = state
    for _ in 0..<steps {
      let segmentsBefore = wal.stats.segmentsStarted
      if chance(8) && s.hardState.commit > s.snapshot.metadata.index {
        // A snapshot of the state machine at a committed index; compaction behind it.
        let index = s.snapshot.metadata.index + 1 + UInt64(random(Int(s.hardState.commit - s.snapshot.metadata.index)))
        let md = SnapshotMetadata(confState: ConfState(voters: [1]), index: index, term: s.term(at: index))
        let snap = Snapshot(
          data: (0..<(1 + random(300))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, metadata: md)
        writes.append(.snapshot(snap))  // first: a write that fails part-way may still be on disk
        try wal.saveSnapshot(snap)
        s.apply(snapshot: snap)
        totals.snapshots += 1
        if chance(60) {
          try wal.sync()
          try wal.compact(through: index)
          totals.compactions += 1
        }
      } else {
        // Entries: usually appended; sometimes a new term replaces the uncommitted tail.
        var term = max(s.hardState.term, s.entries.last?.term ?? s.snapshot.metadata.term, 1)
        var first = s.lastIndex + 1
        if chance(10) && s.lastIndex > s.hardState.commit {
          first = s.hardState.commit + 1 + UInt64(random(Int(s.lastIndex - s.hardState.commit)))
          term += 1
        }
        let count = 1 + random(8)
        let es = (0..<count).map { k in
          Entry(
            term: term, index: first + UInt64(k),
            data: (0..<(1 + random(300))).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        let last = first + UInt64(count) - 1
        let commit = max(s.hardState.commit, min(last, s.hardState.commit + UInt64(random(6))))
        let hs = HardState(term: term, vote: 1, commit: commit)
        writes.append(.entries(es, hs))
        try wal.append(entries: es, hardState: hs)
        s.apply(entries: es)
        s.hardState = hs
      }
      totals.writes += 1
      switch random(4) {
      case 0: try wal.submit()
      case 1: try wal.poll()
      case 2:
        try wal.submit()
        try wal.waitForCompletion()
      default: break
      }
      if wal.stats.segmentsStarted > segmentsBefore { totals.rolls += 1 }
    }
    if chance(50) { try wal.poll() }
  }

  /// Cuts the power, reopens, and checks what came back; returns a violation, if any.
  mutating func cutAndCheck() throws -> String? {
    let acked = Int(wal!.durableSequence)
    totals.acknowledged += acked
    totals.cuts += 1
    let (next, report) = fs.powerCut(seed: rng.next())
    totals.filesTorn += report.keptSubset
    totals.directoryOperationsLost += report.directoryOperationsLost
    wal = nil  // the dead machine's WAL: it quiesces its ring and closes on the dead file system
    fs = next
    let before = base
    let writes = self.writes
    do {
      try open()
    } catch {
      return "recovery refused a log that only lost unsynced data: \(error)"
    }
    let got = base
    if Self.recoverable(got, from: before, writes: writes, acknowledged: acked) { return nil }
    var want = before
    for w in writes.prefix(acked) { want.apply(w) }
    var why = "recovered \(got.snapshot.metadata.index)+\(got.entries.count) entries, hard state \(got.hardState)"
    why += "; acknowledged \(acked) of \(writes.count) writes:"
    why += " \(want.snapshot.metadata.index)+\(want.entries.count) entries, hard state \(want.hardState)"
    if let k = zip(got.entries, want.entries).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
      why += "; entry \(got.entries[k].index) differs"
    }
    return "an acknowledged write was lost or changed: " + why
  }

  /// Whether `got` is a state recovery may return: every acknowledged write, then any prefix
  /// of the later ones' records (a torn batch keeps a prefix of its records).
  static func recoverable(_ got: State, from base: State, writes: [Write], acknowledged acked: Int) -> Bool {
    var s = base
    for (k, w) in writes.enumerated() {
      if k >= acked {
        if got == s { return true }
        switch w {
        case .entries(let es, _):
          // The state with the first n entries of this write and not its hard state.
          guard got.snapshot == s.snapshot, got.hardState == s.hardState, let first = es.first else { break }
          let kept = Int(first.index - s.snapshot.metadata.index - 1)
          let extra = got.entries.count - kept
          if extra >= 1, extra <= es.count, got.entries[..<kept] == s.entries[..<kept],
            got.entries[kept...] == es[..<extra]
          {
            return true
          }
        case .snapshot: break
        }
      }
      s.apply(w)
    }
    return got == s
  }

  /// Makes everything durable and closes the WAL (no cut).
  mutating func closeCleanly() throws {
    try wal?.close()
    wal = nil
  }

  /// A byte inside a synced record whose damage recovery must see: in a segment that is not
  /// the last, or in the last far enough from its end that no torn write explains it.
  mutating func syncedRecordByte() -> (String, Int)? {
    guard let names = try? fs.list(Self.directory) else { return nil }
    let segments = names.filter { SegmentNames.parse($0) != nil }.sorted {
      SegmentNames.parse($0)!.sequence < SegmentNames.parse($1)!.sequence
    }
    var spots: [(String, Int)] = []
    for (k, name) in segments.enumerated() {
      let path = Self.directory + "/" + name
      guard let image = fs.contents(of: path), let p = SegmentNames.parse(name) else { continue }
      var records: [WALInspection.Record] = []
      let scan = WALInspection.scan(
        segmentImage: image, sequence: p.sequence, firstIndex: p.firstIndex, recordBytesMax: options.recordBytesMax
      ) { records.append($0) }
      let end = scan.segments.first?.validBytes ?? 0
      for r in records where k < segments.count - 1 || r.offset + r.bytes < end - options.unsyncedBytesMax {
        spots.append((path, r.offset + random(r.bytes)))
      }
    }
    return spots.isEmpty ? nil : spots[random(spots.count)]
  }

  /// Writes with `operation` failing once with `errno` part-way; then a cut and the check.
  mutating func runWithFault(_ operation: FaultInjectingFileSystem.Operation, errno: Int32) throws -> [String] {
    try open()
    try live(steps: 30)
    try wal!.sync()
    fs.failNext(operation, errno: errno, pathContaining: ".wal")
    do {
      try live(steps: 40)
      try wal!.sync()
      return ["\(operation) errno \(errno): the WAL never reported the injected failure"]
    } catch let e as WALError {
      guard case .io(_, _, let got) = e, got == errno else { return ["unexpected error \(e)"] }
    }
    // The WAL is unusable now; what it acknowledged survives the cut.
    if let w = wal, (try? w.sync()) != nil { return ["the WAL accepted a sync after a failure"] }
    if let v = try cutAndCheck() { return [v] }
    return []
  }

  /// Writes until the file system is full (ENOSPC); then a cut and the check.
  mutating func runUntilFull() throws -> [String] {
    try open()
    try live(steps: 20)
    try wal!.sync()
    fs.capacityBytes = (try fs.list(Self.directory)).count * (64 << 10) + 20_000
    do {
      for _ in 0..<200 { try live(steps: 20) }
      try wal!.sync()
      return ["the disk never filled"]
    } catch let e as WALError {
      guard case .io(_, _, let got) = e, got == ENOSPC else { return ["unexpected error \(e)"] }
    }
    if let v = try cutAndCheck() { return [v] }
    return []
  }
}
