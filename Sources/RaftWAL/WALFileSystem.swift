#if canImport(Glibc)
  import Glibc
#endif

/// Every file and directory operation the WAL makes goes through this seam: the segments, the
/// spare, the snapshot files, the LOCK, renames, removals and directory syncs. Two
/// implementations: `PosixFileSystem` (the real one; its batches go through io_uring or
/// pwritev + fdatasync) and `FaultInjectingFileSystem` (in memory: power cuts that keep only
/// what was synced, torn and reordered writes, lost directory operations, EIO and ENOSPC on
/// demand), under which the same WAL code runs in the power-loss tests and in `raft-sim
/// --disk wal`.
///
/// A file is named by a descriptor the implementation hands out: a real descriptor, on which
/// io_uring may write and sync (the fault-injecting layer backs its descriptors with a scratch
/// memfd and keeps the truth itself, told about the ring's writes and syncs through the `ring`
/// hooks). The batch path (`BatchIO`) is generic over the concrete type, so a batch's write
/// and sync are direct calls; the operations the WAL makes per segment, per snapshot or at
/// open go through the existential.
///
/// Implementations are thread-safe: the spare segment is prepared on a thread of its own.
public protocol WALFileSystem: AnyObject, Sendable {
  /// Creates `directory` and its missing parents, each made durable in its parent (the parent
  /// is synced after the creation).
  func makeDirectory(_ directory: String) throws(WALError)
  /// Opens `path` with `flags` (`O_RDONLY`, `O_WRONLY` or `O_RDWR`, with `O_CREAT`,
  /// `O_TRUNC`); returns the descriptor.
  func open(_ path: String, _ flags: Int32) throws(WALError) -> Int32
  /// Closes a descriptor `open` returned.
  func close(_ fd: Int32)
  /// Takes the exclusive lock on an open file without waiting; false when another holder has it.
  func tryLock(_ fd: Int32, file: String) throws(WALError) -> Bool
  /// Writes all of `bytes` at `offset` (resuming short writes).
  func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int, file: String) throws(WALError)
  /// Makes what was written to the file durable (`mode` `.none`: does nothing).
  func sync(_ fd: Int32, _ mode: WALOptions.Fsync, file: String) throws(WALError)
  /// Allocates the file's blocks up to `bytes` (they read as zeros), extending its size.
  func allocate(_ fd: Int32, bytes: Int, file: String) throws(WALError)
  /// Extends the file to `bytes` without allocating blocks (a hole, which reads as zeros).
  func extend(_ fd: Int32, bytes: Int, file: String) throws(WALError)
  /// The file's size in bytes.
  func size(_ fd: Int32, file: String) throws(WALError) -> Int
  /// The whole content of the file at `path`.
  func readAll(_ path: String) throws(WALError) -> [UInt8]
  /// The names in `directory` (without "." and "..").
  func list(_ directory: String) throws(WALError) -> [String]
  /// Renames `from` to `to` (replacing `to`); durable once their directory is synced.
  func rename(_ from: String, _ to: String) throws(WALError)
  /// Removes `path` (a missing file is not an error); durable once its directory is synced.
  func unlink(_ path: String) throws(WALError)
  /// Makes the creations, renames and removals in `directory` durable.
  func syncDirectory(_ directory: String) throws(WALError)

  /// io_uring: the ring is about to write `bytes` at `offset` of `fd` (linked writes).
  func ringWillWrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int)
  /// io_uring: the ring's write to `fd` completed with the kernel's `result` (bytes or -errno);
  /// returns the result to act on (the kernel's, or an injected failure).
  func ringDidWrite(_ fd: Int32, result: Int32) -> Int32
  /// io_uring: a sync of `fd` goes into the ring now; returns a token for its completion. It
  /// covers what was written to the file before this call.
  func ringWillSync(_ fd: Int32) -> UInt64
  /// io_uring: the sync with `token` completed with the kernel's `result` (0 or -errno);
  /// returns the result to act on (the kernel's, or an injected failure).
  func ringDidSync(_ token: UInt64, result: Int32) -> Int32
}

extension WALFileSystem {
  /// Writes zeros over `[from, to)` of an open file (1 MiB at a time).
  func writeZeros(_ fd: Int32, from: Int, to: Int, file: String) throws(WALError) {
    let chunk = 1 << 20
    let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: min(chunk, max(to - from, 1)), alignment: 4096)
    defer { zeros.deallocate() }
    zeros.initializeMemory(as: UInt8.self, repeating: 0)
    var at = from
    while at < to {
      let n = min(zeros.count, to - at)
      try write(fd, UnsafeRawBufferPointer(rebasing: zeros[0..<n]), offset: at, file: file)
      at += n
    }
  }
}

/// The real file system: thin wrappers over the system calls (`FileIO`); every error names
/// the file.
public final class PosixFileSystem: WALFileSystem {
  /// The one instance (it has no state).
  public static let shared = PosixFileSystem()

  private init() {}

  public func makeDirectory(_ directory: String) throws(WALError) { try FileIO.makeDirectory(directory) }

  public func open(_ path: String, _ flags: Int32) throws(WALError) -> Int32 { try FileIO.open(path, flags) }

  public func close(_ fd: Int32) { FileIO.close(fd) }

  public func tryLock(_ fd: Int32, file: String) throws(WALError) -> Bool {
    if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
    let err = errno
    if err == EWOULDBLOCK { return false }
    throw .io(operation: "flock", file: file, errno: err)
  }

  @inline(__always)
  public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int, file: String) throws(WALError) {
    try FileIO.pwritevAll(fd, bytes, offset: offset, file: file)
  }

  @inline(__always)
  public func sync(_ fd: Int32, _ mode: WALOptions.Fsync, file: String) throws(WALError) {
    try FileIO.sync(fd, mode, file: file)
  }

  public func allocate(_ fd: Int32, bytes: Int, file: String) throws(WALError) {
    let rc = posix_fallocate(fd, 0, off_t(bytes))
    if rc != 0 { throw .io(operation: "posix_fallocate", file: file, errno: rc) }
  }

  public func extend(_ fd: Int32, bytes: Int, file: String) throws(WALError) {
    if ftruncate(fd, off_t(bytes)) != 0 { throw .io(operation: "ftruncate", file: file, errno: errno) }
  }

  public func size(_ fd: Int32, file: String) throws(WALError) -> Int { try FileIO.size(fd, file: file) }

  public func readAll(_ path: String) throws(WALError) -> [UInt8] { try FileIO.readAll(path) }

  public func list(_ directory: String) throws(WALError) -> [String] { try FileIO.list(directory) }

  public func rename(_ from: String, _ to: String) throws(WALError) { try FileIO.rename(from, to) }

  public func unlink(_ path: String) throws(WALError) { try FileIO.unlink(path) }

  public func syncDirectory(_ directory: String) throws(WALError) { try FileIO.syncDirectory(directory) }

  @inline(__always)
  public func ringWillWrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int) {}

  @inline(__always)
  public func ringDidWrite(_ fd: Int32, result: Int32) -> Int32 { result }

  @inline(__always)
  public func ringWillSync(_ fd: Int32) -> UInt64 { 0 }

  @inline(__always)
  public func ringDidSync(_ token: UInt64, result: Int32) -> Int32 { result }
}
