import Raft

/// What a scan of a WAL directory found: the segments, the state they rebuild, and where the
/// scan stopped early (a torn tail, or corruption).
///
/// `WAL.open` scans before writing; `wal-dump` scans without changing anything.
public struct WALInspection: Sendable {
  /// One segment file.
  public struct Segment: Sendable, Equatable {
    public var name: String
    public var sequence: UInt64
    /// The first index from the file name.
    public var firstIndex: UInt64
    /// The file's size on disk.
    public var fileBytes: Int
    /// The segment's fixed size (from its header; the file size when the header is missing).
    public var capacityBytes: Int
    /// Where the last valid record ends: the next write goes here.
    public var validBytes: Int
    /// Valid records, the header included.
    public var records: Int
    /// Entry records.
    public var entries: Int
    /// Smallest and largest entry index in the segment (0 when it has no entries).
    public var minEntryIndex: UInt64
    public var maxEntryIndex: UInt64
    /// True when the segment's header record is valid (false only for a torn new last segment).
    public var hasHeader: Bool
  }

  /// A cut-off tail of the last segment: a write that never completed.
  public struct TornTail: Sendable, Equatable {
    public var file: String
    public var offset: Int
    public var reason: String
    /// Bytes from `offset` to the last non-zero byte of the file (what is zeroed to cut it).
    public var bytes: Int
  }

  /// One record, for listings.
  public struct Record: Sendable {
    public var segment: String
    public var offset: Int
    public var type: WALRecordType
    public var bytes: Int
    public var entry: Entry?
    public var hardState: HardState?
    public var snapshot: (metadata: SnapshotMetadata, replacesLog: Bool)?
  }

  public var segments: [Segment] = []
  /// The latest hard state (all zero when none was written).
  public var hardState = HardState()
  /// The latest snapshot's metadata (index 0 when there is none).
  public var snapshot = SnapshotMetadata()
  /// The log above the snapshot: consecutive, starting at `snapshot.index + 1`.
  public var entries: [Entry] = []
  public var tornTail: TornTail? = nil
  /// Set when the scan stopped at something a torn write cannot explain.
  public var corruption: WALError? = nil

  /// Scans the WAL in `directory` without changing anything (what `wal-dump` prints). I/O
  /// errors throw; corruption is reported in `corruption`; `visit` sees every valid record.
  public static func scan(
    directory: String, recordBytesMax: Int = WALOptions().recordBytesMax,
    visit: ((WALInspection.Record) -> Void)? = nil
  ) throws(WALError) -> WALInspection {
    try WALScanner.scan(
      directory: directory, fileSystem: PosixFileSystem.shared, recordBytesMax: recordBytesMax,
      unsyncedBytesMax: WALOptions().unsyncedBytesMax, visit: visit)
  }

  /// Scans the bytes of one segment as recovery reads a WAL's only (so last) segment, without a
  /// file: for inspecting a copied segment, and for fuzzing the record decoder. Corruption is
  /// reported in `corruption`, a torn tail in `tornTail`; it never traps on any input.
  public static func scan(
    segmentImage: [UInt8], sequence: UInt64 = 1, firstIndex: UInt64 = 1,
    recordBytesMax: Int = WALOptions().recordBytesMax, visit: ((WALInspection.Record) -> Void)? = nil
  ) -> WALInspection {
    WALScanner.scan(
      segmentImage: segmentImage, sequence: sequence, firstIndex: firstIndex, recordBytesMax: recordBytesMax,
      unsyncedBytesMax: WALOptions().unsyncedBytesMax, visit: visit)
  }

  /// The index of the first entry (snapshot index + 1 when the log is empty).
  public var firstIndex: UInt64 { snapshot.index + 1 }
  /// The index of the last entry (the snapshot index when the log is empty).
  public var lastIndex: UInt64 { snapshot.index + UInt64(entries.count) }
}

/// Reads a WAL directory record by record and rebuilds its state.
enum WALScanner {
  /// Sector size used to recognise torn writes: a sector the disk never wrote reads as zeros.
  static let sectorBytes = 512

  /// Scans `directory`. I/O errors throw; corruption is reported in the result (the scan stops
  /// there). `visit` sees every valid record in order.
  /// `unsyncedBytesMax` is the caller's bound on the bytes that may have been written but not
  /// synced (each segment header records its writer's; the larger is used): damage followed by
  /// more data than that cannot be a torn write.
  static func scan(
    directory: String, fileSystem fs: any WALFileSystem, recordBytesMax: Int, unsyncedBytesMax: Int,
    visit: ((WALInspection.Record) -> Void)? = nil
  ) throws(WALError) -> WALInspection {
    var result = WALInspection()
    var replay = Replay()
    var named: [(sequence: UInt64, firstIndex: UInt64, name: String)] = []
    for n in try fs.list(directory) {
      if let p = SegmentNames.parse(n) { named.append((p.sequence, p.firstIndex, n)) }
    }
    named.sort { $0.sequence < $1.sequence }
    for k in named.indices.dropFirst() where named[k].sequence != named[k - 1].sequence + 1 {
      result.corruption = .corrupt(
        file: FileIO.path(directory, named[k].name), offset: 0,
        reason: named[k].sequence == named[k - 1].sequence
          ? "two segments with sequence \(named[k].sequence)"
          : "segments \(named[k - 1].sequence + 1) to \(named[k].sequence - 1) are missing")
      return result
    }
    for (k, seg) in named.enumerated() {
      let path = FileIO.path(directory, seg.name)
      let bytes = try fs.readAll(path)
      let isLast = k == named.count - 1
      let outcome = bytes.withUnsafeBytes { image in
        scanSegment(
          image, path: path, name: seg.name, sequence: seg.sequence, firstIndex: seg.firstIndex, isLast: isLast,
          recordBytesMax: recordBytesMax, unsyncedBytesMax: unsyncedBytesMax, replay: &replay, visit: visit)
      }
      result.segments.append(outcome.segment)
      if let c = outcome.corruption {
        result.corruption = c
        break
      }
      if let t = outcome.torn { result.tornTail = t }
    }
    finish(&result, replay)
    return result
  }

  /// The scan's result from the replayed records.
  private static func finish(_ result: inout WALInspection, _ replay: Replay) {
    if result.corruption == nil, let problem = replay.finish() {
      result.corruption = .corrupt(file: problem.file, offset: problem.offset, reason: problem.reason)
    }
    result.hardState = replay.hardState
    // A snapshot holds only committed entries, so its index is committed. The hard state written
    // after an installed snapshot's record (one write: snapshot, entries, hard state) can be lost
    // to a torn tail while the snapshot's record survives; Raft refuses to start with a commit
    // index below its snapshot, so it is raised (the commit index need not be durable anyway).
    result.hardState.commit = max(result.hardState.commit, replay.snapshot.index)
    result.snapshot = replay.snapshot
    result.entries = replay.entries
  }

  /// `scan` of a directory holding one segment whose bytes are `segmentImage`.
  static func scan(
    segmentImage: [UInt8], sequence: UInt64, firstIndex: UInt64, recordBytesMax: Int, unsyncedBytesMax: Int,
    visit: ((WALInspection.Record) -> Void)?
  ) -> WALInspection {
    var result = WALInspection()
    var replay = Replay()
    let name = SegmentNames.name(sequence: sequence, firstIndex: firstIndex)
    let outcome = segmentImage.withUnsafeBytes { image in
      scanSegment(
        image, path: name, name: name, sequence: sequence, firstIndex: firstIndex, isLast: true,
        recordBytesMax: recordBytesMax, unsyncedBytesMax: unsyncedBytesMax, replay: &replay, visit: visit)
    }
    result.segments.append(outcome.segment)
    result.corruption = outcome.corruption
    result.tornTail = outcome.torn
    finish(&result, replay)
    return result
  }

  private struct SegmentOutcome {
    var segment: WALInspection.Segment
    var torn: WALInspection.TornTail?
    var corruption: WALError?
  }

  private static func scanSegment(
    _ image: UnsafeRawBufferPointer, path: String, name: String, sequence: UInt64, firstIndex: UInt64, isLast: Bool,
    recordBytesMax: Int, unsyncedBytesMax: Int, replay: inout Replay, visit: ((WALInspection.Record) -> Void)?
  ) -> SegmentOutcome {
    var unsyncedMax = unsyncedBytesMax
    var seg = WALInspection.Segment(
      name: name, sequence: sequence, firstIndex: firstIndex, fileBytes: image.count, capacityBytes: image.count,
      validBytes: 0, records: 0, entries: 0, minEntryIndex: 0, maxEntryIndex: 0, hasHeader: false)
    var out = SegmentOutcome(segment: seg, torn: nil, corruption: nil)
    func corrupt(_ offset: Int, _ reason: String) -> SegmentOutcome {
      out.segment = seg
      out.corruption = .corrupt(file: path, offset: offset, reason: reason)
      return out
    }
    func torn(_ offset: Int, _ reason: String) -> SegmentOutcome {
      let dataEnd = lastNonZero(image, from: offset)
      if dataEnd - offset > unsyncedMax {
        // Written data runs on further than any unsynced tail could: this was synced, then damaged.
        return corrupt(
          offset,
          "\(reason), followed by \(dataEnd - offset) bytes of data: more than the \(unsyncedMax) "
            + "bytes that can be unsynced, so not a torn write")
      }
      out.segment = seg
      out.torn = .init(file: path, offset: offset, reason: reason, bytes: dataEnd - offset)
      return out
    }
    var offset = 0
    while true {
      switch RecordFraming.parse(image, at: offset, recordBytesMax: recordBytesMax) {
      case .zeroHeader:
        if offset == 0 && !isLast { return corrupt(0, "segment has no header (all zero)") }
        if lastNonZero(image, from: offset) == offset {
          if isLast && seg.hasHeader && image.count < seg.capacityBytes {
            return torn(offset, "the file is shorter than its segment size \(seg.capacityBytes)")
          }
          out.segment = seg
          return out  // the end of what was written
        }
        if isLast { return torn(offset, "hole: zeros where a record should start, data after it") }
        return corrupt(offset, "non-zero bytes after the last record")
      case .badHeader(let reason):
        if isLast && headerLooksTorn(image, offset: offset) { return torn(offset, reason) }
        return corrupt(offset, reason)
      case .bad(let reason, let claimedEnd):
        if isLast
          && looksTorn(
            image, offset: offset, claimedEnd: claimedEnd, capacity: seg.capacityBytes, hasHeader: seg.hasHeader,
            recordBytesMax: recordBytesMax)
        {
          return torn(offset, reason)
        }
        return corrupt(offset, reason)
      case .record(let type, let payloadRange, let next):
        let payload = UnsafeRawBufferPointer(rebasing: image[payloadRange])
        if offset == 0 {
          guard type == .segmentHeader, let h = SegmentHeader.read(payload) else {
            return corrupt(0, "the first record is not a valid segment header")
          }
          guard h.sequence == sequence, h.firstIndex == firstIndex else {
            return corrupt(0, "header says sequence \(h.sequence), first index \(h.firstIndex): not the file name")
          }
          guard h.segmentBytes >= UInt64(next), h.segmentBytes <= UInt64(Int32.max) * 2 else {
            return corrupt(0, "header has an impossible segment size \(h.segmentBytes)")
          }
          seg.capacityBytes = Int(h.segmentBytes)
          seg.hasHeader = true
          if h.unsyncedBytesMax <= UInt64(Int32.max) { unsyncedMax = max(unsyncedMax, Int(h.unsyncedBytesMax)) }
          if image.count > seg.capacityBytes {
            return corrupt(seg.capacityBytes, "file is larger than its segment size \(seg.capacityBytes)")
          }
        } else if type == .segmentHeader {
          return corrupt(offset, "a segment header in the middle of a segment")
        }
        var record = WALInspection.Record(segment: name, offset: offset, type: type, bytes: next - offset)
        replay.currentFile = path
        replay.currentOffset = offset
        switch type {
        case .segmentHeader:
          break
        case .entry:
          var o = 0
          let e: Entry
          do {
            e = try RaftCodec.decode(Entry.self, from: payload, offset: &o)
          } catch {
            return corrupt(offset, "entry record does not decode: \(error)")
          }
          guard o == payload.count else { return corrupt(offset, "bytes after the entry in its record") }
          if let problem = replay.entry(e) { return corrupt(offset, problem) }
          seg.entries += 1
          seg.minEntryIndex = seg.minEntryIndex == 0 ? e.index : min(seg.minEntryIndex, e.index)
          seg.maxEntryIndex = max(seg.maxEntryIndex, e.index)
          record.entry = e
        case .hardState:
          var o = 0
          let hs: HardState
          do {
            hs = try RaftCodec.decode(HardState.self, from: payload, offset: &o)
          } catch {
            return corrupt(offset, "hard state record does not decode: \(error)")
          }
          guard o == payload.count else { return corrupt(offset, "bytes after the hard state in its record") }
          replay.hardState = hs
          replay.hardStateAt = (path, offset)
          record.hardState = hs
        case .snapshot:
          let s: (SnapshotMetadata, replacesLog: Bool)
          do {
            s = try SnapshotRecord.read(payload)
          } catch {
            return corrupt(offset, "snapshot record does not decode: \(error)")
          }
          if let problem = replay.snapshot(s.0, replacesLog: s.replacesLog, at: (path, offset)) {
            return corrupt(offset, problem)
          }
          record.snapshot = (s.0, s.replacesLog)
        }
        visit?(record)
        seg.records += 1
        offset = next
        seg.validBytes = next
      }
    }
  }

  /// Whether a bad record (with a sound length) at `offset` of the last segment has the marks of
  /// a write that did not finish, rather than of damage to a finished one:
  /// - the file ends inside it and is shorter than the segment (it was being extended);
  /// - its closing type byte is zero (the end of the record never reached the disk); or
  /// - a whole 512-byte sector inside it is zero (that sector never reached the disk).
  static func looksTorn(
    _ image: UnsafeRawBufferPointer, offset: Int, claimedEnd: Int, capacity: Int, hasHeader: Bool,
    recordBytesMax: Int
  ) -> Bool {
    if claimedEnd - offset > recordBytesMax + RecordFraming.overheadBytes { return false }
    if claimedEnd > max(capacity, image.count) { return false }
    if claimedEnd > image.count { return image.count < capacity || !hasHeader }
    if image[claimedEnd - 1] == 0 { return true }
    var sector = (offset + sectorBytes - 1) / sectorBytes * sectorBytes
    while sector + sectorBytes <= claimedEnd {
      if isZero(image, sector, sector + sectorBytes) { return true }
      sector += sectorBytes
    }
    return false
  }

  /// Whether a header whose length check failed was torn: the file ends inside it, or the
  /// write stopped inside it (zeros from there to the end of the data), or it straddles a
  /// sector boundary and the part on one side is all zero. Any other damage to a header is
  /// corruption: a bit flip leaves neither a zero tail nor a zero run aligned to a sector.
  static func headerLooksTorn(_ image: UnsafeRawBufferPointer, offset: Int) -> Bool {
    let end = min(offset + RecordFraming.headerBytes, image.count)
    if end < offset + RecordFraming.headerBytes {
      return true  // the file ends inside the header (a file cut short)
    }
    // The write stopped inside the header: nothing but zeros from there on.
    if lastNonZero(image, from: offset) < end && image[end - 1] == 0 { return true }
    let boundary = (offset / sectorBytes + 1) * sectorBytes
    guard boundary < end else { return false }
    return isZero(image, boundary, end) || isZero(image, offset, boundary)
  }

  static func isZero(_ image: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> Bool {
    var i = from
    while i < to && i % 8 != 0 {
      if image[i] != 0 { return false }
      i += 1
    }
    while i + 8 <= to {
      if image.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
      i += 8
    }
    while i < to {
      if image[i] != 0 { return false }
      i += 1
    }
    return true
  }

  /// One past the last non-zero byte at or after `from` (`from` when there is none).
  static func lastNonZero(_ image: UnsafeRawBufferPointer, from: Int) -> Int {
    var end = image.count
    while end > from && end % 8 != 0 {
      if image[end - 1] != 0 { return end }
      end -= 1
    }
    while end - 8 >= from {
      if image.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) != 0 { break }
      end -= 8
    }
    while end > from && image[end - 1] == 0 { end -= 1 }
    return end
  }
}

/// Rebuilds the log from records in the order they were written.
///
/// A later entry at an index the log already has replaces that entry and everything after it
/// (the leader's log won). A snapshot moves the log's base up; one installed from a leader
/// (`replacesLog`) also drops the entries above it. Compaction removes old segments, so the log
/// may start after a gap; by the end a snapshot must cover every gap.
struct Replay {
  var hardState = HardState()
  var hardStateAt: (file: String, offset: Int)? = nil
  var snapshot = SnapshotMetadata()
  /// `entries[k].index == baseIndex + 1 + k`.
  var entries: [Entry] = []
  var baseIndex: UInt64 = 0
  var baseTerm: UInt64 = 0
  /// Where the log last restarted after a gap, when it has not been covered by a snapshot since.
  var gap: (file: String, offset: Int, index: UInt64, after: UInt64)? = nil
  var currentFile = ""
  var currentOffset = 0

  var lastIndex: UInt64 { baseIndex + UInt64(entries.count) }

  /// Adds an entry; returns a problem that makes the WAL corrupt.
  mutating func entry(_ e: Entry) -> String? {
    if e.index == .max { return "entry index \(e.index) is out of range" }
    if e.index <= baseIndex { return nil }  // covered by the snapshot
    if e.index > lastIndex + 1 {
      // A gap: legitimate only when older segments were compacted away and a snapshot recorded
      // later covers it; `finish` checks.
      let after = lastIndex
      entries.removeAll(keepingCapacity: true)
      baseIndex = e.index - 1
      baseTerm = 0
      gap = (currentFile, currentOffset, e.index, after)
    } else {
      entries.removeLast(Int(lastIndex - (e.index - 1)))
    }
    let prevTerm = entries.last?.term ?? baseTerm
    if e.term < prevTerm {
      return "entry \(e.index) has term \(e.term), lower than the term \(prevTerm) before it"
    }
    entries.append(e)
    return nil
  }

  mutating func snapshot(_ md: SnapshotMetadata, replacesLog: Bool, at: (String, Int)) -> String? {
    if md.index == .max { return "snapshot index \(md.index) is out of range" }
    if md.index < snapshot.index { return nil }  // an older snapshot (a segment prologue)
    snapshot = md
    if replacesLog || md.index > lastIndex
      || (md.index > baseIndex && entries[Int(md.index - baseIndex - 1)].term != md.term)
    {
      entries.removeAll(keepingCapacity: true)
    } else if md.index > baseIndex {
      entries.removeFirst(Int(md.index - baseIndex))
    } else if md.index < baseIndex {
      return nil  // the log already starts above it; keep the base
    }
    baseIndex = md.index
    baseTerm = md.term
    if let g = gap, g.index <= md.index + 1 { gap = nil }
    return nil
  }

  /// Final consistency checks; returns a problem (file, offset, reason) or nil.
  func finish() -> (file: String, offset: Int, reason: String)? {
    if let g = gap, baseIndex != snapshot.index {
      return (g.file, g.offset, "entries \(g.after + 1) to \(g.index - 1) are missing")
    }
    if hardState.commit > lastIndex, let at = hardStateAt {
      return (at.file, at.offset, "hard state commit \(hardState.commit) is beyond the last entry \(lastIndex)")
    }
    return nil
  }
}
