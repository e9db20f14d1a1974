import Dispatch

#if canImport(Glibc)
  import Glibc
#endif

/// Prepares the next segment in the background: a file of `segmentBytes` zeros, synced, under
/// a temporary name, so that rolling to a new segment costs a rename instead of a stall.
///
/// Writes that overwrite zero-filled blocks sync faster than writes that extend a file or land
/// in unwritten extents (the metadata does not change), which is why segments are not merely
/// truncated or fallocated to size.
final class SparePreparer: @unchecked Sendable {
  let directory: String
  let segmentBytes: Int
  let fsync: WALOptions.Fsync
  private let queue = DispatchQueue(label: "swift-raft.wal.spare")
  private let group = DispatchGroup()
  /// Written by the queue, read by the owner after `group.wait()`; the group orders the two.
  private var result: Result<String, WALError>? = nil
  private var started = false

  init(directory: String, segmentBytes: Int, fsync: WALOptions.Fsync) {
    self.directory = directory
    self.segmentBytes = segmentBytes
    self.fsync = fsync
  }

  var path: String { FileIO.path(directory, SegmentNames.spare) }

  /// Starts preparing a spare (no-op when one is being prepared or ready).
  func start() {
    guard !started else { return }
    started = true
    group.enter()
    queue.async {
      self.result = Result { () throws(WALError) -> String in try self.prepare() }
      self.group.leave()
    }
  }

  /// Waits for the spare and returns its path; the caller renames it.
  func take() throws(WALError) -> String {
    start()
    group.wait()
    started = false
    let r = result!
    result = nil
    return try r.get()
  }

  /// Waits for a preparation in progress, if any, without using it.
  func finish() {
    if started { group.wait() }
  }

  private func prepare() throws(WALError) -> String {
    let p = path
    let fd = try FileIO.open(p, O_WRONLY | O_CREAT | O_TRUNC)
    defer { FileIO.close(fd) }
    try FileIO.writeZeros(fd, from: 0, to: segmentBytes, file: p)
    try FileIO.sync(fd, fsync == .none ? .none : .fsync, file: p)
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
