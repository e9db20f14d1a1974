#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Thin, throwing wrappers over the system calls the WAL uses. Every error names the file.
enum FileIO {
  static func path(_ directory: String, _ name: String) -> String { directory + "/" + name }

  static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(WALError) -> Int32 {
    while true {
      let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
      if fd >= 0 { return fd }
      if errno == EINTR { continue }
      throw .io(operation: "open", file: path, errno: errno)
    }
  }

  static func close(_ fd: Int32) { _ = Glibc.close(fd) }

  /// Blocks until the eventfd `fd` is signalled, and consumes its counter.
  static func readEventFD(_ fd: Int32) throws(WALError) {
    var value: UInt64 = 0
    while true {
      let n = read(fd, &value, 8)
      if n == 8 { return }
      if n < 0 && errno == EINTR { continue }
      throw .io(operation: "read (wake eventfd)", file: "-", errno: n < 0 ? errno : EIO)
    }
  }

  /// Writes all of `bytes` at `offset`, resuming short writes.
  static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int, file: String) throws(WALError) {
    var done = 0
    while done < bytes.count {
      let n = Glibc.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
      if n < 0 {
        if errno == EINTR { continue }
        throw .io(operation: "pwrite", file: file, errno: errno)
      }
      if n == 0 { throw .io(operation: "pwrite", file: file, errno: EIO) }
      done += n
    }
  }

  /// Writes the whole buffer with pwritev at `offset`, resuming short writes.
  static func pwritevAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int, file: String) throws(WALError) {
    var done = 0
    var iov = iovec()
    while done < bytes.count {
      iov.iov_base = UnsafeMutableRawPointer(mutating: bytes.baseAddress! + done)
      iov.iov_len = bytes.count - done
      let n = Glibc.pwritev(fd, &iov, 1, off_t(offset + done))
      if n < 0 {
        if errno == EINTR { continue }
        throw .io(operation: "pwritev", file: file, errno: errno)
      }
      if n == 0 { throw .io(operation: "pwritev", file: file, errno: EIO) }
      done += n
    }
  }

  static func sync(_ fd: Int32, _ mode: WALOptions.Fsync, file: String) throws(WALError) {
    switch mode {
    case .datasync:
      if fdatasync(fd) != 0 { throw .io(operation: "fdatasync", file: file, errno: errno) }
    case .fsync:
      if Glibc.fsync(fd) != 0 { throw .io(operation: "fsync", file: file, errno: errno) }
    case .none:
      break
    }
  }

  /// fsync of a directory, so that file creations, renames and removals in it are durable.
  static func syncDirectory(_ directory: String) throws(WALError) {
    let fd = try open(directory, O_RDONLY | O_DIRECTORY)
    defer { close(fd) }
    if Glibc.fsync(fd) != 0 { throw .io(operation: "fsync", file: directory, errno: errno) }
  }

  static func size(_ fd: Int32, file: String) throws(WALError) -> Int {
    var st = stat()
    if fstat(fd, &st) != 0 { throw .io(operation: "fstat", file: file, errno: errno) }
    return Int(st.st_size)
  }

  /// Reads the whole file.
  static func readAll(_ path: String) throws(WALError) -> [UInt8] {
    let fd = try open(path, O_RDONLY)
    defer { close(fd) }
    let count = try size(fd, file: path)
    var out = [UInt8](repeating: 0, count: count)
    var done = 0
    var failure: Int32 = 0
    out.withUnsafeMutableBytes { buf in
      while done < count {
        let n = Glibc.pread(fd, buf.baseAddress! + done, count - done, off_t(done))
        if n < 0 {
          if errno == EINTR { continue }
          failure = errno
          return
        }
        if n == 0 { break }
        done += n
      }
    }
    if failure != 0 { throw .io(operation: "read", file: path, errno: failure) }
    if done < count { out.removeLast(count - done) }
    return out
  }

  /// The names in `directory` (without "." and "..").
  static func list(_ directory: String) throws(WALError) -> [String] {
    guard let d = opendir(directory) else { throw .io(operation: "opendir", file: directory, errno: errno) }
    defer { closedir(d) }
    var names: [String] = []
    while let ent = readdir(d) {
      let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
        String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  static func rename(_ from: String, _ to: String) throws(WALError) {
    if Glibc.rename(from, to) != 0 { throw .io(operation: "rename to \(to)", file: from, errno: errno) }
  }

  static func unlink(_ path: String) throws(WALError) {
    if Glibc.unlink(path) != 0 && errno != ENOENT { throw .io(operation: "unlink", file: path, errno: errno) }
  }

  /// Creates `directory` and its missing parents; each one created is made durable by a sync
  /// of its parent (a WAL in a directory whose creation a power cut undid would be lost whole).
  static func makeDirectory(_ directory: String) throws(WALError) {
    var st = stat()
    if stat(directory, &st) == 0 { return }
    var prefix = directory.hasPrefix("/") ? "" : "."
    for part in directory.split(separator: "/") {
      let parent = prefix.isEmpty ? "/" : prefix
      prefix += "/" + part
      if mkdir(prefix, 0o755) == 0 {
        try syncDirectory(parent)
      } else if errno != EEXIST {
        throw .io(operation: "mkdir", file: prefix, errno: errno)
      }
    }
  }
}
