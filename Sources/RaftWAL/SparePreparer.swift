import Dispatch
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Prepares the next segment in the background: a file of `segmentBytes` zeros, synced, under
/// a temporary name, so that rolling to a new segment costs a rename instead of a stall.
///
/// Writes that overwrite zero-filled blocks sync faster than writes that extend a file or land
/// in unwritten extents (the metadata does not change), which is why segments are not merely
/// truncated or fallocated to size (unless nothing is synced: `.sparse`).
///
/// The zeros are written in step with the current segment's fill (`writerProgress`), a margin
/// ahead, rather than in one burst: every fdatasync of the WAL flushes the device cache, and a
/// burst of 64 MiB of zeros queued in front of it would stall the batches behind it. When the
/// writer needs the spare early, `take` has the rest written at full speed.
final class SparePreparer: @unchecked Sendable {
  let directory: String
  let segmentBytes: Int
  let fsync: WALOptions.Fsync
  let fs: any WALFileSystem
  /// False: the spare is prepared on the owner's thread when it is taken (deterministic, for
  /// the simulator); true: on a queue of its own, ahead of use.
  let inBackground: Bool
  private let queue = DispatchQueue(label: "swift-raft.wal.spare")
  private let group = DispatchGroup()
  /// Written by the queue, read by the owner after `group.wait()`; the group orders the two.
  private var result: Result<String, WALError>? = nil
  private var started = false
  /// How many bytes of the spare should be zero by now (a fraction of the spare equal to the
  /// current segment's fill, plus `marginBytes`); raised to the whole spare by `take`.
  private let targetBytes = Atomic<Int>(0)
  /// Bytes zeroed ahead of the current segment's fill.
  let marginBytes: Int
  /// Zeros per write, and how much is written between syncs of the spare.
  static let chunkBytes = 1 << 20
  static let syncEveryBytes = 8 << 20

  init(directory: String, segmentBytes: Int, fsync: WALOptions.Fsync, fs: any WALFileSystem, inBackground: Bool) {
    self.directory = directory
    self.segmentBytes = segmentBytes
    self.fsync = fsync
    self.fs = fs
    self.inBackground = inBackground
    marginBytes = max(segmentBytes / 4, 4 << 20)
  }

  /// Tells the preparer how full the segment being written is.
  @inline(__always)
  func writerProgress(bytes: Int, of capacity: Int) {
    let fraction = Double(bytes) / Double(max(capacity, 1))
    targetBytes.store(Int(fraction * Double(segmentBytes)) + marginBytes, ordering: .relaxed)
  }

  var path: String { FileIO.path(directory, SegmentNames.spare) }

  /// Starts preparing a spare (no-op when one is being prepared or ready), by writing zeros
  /// with `posix_fallocate`, or as a hole (`mode` is `.zeroFill`, `.fallocate` or `.sparse`).
  func start(_ mode: WALOptions.SegmentPreparation = .zeroFill) {
    guard !started else { return }
    precondition(mode != .auto, "the WAL decides what .auto means for each segment")
    foregroundMode = mode
    guard inBackground else { return }
    started = true
    targetBytes.store(marginBytes, ordering: .relaxed)
    group.enter()
    queue.async {
      self.result = Result { () throws(WALError) -> String in try self.prepare(mode) }
      self.group.leave()
    }
  }

  /// Waits for the spare and returns its path; the caller renames it.
  func take() throws(WALError) -> String {
    if !inBackground {
      targetBytes.store(Int.max, ordering: .relaxed)
      return try prepare(foregroundMode)
    }
    start()
    targetBytes.store(Int.max, ordering: .relaxed)
    group.wait()
    started = false
    let r = result!
    result = nil
    return try r.get()
  }

  /// Stops a preparation in progress, if any, and waits for it (the partial spare is removed
  /// when the WAL is next opened).
  func finish() {
    if started {
      cancelled.store(true, ordering: .relaxed)
      group.wait()
      started = false
    }
  }

  /// The preparation `start` asked for last (what a foreground `take` does).
  private var foregroundMode: WALOptions.SegmentPreparation = .zeroFill

  /// Set by `finish`: the preparation stops where it is.
  private let cancelled = Atomic<Bool>(false)

  private func prepare(_ mode: WALOptions.SegmentPreparation) throws(WALError) -> String {
    let p = path
    let fd = try fs.open(p, O_WRONLY | O_CREAT | O_TRUNC)
    defer { fs.close(fd) }
    let syncMode: WALOptions.Fsync = fsync == .none ? .none : .datasync
    let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkBytes, alignment: 4096)
    defer { zeros.deallocate() }
    zeros.initializeMemory(as: UInt8.self, repeating: 0)
    var zeroed = 0
    if mode == .fallocate {
      // Unwritten extents: they read as zeros (torn tails still show), cost no bandwidth, and
      // make the first sync of each block a little dearer (the extent is converted).
      try fs.allocate(fd, bytes: segmentBytes, file: p)
      zeroed = segmentBytes
    } else if mode == .sparse {
      try fs.extend(fd, bytes: segmentBytes, file: p)
      zeroed = segmentBytes
    }
    var synced = 0
    var idleMicroseconds: UInt32 = 100
    while zeroed < segmentBytes {
      if cancelled.load(ordering: .relaxed) { throw .invalidRequest("spare preparation cancelled") }
      let target = min(segmentBytes, targetBytes.load(ordering: .relaxed))
      if zeroed >= target {
        usleep(idleMicroseconds)
        idleMicroseconds = min(idleMicroseconds * 2, 5000)
        continue
      }
      idleMicroseconds = 100
      let end = min(zeroed + Self.chunkBytes, segmentBytes)
      try fs.write(fd, UnsafeRawBufferPointer(rebasing: zeros[0..<(end - zeroed)]), offset: zeroed, file: p)
      zeroed = end
      if zeroed - synced >= Self.syncEveryBytes && zeroed < segmentBytes {
        try fs.sync(fd, syncMode, file: p)
        synced = zeroed
      }
    }
    // The size and the zeros must be durable before the spare becomes a segment.
    try fs.sync(fd, fsync == .none ? .none : .fsync, file: p)
    return p
  }
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
