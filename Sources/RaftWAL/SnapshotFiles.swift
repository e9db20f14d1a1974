import Raft

#if canImport(Glibc)
  import Glibc
#endif

/// Snapshot data files next to the segments, one per snapshot, named `TERM-INDEX.snap` (16 hex
/// digits each):
///
///     magic "RSNP" (u32 LE) | crc32c of the body (u32 LE) | body length (u64 LE) | body
///
/// where the body is the `RaftCodec` encoding of the `Snapshot` (metadata and data). A file is
/// written to a temporary name, synced, renamed and the directory synced, before the WAL record
/// that refers to it is written.
enum SnapshotFiles {
  static let magic: UInt32 = 0x504E_5352  // "RSNP" little-endian
  static let headerBytes = 16
  static let suffix = ".snap"

  static func name(_ md: SnapshotMetadata) -> String {
    SegmentNames.hex16(md.term) + "-" + SegmentNames.hex16(md.index) + suffix
  }

  /// Writes the snapshot file durably (unless `fsync` is `.none`).
  static func save(
    _ snap: Snapshot, directory: String, fsync: WALOptions.Fsync, syncDirectory: Bool, fs: any WALFileSystem
  ) throws(WALError) {
    let final = FileIO.path(directory, name(snap.metadata))
    let tmp = final + ".tmp"
    var body: [UInt8] = []
    RaftCodec.encode(snap, into: &body)
    var file = [UInt8](repeating: 0, count: headerBytes)
    file.withUnsafeMutableBytes { b in
      b.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
      b.storeBytes(of: CRC32C.checksum(body).littleEndian, toByteOffset: 4, as: UInt32.self)
      b.storeBytes(of: UInt64(body.count).littleEndian, toByteOffset: 8, as: UInt64.self)
    }
    file += body
    let fd = try fs.open(tmp, O_WRONLY | O_CREAT | O_TRUNC)
    do throws(WALError) {
      try file.withUnsafeBytes { b in
        Result { () throws(WALError) in try fs.write(fd, b, offset: 0, file: tmp) }
      }.get()
      try fs.sync(fd, fsync == .none ? .none : .fsync, file: tmp)
    } catch {
      fs.close(fd)
      throw error
    }
    fs.close(fd)
    try fs.rename(tmp, final)
    if syncDirectory { try fs.syncDirectory(directory) }  // the file's name
  }

  /// Reads and verifies the snapshot file for `md`.
  static func load(_ md: SnapshotMetadata, directory: String, fs: any WALFileSystem) throws(WALError) -> Snapshot {
    let path = FileIO.path(directory, name(md))
    let bytes: [UInt8]
    do {
      bytes = try fs.readAll(path)
    } catch {
      if case .io(_, _, let err) = error, err == ENOENT {
        throw .corrupt(file: path, offset: 0, reason: "snapshot file is missing (the WAL refers to it)")
      }
      throw error
    }
    return try bytes.withUnsafeBytes { b in
      Result { () throws(WALError) -> Snapshot in
        guard b.count >= headerBytes,
          UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magic
        else { throw .corrupt(file: path, offset: 0, reason: "not a snapshot file (bad magic or too short)") }
        let crc = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let length = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard length == UInt64(b.count - headerBytes) else {
          throw .corrupt(
            file: path, offset: 8, reason: "body length \(length) but \(b.count - headerBytes) bytes follow")
        }
        let body = UnsafeRawBufferPointer(rebasing: b[headerBytes...])
        guard CRC32C.checksum(body) == crc else {
          throw .corrupt(file: path, offset: headerBytes, reason: "snapshot checksum mismatch")
        }
        var offset = 0
        let snap: Snapshot
        do throws(CodecError) {
          snap = try RaftCodec.decode(Snapshot.self, from: body, offset: &offset, limits: .unlimitedBytes)
        } catch {
          throw .corrupt(file: path, offset: headerBytes + error.offset, reason: "snapshot body: \(error)")
        }
        guard offset == body.count, snap.metadata == md else {
          throw .corrupt(file: path, offset: headerBytes, reason: "snapshot metadata does not match the WAL record")
        }
        return snap
      }
    }.get()
  }

  /// Removes every snapshot file except the one for `keep`.
  /// (No directory sync: an older snapshot file a power cut brings back is removed next time.)
  static func removeAll(except keep: SnapshotMetadata, directory: String, fs: any WALFileSystem) throws(WALError) {
    let keepName = name(keep)
    for n in try fs.list(directory) where n.hasSuffix(suffix) && n != keepName {
      try fs.unlink(FileIO.path(directory, n))
    }
  }
}

extension CodecLimits {
  /// The default limits, with byte strings as large as an `Int` allows (snapshot data).
  static var unlimitedBytes: CodecLimits {
    var l = CodecLimits.default
    l.maxBytesLength = Int.max
    return l
  }
}

/// Segment file names: `SEQUENCE-FIRSTINDEX.wal`, 16 lowercase hex digits each, so that a
/// directory listing sorts them in order and shows where each begins.
public enum SegmentNames {
  static let suffix = ".wal"
  /// The zero-filled segment waiting to become the next one.
  static let spare = "spare.tmp"

  static func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
  }

  /// The file name of a segment.
  public static func name(sequence: UInt64, firstIndex: UInt64) -> String {
    hex16(sequence) + "-" + hex16(firstIndex) + suffix
  }

  /// Parses a segment file name; nil for anything else.
  public static func parse(_ name: String) -> (sequence: UInt64, firstIndex: UInt64)? {
    guard name.hasSuffix(suffix), name.utf8.count == 16 + 1 + 16 + suffix.utf8.count else { return nil }
    let parts = name.dropLast(suffix.count).split(separator: "-")
    guard parts.count == 2, let s = UInt64(parts[0], radix: 16), let f = UInt64(parts[1], radix: 16) else {
      return nil
    }
    return (s, f)
  }
}
