import CLibURing

#if canImport(Glibc)
  import Glibc
#endif

/// io_uring: several batches in flight, their syncs running concurrently (the kernel merges the
/// device cache flushes of concurrent syncs); completions come back in any order and the WAL
/// acknowledges them in order. Two ways to order a batch's write before its sync:
///
/// - `.inline` (default): the owner thread writes the batch into the page cache with pwritev (a
///   memory copy, resuming short writes), then queues only the sync. Measured here, this beats
///   handing the copy to an io-wq worker, which costs a thread wake-up per batch. Without syncs
///   (`fsync` `.none`) the batch is done once written: nothing goes through the ring.
/// - `.linked`: a writev linked (IOSQE_IO_LINK) to the sync, so the sync starts only once the
///   write completed in full. A short write breaks the link (the kernel cancels the sync with
///   ECANCELED); the rest of the batch is submitted again, linked to a new sync.
///
/// Either way a batch is durable once all its bytes are written and a sync issued after the
/// last of them has succeeded.
///
/// The file system `fs` does the inline writes and is told of the ring's writes and syncs (the
/// fault-injecting layer keeps its model of what is durable from them; the real one ignores
/// them).
final class URingBatchIO<FS: WALFileSystem>: BatchIO {
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

  /// The low two bits of a request's user data; the rest is a slot (write, sync) or a group
  /// sync's id.
  private enum Kind: UInt64 {
    case write = 0
    case sync = 1
    /// An inline-mode sync covering every batch written before it was queued.
    case groupSync = 2
    /// The read of the owner's wake eventfd (`wait(orWake:)`): new work arrived.
    case wake = 3
  }

  /// The ring, on the heap so that its address never moves; set up before anything else, so a
  /// failed setup leaves nothing to free.
  private let ring: UnsafeMutablePointer<io_uring>
  private let fs: FS
  private var ops: [Op]
  /// One iovec per slot; the kernel reads it when the write is submitted.
  private let iovecs: UnsafeMutablePointer<iovec>
  private let fsync: WALOptions.Fsync
  private var unsubmitted = 0
  private let cqes: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
  private let cqeBatch = 64
  /// `.inline`: the owner thread copies the batch into the page cache with pwritev and only the
  /// sync goes through the ring; `.linked`: the write goes through the ring too, linked to it.
  let writes: WALOptions.URingWrites
  /// Inline mode: syncs in flight at most; batches written while they run wait for the next one,
  /// which covers them all (group commit of syncs).
  let syncsInFlightMax: Int
  /// Inline mode: slots written to the page cache and not yet covered by a sync, oldest first.
  private var awaitingSync: [Int] = []
  /// Inline mode without syncs (`fsync` `.none`): slots written and done, not reported by
  /// `reap` yet (no completion will come for them: nothing went through the ring).
  private var doneUnreported: [Int] = []
  /// Inline mode: the slots each group sync in flight covers, by sync id.
  private var groupSyncs: [UInt64: (slots: [Int], token: UInt64)] = [:]
  /// Linked mode: the file system's token of each slot's sync in flight.
  private var syncTokens: [UInt64]
  private var nextGroupSync: UInt64 = 0
  /// Syncs that completed successfully.
  private(set) var syncs: UInt64 = 0
  /// The wake eventfd's read in flight (at most one), and where the kernel puts its counter.
  private var wakeArmed = false
  private var woken = false
  private let wakeBuffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

  /// Sets up a ring; throws `WALError.io` carrying the kernel's errno when it cannot.
  init(
    fs: FS, depth: Int, sqpoll: Bool, slots: Int, fsync: WALOptions.Fsync, writes: WALOptions.URingWrites,
    syncsInFlightMax: Int = Int.max
  ) throws(WALError) {
    let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
    ring.initialize(to: io_uring())
    var params = io_uring_params()
    if sqpoll {
      params.flags |= swift_raft_setup_sqpoll()
      params.sq_thread_idle = 50  // milliseconds before the poller sleeps
    }
    let rc = io_uring_queue_init_params(UInt32(depth), ring, &params)
    if rc < 0 {
      ring.deallocate()
      // Nothing of `self` is initialized yet, so no deinit runs.
      throw .io(operation: sqpoll ? "io_uring_setup (SQPOLL)" : "io_uring_setup", file: "-", errno: -rc)
    }
    self.ring = ring
    self.fs = fs
    self.fsync = fsync
    syncTokens = Array(repeating: 0, count: slots)
    self.writes = writes
    self.syncsInFlightMax = max(1, syncsInFlightMax)
    ops = Array(repeating: Op(), count: slots)
    iovecs = .allocate(capacity: slots)
    iovecs.initialize(repeating: iovec(), count: slots)
    cqes = .allocate(capacity: cqeBatch)
    cqes.initialize(repeating: nil, count: cqeBatch)
  }

  deinit {
    if quiesce() {
      io_uring_queue_exit(ring)
      ring.deallocate()
      iovecs.deallocate()
    }
    // Otherwise the kernel may still read the iovecs and batch buffers: leak them (and the
    // ring) rather than free memory under it.
    cqes.deallocate()
    if !wakeArmed { wakeBuffer.deallocate() }
  }

  var kind: WALOptions.IO { .uring }

  func start(slot: Int, fd: Int32, file: String, bytes: UnsafeRawBufferPointer, offset: Int) throws(WALError) {
    precondition(!ops[slot].active, "io_uring: slot \(slot) is still in flight")
    precondition(bytes.count > 0, "io_uring: empty batch")
    ops[slot] = Op(fd: fd, file: file, base: bytes.baseAddress, count: bytes.count, offset: offset, active: true)
    if writes == .inline {
      // The write is done (in the page cache) before the sync is queued, so the sync covers it.
      try fs.write(fd, bytes, offset: offset, file: file)
      ops[slot].written = bytes.count
      if fsync == .none {
        ops[slot].synced = true
        ops[slot].active = false
        doneUnreported.append(slot)
        return
      }
      awaitingSync.append(slot)
      try queueGroupSyncs()
      return
    }
    try queueWrite(slot)
  }

  /// Queues a sync for the batches written and not yet covered, when fewer than
  /// `syncsInFlightMax` are running. The sync covers every byte written before it is queued.
  private func queueGroupSyncs() throws(WALError) {
    guard !awaitingSync.isEmpty, groupSyncs.count < syncsInFlightMax else { return }
    let covered = awaitingSync
    awaitingSync.removeAll(keepingCapacity: true)
    let id = nextGroupSync
    nextGroupSync += 1
    // Through the newest batch's descriptor: concurrent syncs use different open files, so a
    // writeback error is reported to each of them.
    let newest = covered[covered.count - 1]
    let sync = try sqe()
    io_uring_prep_fsync(sync, ops[newest].fd, fsync == .datasync ? swift_raft_fsync_datasync() : 0)
    io_uring_sqe_set_data64(sync, id << 2 | Kind.groupSync.rawValue)
    for slot in covered { ops[slot].outstanding += 1 }
    groupSyncs[id] = (covered, fs.ringWillSync(ops[newest].fd))
  }

  /// Queues the write of the unwritten rest of `slot` and, unless syncing is off, a linked sync.
  private func queueWrite(_ slot: Int) throws(WALError) {
    let op = ops[slot]
    // The write and its linked sync must go in one submission: a link ends at a submit.
    if io_uring_sq_space_left(ring) < 2 { try submit() }
    let iov = iovecs + slot
    iov.pointee.iov_base = UnsafeMutableRawPointer(mutating: op.base! + op.written)
    iov.pointee.iov_len = op.count - op.written
    let write = try sqe()
    fs.ringWillWrite(
      op.fd, UnsafeRawBufferPointer(start: op.base! + op.written, count: op.count - op.written),
      offset: op.offset + op.written)
    io_uring_prep_writev(write, op.fd, iov, 1, UInt64(op.offset + op.written))
    io_uring_sqe_set_data64(write, UInt64(slot) << 2 | Kind.write.rawValue)
    ops[slot].outstanding += 1
    if fsync != .none {
      write.pointee.flags |= swift_raft_sqe_flag_io_link()
      let sync = try sqe()
      io_uring_prep_fsync(sync, op.fd, fsync == .datasync ? swift_raft_fsync_datasync() : 0)
      io_uring_sqe_set_data64(sync, UInt64(slot) << 2 | Kind.sync.rawValue)
      ops[slot].outstanding += 1
      // Linked: the sync starts once the write completed, so it covers it.
      syncTokens[slot] = fs.ringWillSync(op.fd)
    }
    ops[slot].synced = false
  }

  /// The next free submission entry, submitting queued ones to make room when the queue is full.
  private func sqe() throws(WALError) -> UnsafeMutablePointer<io_uring_sqe> {
    if let s = io_uring_get_sqe(ring) {
      unsubmitted += 1
      return s
    }
    try submit()
    guard let s = io_uring_get_sqe(ring) else {
      preconditionFailure("io_uring: no submission entry free right after submitting")
    }
    unsubmitted += 1
    return s
  }

  func submit() throws(WALError) {
    var busy = 0
    while unsubmitted > 0 {
      let rc = io_uring_submit(ring)
      if rc == -EINTR { continue }
      if rc == -EAGAIN || rc == -EBUSY {
        // The completion queue is full: the caller reaps; retry a few times first.
        busy += 1
        if busy > 1000 { throw .io(operation: "io_uring_submit", file: "-", errno: -rc) }
        sched_yield()
        continue
      }
      if rc < 0 { throw .io(operation: "io_uring_submit", file: "-", errno: -rc) }
      unsubmitted = 0
    }
  }

  func wait(orWake wakeFD: Int32, into done: inout [Int]) throws(WALError) {
    if !wakeArmed {
      let read = try sqe()
      io_uring_prep_read(read, wakeFD, wakeBuffer, 8, 0)
      io_uring_sqe_set_data64(read, Kind.wake.rawValue)
      wakeArmed = true
    }
    try submit()
    woken = false
    try reap(wait: true, into: &done)
  }

  func reap(wait: Bool, into done: inout [Int]) throws(WALError) {
    var waitNext = wait
    if !doneUnreported.isEmpty {
      done.append(contentsOf: doneUnreported)
      doneUnreported.removeAll(keepingCapacity: true)
      waitNext = false
    }
    while true {
      let n = Int(io_uring_peek_batch_cqe(ring, cqes, UInt32(cqeBatch)))
      if n == 0 {
        guard waitNext else { return }
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        let rc = io_uring_wait_cqe(ring, &cqe)
        if rc == -EINTR { continue }
        if rc < 0 { throw .io(operation: "io_uring_wait_cqe", file: "-", errno: -rc) }
        continue
      }
      var failure: WALError? = nil
      for i in 0..<n {
        let cqe = cqes[i]!.pointee
        if let e = complete(userData: cqe.user_data, result: cqe.res, into: &done), failure == nil { failure = e }
      }
      io_uring_cq_advance(ring, UInt32(n))
      if let failure { throw failure }
      try queueGroupSyncs()
      try submit()  // resubmitted short writes, the next group sync
      if !done.isEmpty || woken { waitNext = false }
      if n < cqeBatch && !waitNext { return }
    }
  }

  /// Applies one completion; returns the error it carries, if any.
  private func complete(userData: UInt64, result: Int32, into done: inout [Int]) -> WALError? {
    let kind = Kind(rawValue: userData & 3)!
    if kind == .wake {
      wakeArmed = false
      woken = true
      if result < 0 && result != -EINTR && result != -ECANCELED {
        return .io(operation: "read (wake eventfd)", file: "-", errno: -result)
      }
      return nil
    }
    if kind == .groupSync {
      let (covered, token) = groupSyncs.removeValue(forKey: userData >> 2)!
      let result = fs.ringDidSync(token, result: result)
      var failure: WALError? = nil
      if result < 0 {
        let file = ops[covered[covered.count - 1]].file
        failure = .io(operation: fsync == .datasync ? "fdatasync" : "fsync", file: file, errno: -result)
      }
      if failure == nil { syncs += 1 }
      for slot in covered {
        precondition(ops[slot].active && ops[slot].outstanding > 0, "io_uring: group sync for an idle slot \(slot)")
        ops[slot].outstanding -= 1
        if failure == nil { ops[slot].synced = true }
        if ops[slot].synced && ops[slot].outstanding == 0 {
          ops[slot].active = false
          done.append(slot)
        }
      }
      return failure
    }
    let slot = Int(userData >> 2)
    precondition(ops[slot].active && ops[slot].outstanding > 0, "io_uring: completion for an idle slot \(slot)")
    ops[slot].outstanding -= 1
    switch kind {
    case .write:
      let result = fs.ringDidWrite(ops[slot].fd, result: result)
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
      let result = fs.ringDidSync(syncTokens[slot], result: result)
      if result == -ECANCELED { break }  // its write was short or failed; handled there
      if result < 0 {
        return .io(operation: fsync == .datasync ? "fdatasync" : "fsync", file: ops[slot].file, errno: -result)
      }
      assert(ops[slot].written == ops[slot].count, "io_uring: a linked sync ran after a short write")
      syncs += 1
      ops[slot].synced = true
    case .groupSync, .wake:
      preconditionFailure("io_uring: group syncs and wakes are handled above")
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

  /// Waits for every outstanding request; returns false when the ring failed first (the
  /// memory the kernel reads must then stay allocated).
  @discardableResult
  func quiesce() -> Bool {
    quiescing = true
    defer { quiescing = false }
    try? submit()
    var ignored: [Int] = []
    while ops.contains(where: { $0.active && $0.outstanding > 0 }) {
      var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
      let rc = io_uring_wait_cqe(ring, &cqe)
      if rc == -EINTR { continue }
      if rc < 0 { return false }
      let c = cqe!.pointee
      io_uring_cqe_seen(ring, cqe)
      _ = complete(userData: c.user_data, result: c.res, into: &ignored)
    }
    for i in ops.indices { ops[i].active = false }
    return true
  }
}
