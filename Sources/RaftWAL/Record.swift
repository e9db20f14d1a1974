import Raft

/// The kinds of WAL records. Zero is never a type: a zero type byte marks a record whose write
/// did not finish (segments are zero-filled ahead of use).
public enum WALRecordType: UInt8, Sendable, CustomStringConvertible {
  /// First record of every segment: magic, version, sequence, first index, segment size.
  case segmentHeader = 1
  /// One log entry (the `RaftCodec` entry body).
  case entry = 2
  /// The hard state (the `RaftCodec` hard state body).
  case hardState = 3
  /// Snapshot metadata: a flags byte (bit 0: the snapshot replaces the log), then the
  /// `RaftCodec` snapshot metadata body. The data lives in a snapshot file.
  case snapshot = 4

  public var description: String {
    switch self {
    case .segmentHeader: "segment-header"
    case .entry: "entry"
    case .hardState: "hard-state"
    case .snapshot: "snapshot"
    }
  }
}

/// The framing of one record:
///
///     length (u32 LE) | ~length (u32 LE) | crc32c of payload + type (u32 LE) | payload | type (u8)
///
/// The length is stored twice (the second time inverted) so that a damaged length is told apart
/// from a torn write before it is trusted; the type byte comes last so that a record whose
/// write stopped early ends in a zero byte.
enum RecordFraming {
  /// Bytes before the payload.
  static let headerBytes = 12
  /// Bytes around the payload in all (header and the closing type byte).
  static let overheadBytes = 13

  /// Writes a record whose payload is produced by `body` (which must write exactly
  /// `payloadBytes`) at `start`, and returns the record's size.
  @inline(__always)
  static func write(
    _ type: WALRecordType, payloadBytes: Int, at start: UnsafeMutableRawPointer,
    _ body: (UnsafeMutableRawBufferPointer) -> Int
  ) -> Int {
    let payload = start + headerBytes
    let written = body(UnsafeMutableRawBufferPointer(start: payload, count: payloadBytes))
    precondition(written == payloadBytes, "WAL record payload size mismatch")
    (payload + payloadBytes).storeBytes(of: type.rawValue, as: UInt8.self)
    let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: payload, count: payloadBytes + 1))
    let length = UInt32(payloadBytes)
    start.storeBytes(of: length.littleEndian, as: UInt32.self)
    (start + 4).storeBytes(of: (~length).littleEndian, as: UInt32.self)
    (start + 8).storeBytes(of: crc.littleEndian, as: UInt32.self)
    return payloadBytes + overheadBytes
  }

  /// What is found at an offset of a segment image.
  enum Parsed {
    /// A valid record.
    case record(WALRecordType, payload: Range<Int>, next: Int)
    /// A zero header: the end of the written part, or a hole.
    case zeroHeader
    /// A header whose two copies of the length disagree (or that is cut short by the end of
    /// the file): its extent is unknown.
    case badHeader(reason: String)
    /// A record with a sound length that is not valid; `claimedEnd` is where it ends by its
    /// length (possibly past the end of the image).
    case bad(reason: String, claimedEnd: Int)
  }

  /// Parses the record at `offset` of `image` (which holds `image.count` valid bytes).
  static func parse(_ image: UnsafeRawBufferPointer, at offset: Int, recordBytesMax: Int) -> Parsed {
    let count = image.count
    if count - offset < headerBytes {
      // Fewer bytes than a header: zero if they are all zero (or there are none), else cut short.
      return WALScanner.isZero(image, offset, count) ? .zeroHeader : .badHeader(reason: "record header cut short")
    }
    let length = UInt32(littleEndian: image.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    let check = UInt32(littleEndian: image.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
    let crc = UInt32(littleEndian: image.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self))
    if length == 0 && check == 0 && crc == 0 { return .zeroHeader }
    if check != ~length {
      return .badHeader(reason: "record length \(length) fails its check (\(hex(check)))")
    }
    let claimedEnd = offset + overheadBytes + Int(length)
    if Int(length) > recordBytesMax {
      return .bad(reason: "record length \(length) exceeds the limit \(recordBytesMax)", claimedEnd: claimedEnd)
    }
    if claimedEnd > count {
      return .bad(reason: "record runs past the end of the file", claimedEnd: claimedEnd)
    }
    let payloadStart = offset + headerBytes
    let body = UnsafeRawBufferPointer(rebasing: image[payloadStart..<(claimedEnd)])
    let actual = CRC32C.checksum(body)
    if actual != crc {
      return .bad(reason: "checksum mismatch (stored \(hex(crc)), computed \(hex(actual)))", claimedEnd: claimedEnd)
    }
    let typeByte = image[claimedEnd - 1]
    guard let type = WALRecordType(rawValue: typeByte) else {
      return .bad(reason: "unknown record type \(typeByte)", claimedEnd: claimedEnd)
    }
    return .record(type, payload: payloadStart..<(claimedEnd - 1), next: claimedEnd)
  }

  static func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
  }
}

/// The payload of a segment header record.
struct SegmentHeader: Equatable {
  static let magic: UInt32 = 0x4C41_5752  // "RWAL" little-endian
  static let version: UInt8 = 1
  static let payloadBytes = 4 + 1 + 8 + 8 + 8 + 8

  /// Position of the segment in the WAL (0, 1, 2, ...), also the first part of its file name.
  var sequence: UInt64
  /// The index the first entry written to the segment was expected to have (last index + 1 when
  /// the segment was opened), also the second part of its file name.
  var firstIndex: UInt64
  /// The segment size the writer used.
  var segmentBytes: UInt64
  /// The most bytes the writer could have had written but not yet synced at any moment (batches
  /// in flight x the largest batch): a torn tail is never longer.
  var unsyncedBytesMax: UInt64

  func write(to b: UnsafeMutableRawBufferPointer) -> Int {
    b.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
    b.storeBytes(of: Self.version, toByteOffset: 4, as: UInt8.self)
    b.storeBytes(of: sequence.littleEndian, toByteOffset: 5, as: UInt64.self)
    b.storeBytes(of: firstIndex.littleEndian, toByteOffset: 13, as: UInt64.self)
    b.storeBytes(of: segmentBytes.littleEndian, toByteOffset: 21, as: UInt64.self)
    b.storeBytes(of: unsyncedBytesMax.littleEndian, toByteOffset: 29, as: UInt64.self)
    return Self.payloadBytes
  }

  /// Decodes a header payload; nil when the magic, version or size is wrong.
  static func read(_ b: UnsafeRawBufferPointer) -> SegmentHeader? {
    guard b.count == payloadBytes,
      UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magic,
      b[4] == version
    else { return nil }
    return SegmentHeader(
      sequence: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 5, as: UInt64.self)),
      firstIndex: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 13, as: UInt64.self)),
      segmentBytes: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 21, as: UInt64.self)),
      unsyncedBytesMax: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 29, as: UInt64.self)))
  }
}

/// Snapshot record payloads: a flags byte, then the metadata.
enum SnapshotRecord {
  /// The snapshot replaces the log (installed from a leader); without it the log above the
  /// snapshot index is kept (a snapshot the application took of its own state).
  static let replacesLog: UInt8 = 1

  static func payloadBytes(_ md: SnapshotMetadata) -> Int { 1 + RaftCodec.encodedSize(md) }

  static func write(_ md: SnapshotMetadata, replacesLog: Bool, to b: UnsafeMutableRawBufferPointer) -> Int {
    b.storeBytes(of: replacesLog ? Self.replacesLog : 0, toByteOffset: 0, as: UInt8.self)
    return 1 + RaftCodec.encode(md, to: UnsafeMutableRawBufferPointer(rebasing: b[1...]))
  }

  static func read(_ b: UnsafeRawBufferPointer) throws(CodecError) -> (SnapshotMetadata, replacesLog: Bool) {
    guard b.count >= 1, b[0] & ~replacesLog == 0 else {
      throw CodecError(.reservedBits, offset: 0, detail: "unknown snapshot record flags")
    }
    var offset = 1
    let md = try RaftCodec.decode(SnapshotMetadata.self, from: b, offset: &offset)
    guard offset == b.count else {
      throw CodecError(.trailingBytes, offset: offset, detail: "bytes after the snapshot metadata")
    }
    return (md, b[0] & replacesLog != 0)
  }
}
