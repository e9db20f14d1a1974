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
  @Option(help: "Measured time per case, in milliseconds.")
  var durationMs = 1500
  @Option(help: "Directory for the files (a fresh subdirectory is made and removed).")
  var dir = "/tmp"
  @Option(help: "WAL batches in flight (io_uring).")
  var maxInflightBatches = 8
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
  @Option(help: "WAL segment size in bytes.")
  var segmentBytes = 64 << 20

  func validate() throws {
    guard WALOptions.URingWrites(rawValue: uringWrites) != nil else {
      throw ValidationError("--uring-writes must be inline or linked")
    }
    guard WALOptions.Fsync(rawValue: fsync) != nil else {
      throw ValidationError("--fsync must be datasync, fsync or none")
    }
    guard durationMs >= 100 else { throw ValidationError("--duration-ms must be at least 100") }
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

  struct Result {
    var name: String
    var entries: UInt64 = 0
    var batches: UInt64 = 0
    var seconds: Double = 0
    var latencies = Samples()
    var syncs: UInt64 = 0
    var entriesPerSecond: Double { Double(entries) / seconds }
  }

  func run() throws {
    let sizes = entryBytes.split(separator: ",").map { Int($0)! }
    let batchSizes = batches.split(separator: ",").map { Int($0)! }
    let paths = io.split(separator: ",").map { WALOptions.IO(rawValue: String($0))! }
    let mode = WALOptions.Fsync(rawValue: fsync)!
    var template = Array("\(dir)/raft-bench-wal-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
      throw ValidationError("cannot create a directory under \(dir): \(String(cString: strerror(errno)))")
    }
    let root = String(cString: made)
    defer { removeTree(root) }
    print(
      "raft-bench wal: \(root), fsync \(mode), \(durationMs) ms per case, \(maxInflightBatches) batches in flight "
        + "(uring, \(uringWrites) writes), ring depth \(ringDepth), sqpoll \(sqpoll), crc32c \(CRC32C.usesHardware ? "sse4.2" : "table")"
    )
    print(
      pad("entry B", 7) + pad("batch", 6) + "  " + pad("path", 6, left: true) + pad("entries/s", 12) + pad("MB/s", 9)
        + pad("p50 us", 9) + pad("p99 us", 9) + pad("syncs/s", 9) + pad("ent/sync", 9) + pad("vs floor", 9))
    var case_ = 0
    for size in sizes {
      for batch in batchSizes {
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) | 1 }
        var results: [Result] = []
        case_ += 1
        let floorDir = "\(root)/floor-\(case_)"
        results.append(try floor(directory: floorDir, entryBytes: size, batch: batch, mode: mode))
        for path in paths {
          let walDir = "\(root)/\(path)-\(case_)"
          results.append(try wal(directory: walDir, io: path, payload: payload, batch: batch, mode: mode))
          removeTree(walDir)
        }
        removeTree(floorDir)
        let base = results[0].entriesPerSecond
        for r in results {
          let mb = r.entriesPerSecond * Double(size) / 1e6
          let syncsPerSecond = Double(r.syncs) / r.seconds
          print(
            pad(String(size), 7) + pad(String(batch), 6) + "  " + pad(r.name, 6, left: true)
              + pad(grouped(r.entriesPerSecond), 12) + pad(fixed(mb, 1), 9)
              + pad(fixed(Double(r.latencies.percentile(50)) / 1000, 0), 9)
              + pad(fixed(Double(r.latencies.percentile(99)) / 1000, 0), 9) + pad(grouped(syncsPerSecond), 9)
              + pad(r.syncs > 0 ? fixed(Double(r.entries) / Double(r.syncs), 1) : "-", 9)
              + pad(fixed(r.entriesPerSecond / base, 2), 9))
        }
      }
    }
  }

  /// pwritev + fdatasync of `batch * entryBytes` bytes at a time to a zero-filled file.
  func floor(directory: String, entryBytes: Int, batch: Int, mode: WALOptions.Fsync) throws -> Result {
    mkdir(directory, 0o755)
    let path = directory + "/floor"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw ValidationError("open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let fileBytes = segmentBytes
    let bytes = batch * entryBytes
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes, 1 << 20), alignment: 4096)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
    var off = 0
    while off < fileBytes {
      _ = pwrite(fd, buffer.baseAddress, min(1 << 20, fileBytes - off), off_t(off))
      off += 1 << 20
    }
    fdatasync(fd)
    for i in 0..<bytes { buffer[i] = UInt8(truncatingIfNeeded: i &* 131 &+ 7) | 1 }
    var r = Result(name: "floor")
    var offset = 0
    let warmupEnd = monotonicNanoseconds() + 100_000_000
    var start: UInt64 = 0
    var iov = iovec(iov_base: buffer.baseAddress, iov_len: bytes)
    while true {
      let now = monotonicNanoseconds()
      if start == 0 && now >= warmupEnd { start = now }
      if start != 0 && now - start >= UInt64(durationMs) * 1_000_000 { break }
      if offset + bytes > fileBytes { offset = 0 }  // wrap: still overwriting zero-filled blocks
      let t0 = monotonicNanoseconds()
      guard pwritev(fd, &iov, 1, off_t(offset)) == bytes else {
        throw ValidationError("pwritev: \(String(cString: strerror(errno)))")
      }
      switch mode {
      case .datasync: fdatasync(fd)
      case .fsync: Glibc.fsync(fd)
      case .none: break
      }
      let t1 = monotonicNanoseconds()
      offset += bytes
      if start != 0 {
        r.latencies.add(t1 - t0)
        r.entries += UInt64(batch)
        r.batches += 1
        if mode != .none { r.syncs += 1 }
      }
    }
    r.seconds = Double(monotonicNanoseconds() - start) / 1e9
    return r
  }

  /// WAL writes of `batch` entries each, kept `maxInflightBatches` deep.
  func wal(directory: String, io: WALOptions.IO, payload: [UInt8], batch: Int, mode: WALOptions.Fsync) throws
    -> Result
  {
    var o = WALOptions()
    o.io = io
    o.fsync = mode
    o.segmentBytes = segmentBytes
    o.batchesInFlightMax = maxInflightBatches
    o.ringDepth = ringDepth
    o.sqpoll = sqpoll
    o.uringWrites = WALOptions.URingWrites(rawValue: uringWrites)!
    o.batchEntriesMax = max(batch, 1)
    o.batchBytesMax = max(batch * (payload.count + 32), 4096)
    o.recordBytesMax = max(payload.count + 64, 1024)
    let wal = try WAL(directory: directory, options: o, logger: StderrLogger())
    var r = Result(name: wal.io.rawValue)
    var index: UInt64 = 1
    /// Submission times by sequence, oldest first.
    var pending: [(seq: UInt64, at: UInt64)] = []
    pending.reserveCapacity(1024)
    var entries: [Entry] = []
    entries.reserveCapacity(batch)
    let warmupEnd = monotonicNanoseconds() + 100_000_000
    var start: UInt64 = 0
    let syncsAtStart = { wal.stats.syncs }
    var syncBase: UInt64 = 0
    var head = 0
    while true {
      let now = monotonicNanoseconds()
      if start == 0 && now >= warmupEnd {
        start = now
        syncBase = syncsAtStart()
      }
      if start != 0 && now - start >= UInt64(durationMs) * 1_000_000 { break }
      if wal.batchesInFlight < maxInflightBatches {
        entries.removeAll(keepingCapacity: true)
        for _ in 0..<batch {
          entries.append(Entry(term: 1, index: index, data: payload))
          index += 1
        }
        let t0 = monotonicNanoseconds()
        let seq = try wal.append(entries: entries)
        try wal.submit()
        pending.append((seq, t0))
      } else {
        try wal.waitForCompletion()
      }
      let durable = try wal.poll()
      let t = monotonicNanoseconds()
      while head < pending.count && pending[head].seq <= durable {
        if start != 0 && pending[head].at >= start {
          r.latencies.add(t - pending[head].at)
          r.entries += UInt64(batch)
          r.batches += 1
        }
        head += 1
      }
      if head > 4096 {
        pending.removeFirst(head)
        head = 0
      }
    }
    r.seconds = Double(monotonicNanoseconds() - start) / 1e9
    r.syncs = wal.stats.syncs - syncBase
    try wal.close()
    return r
  }
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
