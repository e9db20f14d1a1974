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
  public internal(set) var recovered: WALState
  /// What the scan at open found (segments, a torn tail that was cut).
  public let inspection: WALInspection
  @exclusivity(unchecked) public internal(set) var stats = WALStats()

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

  let logger: RaftLogger
  /// Where every file and directory operation goes.
  public let fileSystem: any WALFileSystem
  let backend: BatchIO
  let spare: SparePreparer

  @exclusivity(unchecked) var segments: [SegmentInfo]
  /// The segment being written (the last of `segments`).
  /// One descriptor of the current segment per batch slot: every sync in flight has its own
  /// open file, so a writeback error is reported to each sync it concerns (Linux reports an
  /// error once per open file, to the first sync that looks).
  var fds: [Int32] = []
  /// Keeps a second WAL from opening the directory (`flock` on `LOCK`).
  var lockFD: Int32 = -1
  var path: String
  var capacity: Int
  /// Where the next submitted batch starts in the current segment.
  /// Invariant: `writeOffset + open.used <= capacity`.
  ///
  /// (The mutable state is `@exclusivity(unchecked)`: a WAL has one owner thread by contract,
  /// and the dynamic checks cost more than the encoding on the append path.)
  @exclusivity(unchecked) var writeOffset: Int
  /// True until the current segment's header and state prologue are in a batch.
  @exclusivity(unchecked) var needsPrologue: Bool

  @exclusivity(unchecked) var slots: [Batch]
  @exclusivity(unchecked) var openSlot: Int
  @exclusivity(unchecked) var freeSlots: [Int]
  /// Submitted batches in submission order; the front is the oldest not yet acknowledged.
  @exclusivity(unchecked) var inFlight: [Int] = []
  @exclusivity(unchecked) var completed: [Int] = []
  /// Scratch: the encoded size of each entry of the write being appended.
  @exclusivity(unchecked) var sizes: [Int] = []

  @exclusivity(unchecked) var nextSequence: UInt64 = 1
  /// The highest write sequence that is durable, together with every write before it.
  @exclusivity(unchecked) public internal(set) var durableSequence: UInt64 = 0

  /// The log as written so far (durable or not): what segment prologues and names record.
  @exclusivity(unchecked) var lastIndex: UInt64
  /// The last hard state written (or recovered).
  @exclusivity(unchecked) public internal(set) var hardState: HardState
  @exclusivity(unchecked) var snapshot: SnapshotMetadata
  /// The first error; once set, the WAL refuses everything (it must be reopened).
  @exclusivity(unchecked) var failure: WALError? = nil
  @exclusivity(unchecked) var closed = false
  /// Batches and bytes written before the current segment, and into the previous one: what
  /// `.auto` segment preparation decides on.
  var segmentBatchesAtStart: UInt64 = 0
  var segmentBytesAtStart: UInt64 = 0
  var lastSegmentBatches: UInt64 = 0
  var lastSegmentBytes: UInt64 = 0

  /// Opens (or creates) the WAL in `directory`: scans every segment, cuts a torn tail of the
  /// last one, and refuses to open on corruption anywhere else. Every file operation goes
  /// through `fileSystem` (the real one unless a test or the simulator gives another).
  public init(
    directory: String, options: WALOptions = WALOptions(), logger: RaftLogger = DiscardLogger(),
    fileSystem: any WALFileSystem = PosixFileSystem.shared
  ) throws(WALError) {
    try options.validate()
    self.directory = directory
    self.options = options
    self.logger = logger
    self.fileSystem = fileSystem
    let fs = fileSystem
    try fs.makeDirectory(directory)
    lockFD = try fs.open(FileIO.path(directory, "LOCK"), O_RDWR | O_CREAT)
    do throws(WALError) {
      guard try fs.tryLock(lockFD, file: FileIO.path(directory, "LOCK")) else {
        throw .invalidRequest("\(directory) is in use by another WAL (LOCK is held)")
      }
      // Leftovers of an interrupted roll or snapshot save (nothing refers to them).
      for n in try fs.list(directory) where n == SegmentNames.spare || n.hasSuffix(".snap.tmp") {
        try fs.unlink(FileIO.path(directory, n))
      }
    } catch {
      fs.close(lockFD)
      throw error
    }

    var scan: WALInspection
    do throws(WALError) {
      scan = try WALScanner.scan(
        directory: directory, fileSystem: fs, recordBytesMax: options.recordBytesMax,
        unsyncedBytesMax: options.unsyncedBytesMax)
      if let c = scan.corruption { throw c }
      if let last = scan.segments.last {
        // A last segment without a header (its first batch never landed) takes the configured
        // size; a file shorter than its segment is extended with zeros.
        let cap =
          last.hasHeader ? last.capacityBytes : max(last.fileBytes / 4096 * 4096, options.segmentBytes)
        if let t = scan.tornTail {
          try WAL.cut(t, fileBytes: last.fileBytes, capacity: cap, fs: fs)
          logger.warning(
            "wal: cut a torn tail at \(t.file):\(t.offset) (\(t.bytes) bytes: \(t.reason)); it was never acknowledged")
        } else if last.fileBytes < cap {
          let t = WALInspection.TornTail(
            file: FileIO.path(directory, last.name), offset: last.validBytes, reason: "short file", bytes: 0)
          try WAL.cut(t, fileBytes: last.fileBytes, capacity: cap, fs: fs)
        }
        scan.segments[scan.segments.count - 1].capacityBytes = cap
      }
    } catch {
      fs.close(lockFD)
      throw error
    }
    inspection = scan
    var state = WALState()
    state.hardState = scan.hardState
    state.entries = scan.entries
    if scan.snapshot.index > 0 {
      state.snapshot = try SnapshotFiles.load(scan.snapshot, directory: directory, fs: fs)
    }
    recovered = state
    lastIndex = scan.lastIndex
    hardState = scan.hardState
    snapshot = scan.snapshot

    spare = SparePreparer(
      directory: directory, segmentBytes: options.segmentBytes, fsync: options.fsync, fs: fs,
      inBackground: options.spareInBackground)
    segments = scan.segments.map { SegmentInfo(name: $0.name, sequence: $0.sequence, maxEntryIndex: $0.maxEntryIndex) }
    if let last = scan.segments.last {
      path = FileIO.path(directory, last.name)
      capacity = last.capacityBytes
      writeOffset = last.validBytes
      needsPrologue = true  // a header if the segment has none, and the state after a restart
    } else {
      let name = SegmentNames.name(sequence: 0, firstIndex: lastIndex + 1)
      path = FileIO.path(directory, name)
      try fs.rename(try spare.take(), path)
      if options.syncsDirectories { try fs.syncDirectory(directory) }  // the first segment's name
      segments = [SegmentInfo(name: name, sequence: 0, maxEntryIndex: 0)]
      capacity = options.segmentBytes
      writeOffset = 0
      needsPrologue = true
      stats.segmentsStarted += 1
    }

    backend = WAL.makeBackend(fs, options: options, logger: logger)
    io = backend.kind
    if options.fsync == .none {
      logger.warning("wal: fsync mode none: nothing written is durable (for measurement only)")
    } else if options.injectSkipSync {
      logger.warning("wal: injectSkipSync: batches are acknowledged without a sync (fault injection)")
    }

    let batchCapacity = min(options.batchBytesMax, 1 << 20) + 64 << 10
    slots = (0...options.batchesInFlightMax).map { _ in Batch(capacity: batchCapacity) }
    openSlot = 0
    freeSlots = Array((1...options.batchesInFlightMax).reversed())
    let segmentPath = path
    fds = try slots.indices.map { _ throws(WALError) in try fs.open(segmentPath, O_RDWR) }
    spare.start(nextPreparation())
    logger.info(
      "wal: opened \(directory) (\(segments.count) segments, entries \(scan.firstIndex)...\(scan.lastIndex), "
        + "io \(io), fsync \(options.fsync))")
  }

  deinit {
    if !closed { shutDown() }
  }

  /// Waits for the ring, then closes the files and releases the directory lock.
  func shutDown() {
    closed = true
    if !backend.quiesce() {
      for b in slots { b.leak() }  // the kernel may still read them
    }
    for fd in fds { fileSystem.close(fd) }
    fds = []
    spare.finish()
    fileSystem.close(lockFD)
  }

  /// The batch path over `fs`: for the real file system, specialized (a batch's write and sync
  /// are direct calls); for another (the fault-injecting one), generic.
  static func makeBackend(_ fs: any WALFileSystem, options: WALOptions, logger: RaftLogger) -> BatchIO {
    if let real = fs as? PosixFileSystem { return makeBackend(specialized: real, options: options, logger: logger) }
    return makeBackend(specialized: fs, options: options, logger: logger)
  }

  /// io_uring when asked for and a ring can be set up (else posix, said in one log line). With
  /// `injectSkipSync`, batches are never synced.
  static func makeBackend<FS: WALFileSystem>(specialized fs: FS, options: WALOptions, logger: RaftLogger) -> BatchIO {
    let fsync: WALOptions.Fsync = options.injectSkipSync ? .none : options.fsync
    if options.io == .uring {
      do throws(WALError) {
        if options.simulateURingUnavailable { throw .io(operation: "io_uring_setup", file: "-", errno: ENOSYS) }
        return try URingBatchIO(
          fs: fs, depth: options.ringDepth, sqpoll: options.sqpoll, slots: options.batchesInFlightMax + 1,
          fsync: fsync, writes: options.uringWrites, syncsInFlightMax: options.syncsInFlightMax)
      } catch {
        logger.warning("wal: io_uring unavailable (\(error)); falling back to pwritev+fdatasync")
      }
    }
    return PosixBatchIO(fs: fs, fsync: fsync)
  }

  /// Zeroes a torn tail (and extends a file cut short back to its segment size), then syncs.
  static func cut(
    _ t: WALInspection.TornTail, fileBytes: Int, capacity: Int, fs: any WALFileSystem
  ) throws(WALError) {
    let fd = try fs.open(t.file, O_RDWR)
    defer { fs.close(fd) }
    try fs.writeZeros(fd, from: t.offset, to: t.offset + t.bytes, file: t.file)
    if fileBytes < capacity {
      try fs.writeZeros(fd, from: max(fileBytes, t.offset + t.bytes), to: capacity, file: t.file)
    }
    try fs.sync(fd, .fsync, file: t.file)
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
        try fileSystem.unlink(FileIO.path(directory, segments[0].name))
        try syncDirectory()  // the removal, before the next one
        segments.removeFirst()
        removed += 1
      }
      if snapshot.index > 0 {
        try SnapshotFiles.removeAll(except: snapshot, directory: directory, fs: fileSystem)
      }
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

  /// Makes the creations, renames and removals in the WAL's directory durable (unless syncing
  /// is off).
  func syncDirectory() throws(WALError) {
    if options.syncsDirectories { try fileSystem.syncDirectory(directory) }
  }

  func checkUsable() throws(WALError) {
    if let failure { throw .failed(failure.description) }
    if closed { throw .invalidRequest("the WAL is closed") }
  }

  /// Runs `body`; an error it throws makes the WAL unusable.
  func guarded(_ body: () throws(WALError) -> Void) throws(WALError) {
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

}
