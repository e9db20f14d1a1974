import Raft

#if canImport(Glibc)
  import Glibc
#endif

extension WAL {
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

  /// The owner's one wait point: waits until at least one more batch is acknowledged or `wake`
  /// is signalled (new work for the owner; its counter is consumed), and
  /// returns `durableSequence`. With io_uring both arrive through the ring; with posix, batches
  /// are durable when submitted, so only `wake` can end the wait.
  @discardableResult
  public func waitForCompletion(orWake wake: WakeEvent) throws(WALError) -> UInt64 {
    try checkUsable()
    try guarded { () throws(WALError) in
      completed.removeAll(keepingCapacity: true)
      try backend.wait(orWake: wake.fd, into: &completed)
      acknowledge(completed)
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

  func submitOpen() throws(WALError) {
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

  func drain() throws(WALError) {
    while !inFlight.isEmpty { try reap(wait: true) }
  }

  /// Collects completions and acknowledges the batches at the front that are durable.
  func reap(wait: Bool) throws(WALError) {
    completed.removeAll(keepingCapacity: true)
    try backend.reap(wait: wait, into: &completed)
    acknowledge(completed)
  }

  /// Marks `done` durable and acknowledges the batches at the front that are.
  func acknowledge(_ done: [Int]) {
    for slot in done { slots[slot].durable = true }
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
