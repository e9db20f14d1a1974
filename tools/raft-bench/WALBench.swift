import ArgumentParser
import Raft
import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// `raft-bench wal`: WAL appends against the raw disk floor, measured in one run.
struct WALBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "wal",
    abstract: "WAL append throughput and batch latency vs the raw pwritev+fdatasync floor.",
    discussion: """
      For each entry size and batch size, runs the floor (pwritev + fdatasync of the same payload \
      bytes to a zero-filled file, one batch at a time, no framing) and then the WAL through each \
      I/O path, each for --duration-ms. A batch is one WAL write of N entries, submitted at once; \
      its latency runs from submission to the durable acknowledgement.
      """)

  @Option(help: "Entry payload sizes in bytes, comma-separated.")
  var entryBytes = "128,1024"
  @Option(help: "Entries per batch, comma-separated.")
  var batches = "1,8,64,256"
  @Option(help: "WAL I/O paths to measure, comma-separated (uring, posix).")
  var io = "uring,posix"
  @Option(help: "Measured time per path and case, in milliseconds (split into --rounds turns).")
  var durationMs = 1500
  @Option(help: "Directory for the files (a fresh subdirectory is made and removed).")
  var dir = "/tmp"
  @Option(help: "WAL batches in flight (io_uring).")
  var maxInflightBatches = 8
  @Option(help: "io_uring (inline writes): syncs in flight; batches written meanwhile share the next sync.")
  var maxInflightSyncs = WALOptions().syncsInFlightMax
  @Option(help: "io_uring submission queue depth.")
  var ringDepth = 64
  @Option(
    help:
      "How io_uring orders a batch's write before its sync: inline (pwritev, then the sync through the ring) or linked (writev linked to the sync)."
  )
  var uringWrites = "inline"
  @Flag(help: "Poll the submission queue from a kernel thread (IORING_SETUP_SQPOLL).")
  var sqpoll = false
  @Option(help: "datasync | fsync | none (none measures no durability at all).")
  var fsync = "datasync"
  @Option(help: "How segments are prepared: zero (write zeros), fallocate, or auto.")
  var prepare = "auto"
  @Option(help: "WAL segment size in bytes.")
  var segmentBytes = 64 << 20

  func validate() throws {
    guard WALOptions.SegmentPreparation(rawValue: prepare) != nil else {
      throw ValidationError("--prepare must be zero, fallocate or auto")
    }
    guard WALOptions.URingWrites(rawValue: uringWrites) != nil else {
      throw ValidationError("--uring-writes must be inline or linked")
    }
    guard WALOptions.Fsync(rawValue: fsync) != nil else {
      throw ValidationError("--fsync must be datasync, fsync or none")
    }
    guard durationMs >= 100 else { throw ValidationError("--duration-ms must be at least 100") }
    guard rounds >= 1, rounds <= 100 else { throw ValidationError("--rounds must be between 1 and 100") }
    for s in entryBytes.split(separator: ",") {
      guard let v = Int(s), v >= 1, v <= 1 << 20 else { throw ValidationError("--entry-bytes: bad size '\(s)'") }
    }
    for s in batches.split(separator: ",") {
      guard let v = Int(s), v >= 1, v <= 65536 else { throw ValidationError("--batches: bad batch size '\(s)'") }
    }
    for s in io.split(separator: ",") {
      guard WALOptions.IO(rawValue: String(s)) != nil else { throw ValidationError("--io: unknown path '\(s)'") }
    }
  }

  @Option(
    help: "Rounds per case: the floor and each path take turns, so that drift in the disk's speed hits them alike.")
  var rounds = 5

  /// What one turn of one path measured.
  struct Turn {
    var entries: UInt64 = 0
    var seconds: Double = 0
    var syncs: UInt64 = 0
    var entriesPerSecond: Double { seconds > 0 ? Double(entries) / seconds : 0 }
  }

  /// All turns of one path in one case.
  struct Series {
    var name: String
    var turns: [Turn] = []
    var latencies = Samples()
    var medianEntriesPerSecond: Double { median(turns.map(\.entriesPerSecond)) }
  }

  func run() throws {
    let sizes = entryBytes.split(separator: ",").map { Int($0)! }
    let batchSizes = batches.split(separator: ",").map { Int($0)! }
    let paths = io.split(separator: ",").map { WALOptions.IO(rawValue: String($0))! }
    let mode = WALOptions.Fsync(rawValue: fsync)!
    let root = try makeScratchDirectory(under: dir, prefix: "raft-bench-wal")
    defer { removeTree(root) }
    let turnMs = max(durationMs / rounds, 50)
    print(
      "raft-bench wal: \(root), fsync \(mode), \(rounds) rounds of \(turnMs) ms per path and case, "
        + "\(maxInflightBatches) batches and \(maxInflightSyncs) syncs in flight (uring, \(uringWrites) writes), ring depth \(ringDepth), "
        + "segments \(prepare), sqpoll \(sqpoll), crc32c \(CRC32C.usesHardware ? "sse4.2" : "table")")
    print(
      pad("entry B", 7) + pad("batch", 6) + "  " + pad("path", 6, left: true) + pad("entries/s", 12) + pad("MB/s", 9)
        + pad("p50 us", 9) + pad("p99 us", 9) + pad("syncs/s", 9) + pad("ent/sync", 9) + pad("vs floor", 9))
    var caseNumber = 0
    for size in sizes {
      for batch in batchSizes {
        caseNumber += 1
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) | 1 }
        let floorRunner = try FloorRunner(
          directory: "\(root)/floor-\(caseNumber)", bytes: batch * size, fileBytes: segmentBytes, mode: mode)
        var runners: [WALRunner] = []
        for path in paths {
          runners.append(
            try WALRunner(
              directory: "\(root)/\(path)-\(caseNumber)",
              options: options(io: path, payload: payload.count, batch: batch),
              payload: payload, batch: batch, depth: maxInflightBatches))
        }
        var floorSeries = Series(name: "floor")
        var series = runners.map { Series(name: $0.wal.io.rawValue) }
        floorRunner.warmUp()
        for r in runners { try r.warmUp() }
        for _ in 0..<rounds {
          floorSeries.turns.append(
            floorRunner.turn(milliseconds: turnMs, entriesPerBatch: batch, into: &floorSeries.latencies))
          for (k, r) in runners.enumerated() {
            series[k].turns.append(try r.turn(milliseconds: turnMs, into: &series[k].latencies))
          }
        }
        for r in runners { try r.close() }
        floorRunner.close()
        for s in [floorSeries] + series {
          let ratios = zip(s.turns, floorSeries.turns).map { $0.entriesPerSecond / max($1.entriesPerSecond, 1) }
          let eps = s.medianEntriesPerSecond
          let entries = s.turns.reduce(0) { $0 + $1.entries }
          let syncs = s.turns.reduce(0) { $0 + $1.syncs }
          let seconds = s.turns.reduce(0) { $0 + $1.seconds }
          print(
            pad(String(size), 7) + pad(String(batch), 6) + "  " + pad(s.name, 6, left: true) + pad(grouped(eps), 12)
              + pad(fixed(eps * Double(size) / 1e6, 1), 9)
              + pad(fixed(Double(s.latencies.percentile(50)) / 1000, 0), 9)
              + pad(fixed(Double(s.latencies.percentile(99)) / 1000, 0), 9)
              + pad(grouped(Double(syncs) / max(seconds, 1e-9)), 9)
              + pad(syncs > 0 ? fixed(Double(entries) / Double(syncs), 1) : "-", 9)
              + pad(fixed(median(ratios), 2), 9))
        }
      }
    }
  }

  func options(io: WALOptions.IO, payload: Int, batch: Int) -> WALOptions {
    var o = WALOptions()
    o.io = io
    o.fsync = WALOptions.Fsync(rawValue: fsync)!
    o.segmentBytes = segmentBytes
    o.batchesInFlightMax = maxInflightBatches
    o.syncsInFlightMax = min(maxInflightSyncs, maxInflightBatches)
    o.ringDepth = ringDepth
    o.sqpoll = sqpoll
    o.uringWrites = WALOptions.URingWrites(rawValue: uringWrites)!
    o.segmentPreparation = WALOptions.SegmentPreparation(rawValue: prepare)!
    o.batchEntriesMax = max(batch, 1)
    o.batchBytesMax = max(batch * (payload + 32), 4096)
    o.recordBytesMax = max(payload + 64, 1024)
    return o
  }
}

/// The floor: pwritev + fdatasync of the payload bytes of one batch at a time, no framing, to a
/// zero-filled file (wrapping around at its end, so writes always overwrite zeros' blocks).
final class FloorRunner {
  let fd: Int32
  let directory: String
  let bytes: Int
  let fileBytes: Int
  let mode: WALOptions.Fsync
  let buffer: UnsafeMutableRawBufferPointer
  var offset = 0

  init(directory: String, bytes: Int, fileBytes: Int, mode: WALOptions.Fsync) throws {
    mkdir(directory, 0o755)
    self.directory = directory
    self.bytes = bytes
    self.fileBytes = fileBytes
    self.mode = mode
    let path = directory + "/floor"
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw ValidationError("open \(path): \(String(cString: strerror(errno)))") }
    buffer = .allocate(byteCount: max(bytes, 1 << 20), alignment: 4096)
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
    var off = 0
    while off < fileBytes {
      _ = pwrite(fd, buffer.baseAddress, min(1 << 20, fileBytes - off), off_t(off))
      off += 1 << 20
    }
    fdatasync(fd)
    for i in 0..<bytes { buffer[i] = UInt8(truncatingIfNeeded: i &* 131 &+ 7) | 1 }
  }

  func close() {
    Glibc.close(fd)
    buffer.deallocate()
    removeTree(directory)
  }

  func warmUp() {
    var ignored = Samples()
    _ = turn(milliseconds: 100, entriesPerBatch: 1, into: &ignored)
  }

  func turn(milliseconds: Int, entriesPerBatch: Int, into latencies: inout Samples) -> WALBench.Turn {
    var t = WALBench.Turn()
    var iov = iovec(iov_base: buffer.baseAddress, iov_len: bytes)
    let start = monotonicNanoseconds()
    let end = start + UInt64(milliseconds) * 1_000_000
    while monotonicNanoseconds() < end {
      if offset + bytes > fileBytes { offset = 0 }
      let t0 = monotonicNanoseconds()
      var done = 0
      while done < bytes {
        iov.iov_base = buffer.baseAddress! + done
        iov.iov_len = bytes - done
        let n = pwritev(fd, &iov, 1, off_t(offset + done))
        if n <= 0 { fatalError("floor: pwritev: \(String(cString: strerror(errno)))") }
        done += n
      }
      switch mode {
      case .datasync: fdatasync(fd)
      case .fsync: fsync(fd)
      case .none: break
      }
      latencies.add(monotonicNanoseconds() - t0)
      offset += bytes
      t.entries += UInt64(entriesPerBatch)
      if mode != .none { t.syncs += 1 }
    }
    t.seconds = Double(monotonicNanoseconds() - start) / 1e9
    return t
  }
}

/// WAL writes of `batch` entries each, kept `depth` batches deep.
final class WALRunner {
  let wal: WAL
  let directory: String
  let payload: [UInt8]
  let batch: Int
  let depth: Int
  var index: UInt64 = 1
  var entries: [Entry] = []

  init(directory: String, options: WALOptions, payload: [UInt8], batch: Int, depth: Int) throws {
    self.directory = directory
    wal = try WAL(directory: directory, options: options, logger: StderrLogger())
    self.payload = payload
    self.batch = batch
    self.depth = depth
    entries.reserveCapacity(batch)
  }

  func close() throws {
    try wal.close()
    removeTree(directory)
  }

  func warmUp() throws {
    var ignored = Samples()
    _ = try turn(milliseconds: 100, into: &ignored)
  }

  /// Writes for `milliseconds`, then waits for what is still in flight (counted, and timed).
  func turn(milliseconds: Int, into latencies: inout Samples) throws -> WALBench.Turn {
    var t = WALBench.Turn()
    var pending: [(seq: UInt64, at: UInt64)] = []
    pending.reserveCapacity(1024)
    var head = 0
    let syncsBefore = wal.stats.syncs
    let start = monotonicNanoseconds()
    let end = start + UInt64(milliseconds) * 1_000_000
    while true {
      let now = monotonicNanoseconds()
      let writing = now < end
      if !writing && head == pending.count { break }
      if writing && wal.batchesInFlight < depth {
        entries.removeAll(keepingCapacity: true)
        for _ in 0..<batch {
          entries.append(Entry(term: 1, index: index, data: payload))
          index += 1
        }
        let seq = try wal.append(entries: entries)
        try wal.submit()
        pending.append((seq, now))
      } else {
        try wal.waitForCompletion()
      }
      let durable = try wal.poll()
      let done = monotonicNanoseconds()
      while head < pending.count && pending[head].seq <= durable {
        latencies.add(done - pending[head].at)
        t.entries += UInt64(batch)
        head += 1
      }
    }
    t.seconds = Double(monotonicNanoseconds() - start) / 1e9
    t.syncs = wal.stats.syncs - syncsBefore
    return t
  }
}

/// The median of `values` (0 when empty).
func median(_ values: [Double]) -> Double {
  guard !values.isEmpty else { return 0 }
  let s = values.sorted()
  return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Warnings and errors to stderr.
final class StderrLogger: RaftLogger {
  func isEnabled(_ level: RaftLogLevel) -> Bool { level >= .warning }
  func log(_ level: RaftLogLevel, _ message: String) {
    let line = "[\(level)] \(message)\n"
    var s = line
    s.withUTF8 { b in _ = write(2, b.baseAddress, b.count) }
  }
}

func removeTree(_ path: String) {
  // Only flat directories of files are made here.
  if let d = opendir(path) {
    while let e = readdir(d) {
      let name = withUnsafeBytes(of: e.pointee.d_name) {
        String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self))
      }
      if name == "." || name == ".." { continue }
      let child = path + "/" + name
      if unlink(child) != 0 { removeTree(child) }
    }
    closedir(d)
  }
  rmdir(path)
}
