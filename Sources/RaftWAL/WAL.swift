import Raft

#if canImport(Glibc)
  import Glibc
#endif

/// The state a WAL rebuilt when it was opened.
public struct WALState: Sendable {
  /// The latest hard state (all zero when none was saved).
  public var hardState = HardState()
  /// The latest snapshot, data included (the empty snapshot when none was saved).
  public var snapshot = Snapshot()
  /// The log above the snapshot, consecutive from `snapshot.metadata.index + 1`.
  public var entries: [Entry] = []

  public init() {}
}

/// Counters of what the WAL has done since it was opened.
public struct WALStats: Sendable, Equatable {
  /// Batches submitted (one write and one sync each, unless a short write was resumed).
  public var batches: UInt64 = 0
  /// Entry records written.
  public var entries: UInt64 = 0
  /// Bytes of records written (framing included).
  public var bytes: UInt64 = 0
  /// Syncs that completed: one per batch on posix and with linked io_uring writes; with inline
  /// io_uring writes one sync may cover several batches.
  public var syncs: UInt64 = 0
  /// Segments started (rolls).
  public var segmentsStarted: UInt64 = 0
}

/// A durable Raft log: segment files of records framed with CRC32C, written in batches with one
/// write and one sync each (group commit), through io_uring or pwritev + fdatasync.
///
/// **Threading.** A `WAL` is owned by one thread (the append worker's); none of its methods
/// may be called concurrently. Nothing here blocks on another thread except `close` and a
/// segment roll waiting for the spare segment.
///
/// **Writes and acknowledgements.** `append` adds one write (the content of one
/// `MsgStorageAppend`: a snapshot, entries, a hard state) to the open batch and returns its
/// sequence number. The batch is submitted when it is full, by `submit()`, or by
/// `submitIfDue(nowNanoseconds:)` once its linger time has passed. `durableSequence` is the
/// highest sequence number whose batch and every batch before it are durable: completions may
/// arrive out of order, acknowledgements never do.
///
/// **Durability.** A batch is reported durable only after its sync completed. Only the last
/// segment ever holds unsynced bytes: before writing into a new segment, every earlier batch is
/// made durable. So after a crash, damage can only be a torn tail of the last segment, which
/// `open` cuts off; damage anywhere else is corruption and `open` refuses.
public final class WAL {
  /// One batch buffer: records in the order they will be on disk.
  final class Batch {
    @exclusivity(unchecked) var buffer: UnsafeMutableRawBufferPointer
    @exclusivity(unchecked) var used = 0
    @exclusivity(unchecked) var entries = 0
    /// The highest write sequence whose last record is in this batch or an earlier one.
    @exclusivity(unchecked) var lastSequence: UInt64 = 0
    /// When the first record a write waits for entered the batch (0: none yet).
    @exclusivity(unchecked) var openedAtNanoseconds: UInt64 = 0
    /// True once a write that waits for durability has a record here; a batch holding only
    /// deferred records (`appendDeferred`) is never due on its own.
    @exclusivity(unchecked) var needsSync = false
    @exclusivity(unchecked) var submittedAtNanoseconds: UInt64 = 0
    @exclusivity(unchecked) var durable = false

    init(capacity: Int) {
      buffer = .allocate(byteCount: capacity, alignment: 4096)
    }

    deinit { if owned { buffer.deallocate() } }

    /// False once `leak` gave the memory up (the kernel may still read it).
    private var owned = true

    func leak() { owned = false }

    /// Makes room for `n` more bytes (only for the open batch: an in-flight one must not move).
    func reserve(_ n: Int) {
      guard used + n > buffer.count else { return }
      var capacity = buffer.count * 2
      while capacity < used + n { capacity *= 2 }
      let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 4096)
      if used > 0 { grown.baseAddress!.copyMemory(from: buffer.baseAddress!, byteCount: used) }
      buffer.deallocate()
      buffer = grown
    }
  }

  /// A live segment.
  struct SegmentInfo {
    var name: String
    var sequence: UInt64
    /// The largest entry index ever written to it (0 when none): compaction removes the
    /// segment once this is at or below the compacted index.
    var maxEntryIndex: UInt64
  }

  /// The directory holding the segments and snapshot files.
  public let directory: String
  public let options: WALOptions
  /// The I/O path in use: `.posix` when io_uring was asked for but could not be set up.
  public let io: WALOptions.IO
  /// What `open` rebuilt; `releaseRecovered()` frees it once the caller has taken it over.
  public private(set) var recovered: WALState
  /// What the scan at open found (segments, a torn tail that was cut).
  public let inspection: WALInspection
  @exclusivity(unchecked) public private(set) var stats = WALStats()

  /// What one acknowledged batch cost, for metrics.
  public struct BatchReport: Sendable {
    /// Entry records in the batch.
    public var entries: Int
    /// Bytes written (framing included).
    public var bytes: Int
    /// From submission to the acknowledgement.
    public var syncNanoseconds: UInt64
  }

  /// Called on the owner thread for every batch as it is acknowledged, in order.
  public var batchObserver: ((BatchReport) -> Void)?

  private let logger: RaftLogger
  private let backend: BatchIO
  private let spare: SparePreparer

  @exclusivity(unchecked) private var segments: [SegmentInfo]
  /// The segment being written (the last of `segments`).
  /// One descriptor of the current segment per batch slot: every sync in flight has its own
  /// open file, so a writeback error is reported to each sync it concerns (Linux reports an
  /// error once per open file, to the first sync that looks).
  private var fds: [Int32] = []
  /// Keeps a second WAL from opening the directory (`flock` on `LOCK`).
  private var lockFD: Int32 = -1
  private var path: String
  private var capacity: Int
  /// Where the next submitted batch starts in the current segment.
  /// Invariant: `writeOffset + open.used <= capacity`.
  ///
  /// (The mutable state is `@exclusivity(unchecked)`: a WAL has one owner thread by contract,
  /// and the dynamic checks cost more than the encoding on the append path.)
  @exclusivity(unchecked) private var writeOffset: Int
  /// True until the current segment's header and state prologue are in a batch.
  @exclusivity(unchecked) private var needsPrologue: Bool

  @exclusivity(unchecked) private var slots: [Batch]
  @exclusivity(unchecked) private var openSlot: Int
  @exclusivity(unchecked) private var freeSlots: [Int]
  /// Submitted batches in submission order; the front is the oldest not yet acknowledged.
  @exclusivity(unchecked) private var inFlight: [Int] = []
  @exclusivity(unchecked) private var completed: [Int] = []
  /// Scratch: the encoded size of each entry of the write being appended.
  @exclusivity(unchecked) private var sizes: [Int] = []

  @exclusivity(unchecked) private var nextSequence: UInt64 = 1
  /// The highest write sequence that is durable, together with every write before it.
  @exclusivity(unchecked) public private(set) var durableSequence: UInt64 = 0

  /// The log as written so far (durable or not): what segment prologues and names record.
  @exclusivity(unchecked) private var lastIndex: UInt64
  /// The last hard state written (or recovered).
  @exclusivity(unchecked) public private(set) var hardState: HardState
  @exclusivity(unchecked) private var snapshot: SnapshotMetadata
  /// The first error; once set, the WAL refuses everything (it must be reopened).
  @exclusivity(unchecked) private var failure: WALError? = nil
  @exclusivity(unchecked) private var closed = false
  /// Batches and bytes written before the current segment, and into the previous one: what
  /// `.auto` segment preparation decides on.
  private var segmentBatchesAtStart: UInt64 = 0
  private var segmentBytesAtStart: UInt64 = 0
  private var lastSegmentBatches: UInt64 = 0
  private var lastSegmentBytes: UInt64 = 0

  /// Opens (or creates) the WAL in `directory`: scans every segment, cuts a torn tail of the
  /// last one, and refuses to open on corruption anywhere else.
  public init(directory: String, options: WALOptions = WALOptions(), logger: RaftLogger = DiscardLogger())
    throws(WALError)
  {
    try options.validate()
    self.directory = directory
    self.options = options
    self.logger = logger
    try FileIO.makeDirectory(directory)
    lockFD = try FileIO.open(FileIO.path(directory, "LOCK"), O_RDWR | O_CREAT)
    if flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
      let err = errno
      FileIO.close(lockFD)
      throw err == EWOULDBLOCK
        ? .invalidRequest("\(directory) is in use by another WAL (LOCK is held)")
        : .io(operation: "flock", file: FileIO.path(directory, "LOCK"), errno: err)
    }
    for n in try FileIO.list(directory) where n == SegmentNames.spare || n.hasSuffix(".snap.tmp") {
      try FileIO.unlink(FileIO.path(directory, n))
    }

    var scan: WALInspection
    do throws(WALError) {
      scan = try WALScanner.scan(
        directory: directory, recordBytesMax: options.recordBytesMax, unsyncedBytesMax: options.unsyncedBytesMax)
      if let c = scan.corruption { throw c }
      if let last = scan.segments.last {
        // A last segment without a header (its first batch never landed) takes the configured
        // size; a file shorter than its segment is extended with zeros.
        let cap =
          last.hasHeader ? last.capacityBytes : max(last.fileBytes / 4096 * 4096, options.segmentBytes)
        if let t = scan.tornTail {
          try WAL.cut(t, fileBytes: last.fileBytes, capacity: cap)
          logger.warning(
            "wal: cut a torn tail at \(t.file):\(t.offset) (\(t.bytes) bytes: \(t.reason)); it was never acknowledged")
        } else if last.fileBytes < cap {
          let t = WALInspection.TornTail(
            file: FileIO.path(directory, last.name), offset: last.validBytes, reason: "short file", bytes: 0)
          try WAL.cut(t, fileBytes: last.fileBytes, capacity: cap)
        }
        scan.segments[scan.segments.count - 1].capacityBytes = cap
      }
    } catch {
      FileIO.close(lockFD)
      throw error
    }
    inspection = scan
    var state = WALState()
    state.hardState = scan.hardState
    state.entries = scan.entries
    if scan.snapshot.index > 0 {
      state.snapshot = try SnapshotFiles.load(scan.snapshot, directory: directory)
    }
    recovered = state
    lastIndex = scan.lastIndex
    hardState = scan.hardState
    snapshot = scan.snapshot

    spare = SparePreparer(directory: directory, segmentBytes: options.segmentBytes, fsync: options.fsync)
    segments = scan.segments.map { SegmentInfo(name: $0.name, sequence: $0.sequence, maxEntryIndex: $0.maxEntryIndex) }
    if let last = scan.segments.last {
      path = FileIO.path(directory, last.name)
      capacity = last.capacityBytes
      writeOffset = last.validBytes
      needsPrologue = true  // a header if the segment has none, and the state after a restart
    } else {
      let name = SegmentNames.name(sequence: 0, firstIndex: lastIndex + 1)
      path = FileIO.path(directory, name)
      try FileIO.rename(try spare.take(), path)
      if options.fsync != .none { try FileIO.syncDirectory(directory) }
      segments = [SegmentInfo(name: name, sequence: 0, maxEntryIndex: 0)]
      capacity = options.segmentBytes
      writeOffset = 0
      needsPrologue = true
      stats.segmentsStarted += 1
    }

    var chosen: BatchIO = PosixBatchIO(fsync: options.fsync)
    if options.io == .uring {
      do throws(WALError) {
        if options.simulateURingUnavailable { throw .io(operation: "io_uring_setup", file: "-", errno: ENOSYS) }
        chosen = try URingBatchIO(
          depth: options.ringDepth, sqpoll: options.sqpoll, slots: options.batchesInFlightMax + 1,
          fsync: options.fsync, writes: options.uringWrites, syncsInFlightMax: options.syncsInFlightMax)
      } catch {
        logger.warning("wal: io_uring unavailable (\(error)); falling back to pwritev+fdatasync")
      }
    }
    backend = chosen
    io = chosen.kind
    if options.fsync == .none {
      logger.warning("wal: fsync mode none: nothing written is durable (for measurement only)")
    }

    let batchCapacity = min(options.batchBytesMax, 1 << 20) + 64 << 10
    slots = (0...options.batchesInFlightMax).map { _ in Batch(capacity: batchCapacity) }
    openSlot = 0
    freeSlots = Array((1...options.batchesInFlightMax).reversed())
    let segmentPath = path
    fds = try slots.indices.map { _ throws(WALError) in try FileIO.open(segmentPath, O_RDWR) }
    spare.start(nextPreparation())
    logger.info(
      "wal: opened \(directory) (\(segments.count) segments, entries \(scan.firstIndex)...\(scan.lastIndex), "
        + "io \(io), fsync \(options.fsync))")
  }

  deinit {
    if !closed { shutDown() }
  }

  /// Waits for the ring, then closes the files and releases the directory lock.
  private func shutDown() {
    closed = true
    if !backend.quiesce() {
      for b in slots { b.leak() }  // the kernel may still read them
    }
    for fd in fds { FileIO.close(fd) }
    fds = []
    spare.finish()
    FileIO.close(lockFD)
  }

  /// Zeroes a torn tail (and extends a file cut short back to its segment size), then syncs.
  private static func cut(_ t: WALInspection.TornTail, fileBytes: Int, capacity: Int) throws(WALError) {
    let fd = try FileIO.open(t.file, O_RDWR)
    defer { FileIO.close(fd) }
    try FileIO.writeZeros(fd, from: t.offset, to: t.offset + t.bytes, file: t.file)
    if fileBytes < capacity {
      try FileIO.writeZeros(fd, from: max(fileBytes, t.offset + t.bytes), to: capacity, file: t.file)
    }
    try FileIO.sync(fd, .fsync, file: t.file)
  }

  // MARK: - Writing

  /// The sequence number the next `append` gets.
  public var nextWriteSequence: UInt64 { nextSequence }
  /// Entries in the open (not yet submitted) batch.
  public var openBatchEntries: Int { slots[openSlot].entries }
  /// Bytes in the open batch.
  public var openBatchBytes: Int { slots[openSlot].used }
  /// Batches submitted and not yet acknowledged.
  public var batchesInFlight: Int { inFlight.count }
  /// The names of the live segment files, oldest first.
  public var segmentNames: [String] { segments.map(\.name) }

  /// Adds one write to the open batch: the snapshot (installed from a leader: it replaces the
  /// log), then the entries, then the hard state. Returns the write's sequence number, which
  /// `durableSequence` reaches once the write is durable.
  ///
  /// The entries must be consecutive and start at most one past the last index written; a
  /// lower start replaces the log from there on. A snapshot's data file is written and synced
  /// before this returns.
  @discardableResult
  public func append(entries: [Entry], hardState hs: HardState? = nil, snapshot snap: Snapshot? = nil)
    throws(WALError) -> UInt64
  {
    try checkUsable()
    var expected = snap.map { $0.metadata.index + 1 } ?? (lastIndex + 1)
    if let first = entries.first {
      let floor = snap?.metadata.index ?? snapshot.index
      guard first.index <= expected, first.index > floor else {
        throw .invalidRequest(
          "entries start at \(first.index); the log ends at \(expected - 1) and its snapshot is at \(floor)")
      }
      expected = first.index
    }
    sizes.removeAll(keepingCapacity: true)
    var total = 0
    for e in entries {
      guard e.index == expected else {
        throw .invalidRequest("entries are not consecutive: \(e.index) follows \(expected - 1)")
      }
      expected += 1
      let size = RaftCodec.encodedSize(e)
      guard size <= options.recordBytesMax else {
        throw .invalidRequest("entry \(e.index) is \(size) bytes, more than recordBytesMax \(options.recordBytesMax)")
      }
      sizes.append(size)
      total += size + RecordFraming.overheadBytes
    }
    if let hs, RaftCodec.encodedSize(hs) > options.recordBytesMax {
      throw .invalidRequest("the hard state record is larger than recordBytesMax \(options.recordBytesMax)")
    }
    if let snap, SnapshotRecord.payloadBytes(snap.metadata) > options.recordBytesMax {
      throw .invalidRequest("the snapshot metadata is larger than recordBytesMax \(options.recordBytesMax)")
    }
    if let snap {
      guard snap.metadata.index >= snapshot.index else {
        throw .invalidRequest("snapshot \(snap.metadata.index) is older than the saved snapshot \(snapshot.index)")
      }
      try guarded { () throws(WALError) in
        try SnapshotFiles.save(snap, directory: directory, fsync: options.fsync)
        try putSnapshotRecord(snap.metadata, replacesLog: true)
      }
      snapshot = snap.metadata
      lastIndex = snap.metadata.index
    }
    if !entries.isEmpty && !needsPrologue && writeOffset + slots[openSlot].used + total <= capacity
      && slots[openSlot].used + total <= options.batchBytesMax
    {
      putEntries(entries, bytes: total)
    } else {
      try guarded { () throws(WALError) in
        for (k, e) in entries.enumerated() { try putEntry(e, size: sizes[k]) }
      }
    }
    if let hs { try guarded { () throws(WALError) in try putHardState(hs) } }
    if let hs { hardState = hs }
    let seq = finishWrite()
    let open = slots[openSlot]
    if open.entries >= options.batchEntriesMax || open.used >= options.batchBytesMax {
      try submit()
    }
    return seq
  }

  /// Records a snapshot the application took of its own state: the data file, then a record
  /// that moves the log's base to the snapshot (the entries above it stay). Returns the write's
  /// sequence number. Make it durable (`sync()`) before compacting up to it.
  @discardableResult
  public func saveSnapshot(_ snap: Snapshot) throws(WALError) -> UInt64 {
    try checkUsable()
    guard SnapshotRecord.payloadBytes(snap.metadata) <= options.recordBytesMax else {
      throw .invalidRequest("the snapshot metadata is larger than recordBytesMax \(options.recordBytesMax)")
    }
    guard snap.metadata.index >= snapshot.index, snap.metadata.index <= lastIndex else {
      throw .invalidRequest(
        "snapshot \(snap.metadata.index) is outside [\(snapshot.index), \(lastIndex)] (saved snapshot, last index)")
    }
    try guarded { () throws(WALError) in
      try SnapshotFiles.save(snap, directory: directory, fsync: options.fsync)
      try putSnapshotRecord(snap.metadata, replacesLog: false)
    }
    snapshot = snap.metadata
    return finishWrite()
  }

  /// Adds a hard state that nobody waits for (etcd's `MustSync` is false: only the commit
  /// index moved, and a lost commit index is recomputed after a restart). The record rides in
  /// the open batch with the next write that is submitted; it never makes a batch due by
  /// itself. Returns the sequence of the write before it: the content is as durable as it
  /// needs to be once every earlier write is.
  @discardableResult
  public func appendDeferred(hardState hs: HardState) throws(WALError) -> UInt64 {
    try checkUsable()
    guard RaftCodec.encodedSize(hs) <= options.recordBytesMax else {
      throw .invalidRequest("the hard state record is larger than recordBytesMax \(options.recordBytesMax)")
    }
    try guarded { () throws(WALError) in try putHardState(hs) }
    hardState = hs
    let open = slots[openSlot]
    if !open.needsSync { open.openedAtNanoseconds = 0 }  // linger counts from the first write that waits
    return nextSequence - 1
  }

  /// Gives the write just added its sequence number. A write with no records (nothing to
  /// persist) is durable as soon as every write before it is.
  private func finishWrite() -> UInt64 {
    let seq = nextSequence
    nextSequence += 1
    let open = slots[openSlot]
    if open.used > 0 && !open.needsSync {
      open.needsSync = true
      if open.openedAtNanoseconds == 0 { open.openedAtNanoseconds = monotonicNanoseconds() }
    }
    if open.used == 0 {
      if let newest = inFlight.last {
        slots[newest].lastSequence = seq
      } else {
        durableSequence = seq
      }
    }
    open.lastSequence = seq
    return seq
  }

  /// Submits the open batch, if it holds anything. Waits for the oldest batch in flight first
  /// when `batchesInFlightMax` are in flight.
  public func submit() throws(WALError) {
    try checkUsable()
    try guarded { () throws(WALError) in try submitOpen() }
  }

  /// Submits the open batch when it is due: full, or older than the linger time, or at once
  /// when the linger time is 0 (a batch of deferred records only is never due). Returns the
  /// nanoseconds until it will be due (0 when it was submitted or is empty), for the caller's
  /// wait.
  @discardableResult
  public func submitIfDue(nowNanoseconds now: UInt64) throws(WALError) -> UInt64 {
    let open = slots[openSlot]
    guard open.used > 0, open.needsSync else { return 0 }
    let linger = UInt64(options.lingerMicroseconds) * 1000
    let age = now &- open.openedAtNanoseconds
    if linger == 0 || age >= linger || open.entries >= options.batchEntriesMax
      || open.used >= options.batchBytesMax
    {
      try submit()
      return 0
    }
    return linger - age
  }

  /// Collects completions without waiting; returns `durableSequence`.
  @discardableResult
  public func poll() throws(WALError) -> UInt64 {
    try checkUsable()
    if !inFlight.isEmpty { try guarded { () throws(WALError) in try reap(wait: false) } }
    return durableSequence
  }

  /// Waits until at least one more batch is acknowledged (or returns at once when none is in
  /// flight); returns `durableSequence`.
  @discardableResult
  public func waitForCompletion() throws(WALError) -> UInt64 {
    try checkUsable()
    let before = durableSequence
    try guarded { () throws(WALError) in
      while !inFlight.isEmpty && durableSequence == before { try reap(wait: true) }
    }
    return durableSequence
  }

  /// Submits the open batch and waits until every write so far is durable.
  public func sync() throws(WALError) {
    try checkUsable()
    try guarded { () throws(WALError) in
      try submitOpen()
      try drain()
    }
    assert(durableSequence == nextSequence - 1, "WAL: sync left writes unacknowledged")
  }

  // MARK: - Compaction

  /// Removes the segments whose entries are all at or below `index`, which must not be above
  /// the latest saved snapshot, and the snapshot files older than that snapshot. Makes
  /// everything written so far durable first.
  public func compact(through index: UInt64) throws(WALError) {
    try checkUsable()
    guard index <= snapshot.index else {
      throw .invalidRequest("cannot compact through \(index): the latest snapshot is at \(snapshot.index)")
    }
    try sync()
    var removed = 0
    try guarded { () throws(WALError) in
      // Oldest first, each removal made durable before the next, so that a crash never leaves a
      // gap in the sequence of segments.
      while segments.count > 1, segments[0].maxEntryIndex <= index {
        try FileIO.unlink(FileIO.path(directory, segments[0].name))
        if options.fsync != .none { try FileIO.syncDirectory(directory) }
        segments.removeFirst()
        removed += 1
      }
      if snapshot.index > 0 { try SnapshotFiles.removeAll(except: snapshot, directory: directory) }
    }
    if removed > 0 { logger.info("wal: compacted through \(index): removed \(removed) segments") }
  }

  /// Frees the recovered state once the caller has taken it over.
  public func releaseRecovered() { recovered = WALState() }

  /// Makes everything durable and closes the files. The WAL cannot be used afterwards.
  public func close() throws(WALError) {
    guard !closed else { return }
    defer { shutDown() }
    if failure == nil { try sync() }
  }

  // MARK: - Internals

  private func checkUsable() throws(WALError) {
    if let failure { throw .failed(failure.description) }
    if closed { throw .invalidRequest("the WAL is closed") }
  }

  /// Runs `body`; an error it throws makes the WAL unusable.
  private func guarded(_ body: () throws(WALError) -> Void) throws(WALError) {
    do {
      try body()
    } catch {
      if failure == nil {
        failure = error
        logger.error("wal: \(error); the WAL stops accepting writes")
      }
      throw error
    }
  }

  /// The append fast path: all of `entries` (`bytes` of records, sizes in `sizes`) fit in the
  /// current segment, so the open batch grows once and the records are written back to back.
  private func putEntries(_ entries: [Entry], bytes: Int) {
    let open = slots[openSlot]
    if open.used == 0 { open.openedAtNanoseconds = monotonicNanoseconds() }
    open.reserve(bytes)
    let base = open.buffer.baseAddress!
    var at = base + open.used
    sizes.withUnsafeBufferPointer { sizes in
      for k in entries.indices {
        let e = entries[k]
        at += RecordFraming.write(.entry, payloadBytes: sizes[k], at: at) { b in RaftCodec.encode(e, to: b) }
      }
    }
    precondition(at - base == open.used + bytes, "WAL: record sizes changed while encoding")
    open.used += bytes
    open.entries += entries.count
    stats.entries += UInt64(entries.count)
    let lastEntry = entries[entries.count - 1].index
    lastIndex = lastEntry
    let k = segments.count - 1
    if lastEntry > segments[k].maxEntryIndex { segments[k].maxEntryIndex = lastEntry }
  }

  private func putEntry(_ e: Entry, size: Int) throws(WALError) {
    let open = try room(for: size)
    open.used += RecordFraming.write(.entry, payloadBytes: size, at: open.buffer.baseAddress! + open.used) { b in
      RaftCodec.encode(e, to: b)
    }
    open.entries += 1
    stats.entries += 1
    lastIndex = e.index
    let k = segments.count - 1
    if e.index > segments[k].maxEntryIndex { segments[k].maxEntryIndex = e.index }
  }

  private func putHardState(_ hs: HardState) throws(WALError) {
    let size = RaftCodec.encodedSize(hs)
    let open = try room(for: size)
    open.used += RecordFraming.write(.hardState, payloadBytes: size, at: open.buffer.baseAddress! + open.used) { b in
      RaftCodec.encode(hs, to: b)
    }
  }

  private func putSnapshotRecord(_ md: SnapshotMetadata, replacesLog: Bool) throws(WALError) {
    let size = SnapshotRecord.payloadBytes(md)
    let open = try room(for: size)
    open.used += RecordFraming.write(.snapshot, payloadBytes: size, at: open.buffer.baseAddress! + open.used) { b in
      SnapshotRecord.write(md, replacesLog: replacesLog, to: b)
    }
  }

  /// The open batch with room for a record of `payloadBytes`, rolling to a new segment (and
  /// writing its prologue) when the current one cannot take it.
  @inline(__always)
  private func room(for payloadBytes: Int) throws(WALError) -> Batch {
    let size = payloadBytes + RecordFraming.overheadBytes
    if needsPrologue { try putPrologue() }
    if slots[openSlot].used > 0 && slots[openSlot].used + size > options.batchBytesMax {
      try submitOpen()  // a batch stays within batchBytesMax (plus one record): see unsyncedBytesMax
    }
    if writeOffset + slots[openSlot].used + size > capacity {
      try roll()
      try putPrologue()
    }
    let open = slots[openSlot]
    if open.used == 0 { open.openedAtNanoseconds = monotonicNanoseconds() }
    open.reserve(size)
    return open
  }

  /// The segment header (when the segment is empty), then the current hard state and snapshot:
  /// every segment can be read without the ones before it (which compaction removes), and after
  /// a restart the state is written again even if a torn tail took part of the first prologue.
  private func putPrologue() throws(WALError) {
    needsPrologue = false
    let open = slots[openSlot]
    if open.used == 0 { open.openedAtNanoseconds = monotonicNanoseconds() }
    let k = segments.count - 1
    let header = SegmentHeader(
      sequence: segments[k].sequence, firstIndex: SegmentNames.parse(segments[k].name)!.firstIndex,
      segmentBytes: UInt64(capacity), unsyncedBytesMax: UInt64(options.unsyncedBytesMax))
    let withHeader = writeOffset + open.used == 0
    let hsSize = RaftCodec.encodedSize(hardState)
    let snapSize = SnapshotRecord.payloadBytes(snapshot)
    let prologueBytes = SegmentHeader.payloadBytes + hsSize + snapSize + 3 * RecordFraming.overheadBytes
    if writeOffset + open.used + prologueBytes > capacity {
      precondition(!withHeader, "WAL: a segment prologue does not fit in an empty segment")
      try roll()
      return try putPrologue()
    }
    open.reserve(prologueBytes)
    let hs = hardState
    let md = snapshot
    if withHeader {
      open.used += RecordFraming.write(
        .segmentHeader, payloadBytes: SegmentHeader.payloadBytes, at: open.buffer.baseAddress! + open.used
      ) { b in header.write(to: b) }
    }
    open.used += RecordFraming.write(.hardState, payloadBytes: hsSize, at: open.buffer.baseAddress! + open.used) { b in
      RaftCodec.encode(hs, to: b)
    }
    if md.index > 0 {
      open.used += RecordFraming.write(.snapshot, payloadBytes: snapSize, at: open.buffer.baseAddress! + open.used) {
        b in SnapshotRecord.write(md, replacesLog: false, to: b)
      }
    }
    precondition(writeOffset + open.used <= capacity, "WAL: a segment prologue does not fit in the segment")
  }

  /// How to prepare the next spare: `.auto` picks fallocate once the batches written into the
  /// previous segment averaged `autoFallocateBatchBytes` or more (bandwidth-bound), zero-fill
  /// otherwise (sync-bound).
  private func nextPreparation() -> WALOptions.SegmentPreparation {
    switch options.segmentPreparation {
    case .zeroFill, .fallocate: return options.segmentPreparation
    case .auto:
      let batches = lastSegmentBatches
      guard batches > 0 else { return .zeroFill }
      return lastSegmentBytes / batches >= UInt64(options.autoFallocateBatchBytes) ? .fallocate : .zeroFill
    }
  }

  /// Makes every batch so far durable, then continues in a fresh segment: the only segment that
  /// may ever hold unsynced bytes is the last one.
  private func roll() throws(WALError) {
    try submitOpen()
    try drain()
    lastSegmentBatches = stats.batches - segmentBatchesAtStart
    lastSegmentBytes = stats.bytes - segmentBytesAtStart
    let next = segments[segments.count - 1].sequence + 1
    let name = SegmentNames.name(sequence: next, firstIndex: lastIndex + 1)
    let newPath = FileIO.path(directory, name)
    let sparePath = try spare.take()
    try FileIO.rename(sparePath, newPath)
    if options.fsync != .none { try FileIO.syncDirectory(directory) }
    let newFDs = try slots.indices.map { _ throws(WALError) in try FileIO.open(newPath, O_RDWR) }
    for fd in fds { FileIO.close(fd) }
    fds = newFDs
    path = newPath
    capacity = options.segmentBytes
    writeOffset = 0
    segments.append(SegmentInfo(name: name, sequence: next, maxEntryIndex: 0))
    stats.segmentsStarted += 1
    segmentBatchesAtStart = stats.batches
    segmentBytesAtStart = stats.bytes
    spare.start(nextPreparation())
    logger.debug("wal: started segment \(name)")
  }

  private func submitOpen() throws(WALError) {
    let open = slots[openSlot]
    guard open.used > 0 else { return }
    while inFlight.count >= options.batchesInFlightMax { try reap(wait: true) }
    precondition(writeOffset + open.used <= capacity, "WAL: a batch runs past the end of its segment")
    open.submittedAtNanoseconds = monotonicNanoseconds()
    open.durable = false
    try backend.start(
      slot: openSlot, fd: fds[openSlot], file: path,
      bytes: UnsafeRawBufferPointer(rebasing: open.buffer[0..<open.used]),
      offset: writeOffset)
    try backend.submit()
    writeOffset += open.used
    spare.writerProgress(bytes: writeOffset, of: capacity)
    stats.batches += 1
    stats.bytes += UInt64(open.used)
    inFlight.append(openSlot)
    let carried = open.lastSequence
    openSlot = freeSlots.removeLast()
    let fresh = slots[openSlot]
    fresh.used = 0
    fresh.entries = 0
    fresh.needsSync = false
    fresh.lastSequence = carried
    if backend.kind == .posix { try reap(wait: false) }
  }

  private func drain() throws(WALError) {
    while !inFlight.isEmpty { try reap(wait: true) }
  }

  /// Collects completions and acknowledges the batches at the front that are durable.
  private func reap(wait: Bool) throws(WALError) {
    completed.removeAll(keepingCapacity: true)
    try backend.reap(wait: wait, into: &completed)
    for slot in completed { slots[slot].durable = true }
    stats.syncs = backend.syncs
    while let first = inFlight.first, slots[first].durable {
      inFlight.removeFirst()
      let b = slots[first]
      assert(b.lastSequence >= durableSequence, "WAL: acknowledgements went backwards")
      durableSequence = b.lastSequence
      b.durable = false
      if let batchObserver {
        batchObserver(
          BatchReport(
            entries: b.entries, bytes: b.used, syncNanoseconds: monotonicNanoseconds() &- b.submittedAtNanoseconds))
      }
      freeSlots.append(first)
    }
  }
}
