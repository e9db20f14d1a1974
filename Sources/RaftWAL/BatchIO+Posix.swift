#if canImport(Glibc)
  import Glibc
#endif

/// pwritev + fdatasync on the calling thread, through the file system `fs`: a batch is durable
/// when `start` returns.
final class PosixBatchIO<FS: WALFileSystem>: BatchIO {
  let fs: FS
  let fsync: WALOptions.Fsync
  private var completed: [Int] = []
  private(set) var syncs: UInt64 = 0

  init(fs: FS, fsync: WALOptions.Fsync) {
    self.fs = fs
    self.fsync = fsync
  }

  var kind: WALOptions.IO { .posix }

  func start(slot: Int, fd: Int32, file: String, bytes: UnsafeRawBufferPointer, offset: Int) throws(WALError) {
    try fs.write(fd, bytes, offset: offset, file: file)
    try fs.sync(fd, fsync, file: file)
    if fsync != .none { syncs += 1 }
    completed.append(slot)
  }

  func submit() throws(WALError) {}

  func reap(wait: Bool, into done: inout [Int]) throws(WALError) {
    precondition(!wait || !completed.isEmpty, "posix I/O: waiting with nothing started")
    done.append(contentsOf: completed)
    completed.removeAll(keepingCapacity: true)
  }

  func wait(orWake wakeFD: Int32, into done: inout [Int]) throws(WALError) {
    // Batches are durable when `start` returns: only new work can end the wait.
    if !completed.isEmpty { return try reap(wait: false, into: &done) }
    try FileIO.readEventFD(wakeFD)
  }

  func quiesce() -> Bool {
    completed.removeAll()
    return true
  }
}
