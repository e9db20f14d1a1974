import CLibURing

#if canImport(Glibc)
  import Glibc
#endif

/// io_uring: each batch is a writev linked (IOSQE_IO_LINK) to an fsync, so the sync starts only
/// once the write has completed in full. Several batches may be in flight; their completions
/// come back in any order and the WAL acknowledges them in order.
///
/// A short write breaks the link (the kernel cancels the sync with ECANCELED); the rest of the
/// batch is then submitted again, linked to a new sync. The batch is durable once all its bytes
/// are written and a sync issued after the last of them has succeeded.
final class URingBatchIO: BatchIO {
  /// Per-slot progress of one batch.
  private struct Op {
    var fd: Int32 = -1
    var file = ""
    var base: UnsafeRawPointer? = nil
    var count = 0
    /// Where the batch starts in the file.
    var offset = 0
    /// Bytes the kernel reported written so far (`written <= count`).
    var written = 0
    /// Requests submitted for this slot whose completion has not been reaped.
    var outstanding = 0
    /// True once a sync that followed the last write has succeeded (or no sync is wanted).
    var synced = false
    var active = false
  }

  private enum Kind: UInt64 {
    case write = 0
    case sync = 1
  }

  private var ring = io_uring()
  private var ops: [Op]
  /// One iovec per slot; the kernel reads it when the write is submitted.
  private let iovecs: UnsafeMutablePointer<iovec>
  private let fsync: WALOptions.Fsync
  private var unsubmitted = 0
  private let cqes: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
  private let cqeBatch = 64

  /// Sets up a ring; throws `WALError.io` carrying the kernel's errno when it cannot.
  init(depth: Int, sqpoll: Bool, slots: Int, fsync: WALOptions.Fsync) throws(WALError) {
    self.fsync = fsync
    ops = Array(repeating: Op(), count: slots)
    iovecs = .allocate(capacity: slots)
    iovecs.initialize(repeating: iovec(), count: slots)
    cqes = .allocate(capacity: cqeBatch)
    cqes.initialize(repeating: nil, count: cqeBatch)
    var params = io_uring_params()
    if sqpoll {
      params.flags |= swift_raft_setup_sqpoll()
      params.sq_thread_idle = 50  // milliseconds before the poller sleeps
    }
    let rc = io_uring_queue_init_params(UInt32(depth), &ring, &params)
    if rc < 0 {
      iovecs.deallocate()
      cqes.deallocate()
      throw .io(operation: sqpoll ? "io_uring_setup (SQPOLL)" : "io_uring_setup", file: "-", errno: -rc)
    }
  }

  deinit {
    quiesce()
    io_uring_queue_exit(&ring)
    iovecs.deallocate()
    cqes.deallocate()
  }

  var kind: WALOptions.IO { .uring }

  func start(slot: Int, fd: Int32, file: String, bytes: UnsafeRawBufferPointer, offset: Int) throws(WALError) {
    precondition(!ops[slot].active, "io_uring: slot \(slot) is still in flight")
    precondition(bytes.count > 0, "io_uring: empty batch")
    ops[slot] = Op(fd: fd, file: file, base: bytes.baseAddress, count: bytes.count, offset: offset, active: true)
    try queueWrite(slot)
  }

  /// Queues the write of the unwritten rest of `slot` and, unless syncing is off, a linked sync.
  private func queueWrite(_ slot: Int) throws(WALError) {
    let op = ops[slot]
    let iov = iovecs + slot
    iov.pointee.iov_base = UnsafeMutableRawPointer(mutating: op.base! + op.written)
    iov.pointee.iov_len = op.count - op.written
    let write = try sqe()
    io_uring_prep_writev(write, op.fd, iov, 1, UInt64(op.offset + op.written))
    io_uring_sqe_set_data64(write, UInt64(slot) << 1 | Kind.write.rawValue)
    ops[slot].outstanding += 1
    if fsync != .none {
      write.pointee.flags |= swift_raft_sqe_flag_io_link()
      let sync = try sqe()
      io_uring_prep_fsync(sync, op.fd, fsync == .datasync ? swift_raft_fsync_datasync() : 0)
      io_uring_sqe_set_data64(sync, UInt64(slot) << 1 | Kind.sync.rawValue)
      ops[slot].outstanding += 1
    }
    ops[slot].synced = false
  }

  /// The next free submission entry, submitting queued ones to make room when the queue is full.
  private func sqe() throws(WALError) -> UnsafeMutablePointer<io_uring_sqe> {
    if let s = io_uring_get_sqe(&ring) {
      unsubmitted += 1
      return s
    }
    try submit()
    guard let s = io_uring_get_sqe(&ring) else {
      preconditionFailure("io_uring: no submission entry free right after submitting")
    }
    unsubmitted += 1
    return s
  }

  func submit() throws(WALError) {
    while unsubmitted > 0 {
      let rc = io_uring_submit(&ring)
      if rc == -EINTR || rc == -EAGAIN || rc == -EBUSY { continue }
      if rc < 0 { throw .io(operation: "io_uring_submit", file: "-", errno: -rc) }
      unsubmitted = 0
    }
  }

  func reap(wait: Bool, into done: inout [Int]) throws(WALError) {
    var waitNext = wait
    while true {
      let n = Int(io_uring_peek_batch_cqe(&ring, cqes, UInt32(cqeBatch)))
      if n == 0 {
        guard waitNext else { return }
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        let rc = io_uring_wait_cqe(&ring, &cqe)
        if rc == -EINTR { continue }
        if rc < 0 { throw .io(operation: "io_uring_wait_cqe", file: "-", errno: -rc) }
        continue
      }
      var failure: WALError? = nil
      for i in 0..<n {
        let cqe = cqes[i]!.pointee
        if let e = complete(userData: cqe.user_data, result: cqe.res, into: &done), failure == nil { failure = e }
      }
      io_uring_cq_advance(&ring, UInt32(n))
      if let failure { throw failure }
      try submit()  // resubmitted short writes
      if !done.isEmpty { waitNext = false }
      if n < cqeBatch && !waitNext { return }
    }
  }

  /// Applies one completion; returns the error it carries, if any.
  private func complete(userData: UInt64, result: Int32, into done: inout [Int]) -> WALError? {
    let slot = Int(userData >> 1)
    let kind = Kind(rawValue: userData & 1)!
    precondition(ops[slot].active && ops[slot].outstanding > 0, "io_uring: completion for an idle slot \(slot)")
    ops[slot].outstanding -= 1
    switch kind {
    case .write:
      if result < 0 {
        if result == -EINTR || result == -EAGAIN {
          return retry(slot)
        }
        return .io(operation: "write", file: ops[slot].file, errno: -result)
      }
      if result == 0 { return .io(operation: "write (no progress)", file: ops[slot].file, errno: EIO) }
      ops[slot].written += Int(result)
      precondition(ops[slot].written <= ops[slot].count, "io_uring: wrote more than asked")
      if ops[slot].written < ops[slot].count {
        return retry(slot)  // short write: the linked sync comes back cancelled
      }
      if fsync == .none { ops[slot].synced = true }
    case .sync:
      if result == -ECANCELED { break }  // its write was short or failed; handled there
      if result < 0 {
        return .io(operation: fsync == .datasync ? "fdatasync" : "fsync", file: ops[slot].file, errno: -result)
      }
      assert(ops[slot].written == ops[slot].count, "io_uring: a linked sync ran after a short write")
      ops[slot].synced = true
    }
    if ops[slot].synced && ops[slot].written == ops[slot].count && ops[slot].outstanding == 0 {
      ops[slot].active = false
      done.append(slot)
    }
    return nil
  }

  /// Queues the rest of a batch again (after a short or interrupted write).
  private func retry(_ slot: Int) -> WALError? {
    if quiescing { return nil }
    do throws(WALError) {
      try queueWrite(slot)
    } catch {
      return error
    }
    return nil
  }

  /// Set while `quiesce` drains the ring: nothing is resubmitted.
  private var quiescing = false

  func quiesce() {
    quiescing = true
    defer { quiescing = false }
    try? submit()
    var ignored: [Int] = []
    while ops.contains(where: { $0.active && $0.outstanding > 0 }) {
      var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
      let rc = io_uring_wait_cqe(&ring, &cqe)
      if rc < 0 { if rc == -EINTR { continue } else { break } }
      let c = cqe!.pointee
      io_uring_cqe_seen(&ring, cqe)
      _ = complete(userData: c.user_data, result: c.res, into: &ignored)
    }
    for i in ops.indices { ops[i].active = false }
  }
}
