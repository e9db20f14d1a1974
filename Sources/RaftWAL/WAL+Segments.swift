import Raft

#if canImport(Glibc)
  import Glibc
#endif

extension WAL {
  /// How to prepare the next spare: `.auto` picks fallocate once the batches written into the
  /// previous segment averaged `autoFallocateBatchBytes` or more (bandwidth-bound), zero-fill
  /// otherwise (sync-bound); without syncs, sparse (zeros only pay at sync time).
  func nextPreparation() -> WALOptions.SegmentPreparation {
    switch options.segmentPreparation {
    case .zeroFill, .fallocate, .sparse: return options.segmentPreparation
    case .auto:
      if options.fsync == .none { return .sparse }
      let batches = lastSegmentBatches
      guard batches > 0 else { return .zeroFill }
      return lastSegmentBytes / batches >= UInt64(options.autoFallocateBatchBytes) ? .fallocate : .zeroFill
    }
  }

  /// Makes every batch so far durable, then continues in a fresh segment: the only segment that
  /// may ever hold unsynced bytes is the last one.
  func roll() throws(WALError) {
    try submitOpen()
    try drain()
    lastSegmentBatches = stats.batches - segmentBatchesAtStart
    lastSegmentBytes = stats.bytes - segmentBytesAtStart
    let next = segments[segments.count - 1].sequence + 1
    let name = SegmentNames.name(sequence: next, firstIndex: lastIndex + 1)
    let newPath = FileIO.path(directory, name)
    let sparePath = try spare.take()
    try fileSystem.rename(sparePath, newPath)
    try syncDirectory()  // the new segment's name
    let newFDs = try slots.indices.map { _ throws(WALError) in try fileSystem.open(newPath, O_RDWR) }
    for fd in fds { fileSystem.close(fd) }
    fds = newFDs
    path = newPath
    capacity = options.segmentBytes
    writeOffset = 0
    segments.append(SegmentInfo(name: name, sequence: next, maxEntryIndex: 0))
    stats.segmentsStarted += 1
    segmentBatchesAtStart = stats.batches
    segmentBytesAtStart = stats.bytes
    spare.start(nextPreparation())
    logger.debug("wal: started segment \(name)")
  }
}
