import Raft

#if canImport(Glibc)
  import Glibc
#endif

extension WAL {
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
        try SnapshotFiles.save(
          snap, directory: directory, fsync: options.fsync, syncDirectory: options.syncsDirectories, fs: fileSystem)
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
      try SnapshotFiles.save(
        snap, directory: directory, fsync: options.fsync, syncDirectory: options.syncsDirectories, fs: fileSystem)
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
  func finishWrite() -> UInt64 {
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

  /// The append fast path: all of `entries` (`bytes` of records, sizes in `sizes`) fit in the
  /// current segment, so the open batch grows once and the records are written back to back.
  func putEntries(_ entries: [Entry], bytes: Int) {
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

  func putEntry(_ e: Entry, size: Int) throws(WALError) {
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

  func putHardState(_ hs: HardState) throws(WALError) {
    let size = RaftCodec.encodedSize(hs)
    let open = try room(for: size)
    open.used += RecordFraming.write(.hardState, payloadBytes: size, at: open.buffer.baseAddress! + open.used) { b in
      RaftCodec.encode(hs, to: b)
    }
  }

  func putSnapshotRecord(_ md: SnapshotMetadata, replacesLog: Bool) throws(WALError) {
    let size = SnapshotRecord.payloadBytes(md)
    let open = try room(for: size)
    open.used += RecordFraming.write(.snapshot, payloadBytes: size, at: open.buffer.baseAddress! + open.used) { b in
      SnapshotRecord.write(md, replacesLog: replacesLog, to: b)
    }
  }

  /// The open batch with room for a record of `payloadBytes`, rolling to a new segment (and
  /// writing its prologue) when the current one cannot take it.
  @inline(__always)
  func room(for payloadBytes: Int) throws(WALError) -> Batch {
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
  func putPrologue() throws(WALError) {
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
}
