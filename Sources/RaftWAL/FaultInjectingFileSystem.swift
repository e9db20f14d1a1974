import CLibURing
import Raft

#if canImport(Glibc)
  import Glibc
#endif

/// An in-memory file system that loses what a power cut loses (RocksDB's
/// `FaultInjectionTestFS`, LevelDB's fault-injection env): the WAL runs on it unchanged, in the
/// power-loss tests and in `raft-sim --disk wal`.
///
/// **What it keeps apart.** Each file has its durable content and, in order, the changes made
/// since (writes, truncations, allocations); a sync of the file makes every change before it
/// durable. Each directory has its durable entries and, in order, the creations, renames and
/// removals since; a sync of the directory makes them durable. Reads see everything.
///
/// **A power cut** (`powerCut(seed:)`, seeded) returns the file system as the machine finds it
/// on the next boot. Every directory keeps its durable entries plus a prefix of its later
/// operations (a journal commits them in order; the prefix may be empty). Every file keeps its
/// durable content plus, chosen at random, nothing more, a prefix of its later changes, or a
/// random subset of them at 512-byte-sector granularity (torn and reordered writes). The
/// instance that was cut refuses everything afterwards (EIO), as a dead machine would.
///
/// **Failures on demand.** `failNext` makes the next matching operation fail with an errno
/// (EIO, ENOSPC); `capacityBytes` makes writes that would grow the files past it fail with
/// ENOSPC.
///
/// **io_uring.** Descriptors are duplicates of one scratch memfd, so a ring can write to and
/// sync them; the ring hooks tell this layer what the ring wrote and when its syncs completed,
/// and the model, not the memfd, is the truth.
///
/// Thread-safe (one lock), deterministic for a given sequence of calls and seeds.
public final class FaultInjectingFileSystem: WALFileSystem, @unchecked Sendable {
  /// The operations `failNext` can make fail.
  public enum Operation: String, Sendable, CaseIterable {
    /// A write (not the ring's).
    case write
    /// A file sync, posix or through the ring.
    case sync
    case syncDirectory
    case rename
    /// An open that creates the file.
    case create
  }

  /// What a power cut did.
  public struct PowerCutReport: Sendable, Equatable {
    /// Files that had changes not yet durable.
    public var filesWithUnsyncedChanges = 0
    /// Of those: kept none of them, a prefix of them, a random subset of sectors.
    public var keptNothing = 0
    public var keptPrefix = 0
    public var keptSubset = 0
    /// Directory operations not yet durable, and how many of them the cut lost.
    public var directoryOperationsUnsynced = 0
    public var directoryOperationsLost = 0
  }

  /// A file's content. Invariant: `current` is `durable` with every change of `pending` applied
  /// in order.
  private final class Inode {
    var current: [UInt8] = []
    var durable: [UInt8] = []
    /// Changes since the last sync, oldest first, each with its sequence number.
    var pending: [(sequence: UInt64, change: Change)] = []
    var nextSequence: UInt64 = 1
  }

  private enum Change {
    case write(offset: Int, bytes: [UInt8])
    /// Truncation or extension (with zeros) to a size.
    case resize(Int)
  }

  private final class Directory {
    var current: [String: Node] = [:]
    var durable: [String: Node] = [:]
    /// Operations since the last sync, oldest first.
    var pending: [DirectoryOperation] = []
  }

  private enum Node {
    case file(Inode)
    case directory(Directory)
  }

  private enum DirectoryOperation {
    case set(String, Node)
    case remove(String)
    case rename(from: String, to: String)
  }

  private struct Handle {
    var inode: Inode
    var path: String
  }

  private struct Fault {
    var operation: Operation
    var errno: Int32
    var pathContaining: String?
  }

  /// Guards everything below.
  private let mutex: UnsafeMutablePointer<pthread_mutex_t>
  private let root = Directory()
  private var handles: [Int32: Handle] = [:]
  /// Descriptors holding the lock of an inode, by inode.
  private var lockHolders: [ObjectIdentifier: Int32] = [:]
  private var ringSyncs: [UInt64: (inode: Inode, through: UInt64)] = [:]
  /// The ring sync queued last on each descriptor (linked mode queues a write and its sync
  /// back to back on a slot's own descriptor, one pair at a time).
  private var linkedSync: [Int32: UInt64] = [:]
  /// Ring syncs whose linked write was failed on purpose: they come back cancelled, as the
  /// kernel cancels a link after a failed request.
  private var brokenLinks: Set<UInt64> = []
  private var nextRingToken: UInt64 = 1
  private var faults: [Fault] = []
  /// Set by `powerCut` or when `dieAfter`'s count runs out: this machine is gone.
  private var dead = false
  /// Operations that change something (or sync it) left before the machine dies (nil: never).
  private var operationsLeft: Int? = nil
  /// Bytes of file content (current sizes), for `capacityBytes`.
  private var usedBytes = 0
  /// The scratch file io_uring writes to (its content is never read).
  private let sink: Int32

  /// Writes that would grow the files' total size past this fail with ENOSPC (nil: no limit).
  public var capacityBytes: Int? {
    get { locked { capacity } }
    set { locked { capacity = newValue } }
  }
  private var capacity: Int? = nil

  /// An empty file system (its root directory exists and is durable).
  public init() {
    mutex = .allocate(capacity: 1)
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
    sink = swift_raft_memfd("swift-raft-fault-fs")
    precondition(sink >= 0, "FaultInjectingFileSystem: memfd_create failed (errno \(errno))")
  }

  deinit {
    for fd in handles.keys { Glibc.close(fd) }
    Glibc.close(sink)
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
  }

  @inline(__always)
  private func locked<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return try body()
  }

  // MARK: - Faults and inspection

  /// The next `operation` (on a path containing `pathContaining`, when given) fails with `errno`.
  public func failNext(_ operation: Operation, errno: Int32, pathContaining: String? = nil) {
    locked { faults.append(Fault(operation: operation, errno: errno, pathContaining: pathContaining)) }
  }

  /// What a read of `path` returns now (nil: no such file).
  public func contents(of path: String) -> [UInt8]? {
    locked {
      guard let (dir, name) = try? resolveParent(path), case .file(let inode)? = dir.current[name] else { return nil }
      return inode.current
    }
  }

  /// Damage after the data was durable (a bit flipped on the medium): flips `mask` into the
  /// byte at `offset` of `path`. False when there is no such byte.
  @discardableResult
  public func damage(_ path: String, offset: Int, mask: UInt8 = 0x40) -> Bool {
    locked {
      guard let (dir, name) = try? resolveParent(path), case .file(let inode)? = dir.current[name],
        offset < inode.current.count
      else { return false }
      inode.current[offset] ^= mask
      if offset < inode.durable.count { inode.durable[offset] ^= mask }
      return true
    }
  }

  /// The machine dies just before the `operations + 1`-th operation from now that changes or
  /// syncs something (a write, a sync, a creation, a rename, a removal; the ring's included):
  /// that operation and every later one fail with EIO, as they would with the power gone. Then
  /// `powerCut` gives what the next boot finds.
  public func dieAfter(operations: Int) {
    precondition(operations >= 0, "FaultInjectingFileSystem.dieAfter: a negative count")
    locked { operationsLeft = operations }
  }

  /// True once the machine died (`dieAfter`) or its power was cut.
  public var isDead: Bool { locked { dead } }

  /// Counts one operation towards `dieAfter`; false when the machine is (now) dead.
  private func survives() -> Bool {
    if dead { return false }
    guard let left = operationsLeft else { return true }
    if left == 0 {
      dead = true
      return false
    }
    operationsLeft = left - 1
    return true
  }

  /// `survives`, throwing EIO naming the operation when not.
  private func counted(_ operation: String, _ path: String) throws(WALError) {
    if !survives() { throw .io(operation: operation + " (the power was cut)", file: path, errno: EIO) }
  }

  /// Takes a matching injected fault, if any.
  private func takeFault(_ operation: Operation, path: String) -> Int32? {
    guard
      let k = faults.firstIndex(where: {
        $0.operation == operation && ($0.pathContaining.map { path.contains($0) } ?? true)
      })
    else { return nil }
    return faults.remove(at: k).errno
  }

  private func checkAlive(_ operation: String, _ path: String) throws(WALError) {
    if dead { throw .io(operation: operation + " (the power was cut)", file: path, errno: EIO) }
  }

  // MARK: - Paths

  private static func components(_ path: String) -> [String] {
    path.split(separator: "/").map(String.init).filter { $0 != "." }
  }

  /// The directory holding the last component of `path`, and that component.
  private func resolveParent(_ path: String) throws(WALError) -> (Directory, String) {
    let parts = Self.components(path)
    guard let name = parts.last else { throw .io(operation: "resolve", file: path, errno: EINVAL) }
    return (try resolveDirectory(parts.dropLast(), path: path), name)
  }

  private func resolveDirectory(_ parts: ArraySlice<String>, path: String) throws(WALError) -> Directory {
    var dir = root
    for part in parts {
      switch dir.current[part] {
      case .directory(let d)?: dir = d
      case .file?: throw .io(operation: "resolve", file: path, errno: ENOTDIR)
      case nil: throw .io(operation: "resolve", file: path, errno: ENOENT)
      }
    }
    return dir
  }

  // MARK: - WALFileSystem

  public func makeDirectory(_ directory: String) throws(WALError) {
    try locked { () throws(WALError) in
      try checkAlive("mkdir", directory)
      var dir = root
      for part in Self.components(directory) {
        switch dir.current[part] {
        case .directory(let d)?: dir = d
        case .file?: throw .io(operation: "mkdir", file: directory, errno: ENOTDIR)
        case nil:
          let d = Directory()
          dir.current[part] = .directory(d)
          // Made durable in its parent at once, as the real one syncs the parent.
          dir.durable = dir.current
          dir.pending.removeAll()
          dir = d
        }
      }
    }
  }

  public func open(_ path: String, _ flags: Int32) throws(WALError) -> Int32 {
    try locked { () throws(WALError) -> Int32 in
      try checkAlive("open", path)
      let (dir, name) = try resolveParent(path)
      let inode: Inode
      switch dir.current[name] {
      case .directory?: throw .io(operation: "open", file: path, errno: EISDIR)
      case .file(let i)?:
        inode = i
        if flags & O_TRUNC != 0 && !inode.current.isEmpty {
          try counted("open", path)
          record(.resize(0), on: inode)
        }
      case nil:
        guard flags & O_CREAT != 0 else { throw .io(operation: "open", file: path, errno: ENOENT) }
        try counted("open", path)
        if let e = takeFault(.create, path: path) { throw .io(operation: "open", file: path, errno: e) }
        inode = Inode()
        dir.current[name] = .file(inode)
        dir.pending.append(.set(name, .file(inode)))
      }
      let fd = dup(sink)
      if fd < 0 { throw .io(operation: "open (dup)", file: path, errno: errno) }
      handles[fd] = Handle(inode: inode, path: path)
      return fd
    }
  }

  public func close(_ fd: Int32) {
    locked {
      guard let h = handles.removeValue(forKey: fd) else { return }
      let id = ObjectIdentifier(h.inode)
      if lockHolders[id] == fd { lockHolders[id] = nil }
      Glibc.close(fd)
    }
  }

  public func tryLock(_ fd: Int32, file: String) throws(WALError) -> Bool {
    try locked { () throws(WALError) -> Bool in
      try checkAlive("flock", file)
      let h = try handle(fd, file)
      let id = ObjectIdentifier(h.inode)
      if let holder = lockHolders[id], holder != fd { return false }
      lockHolders[id] = fd
      return true
    }
  }

  private func handle(_ fd: Int32, _ file: String) throws(WALError) -> Handle {
    guard let h = handles[fd] else { throw .io(operation: "use of a closed descriptor", file: file, errno: EBADF) }
    return h
  }

  public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int, file: String) throws(WALError) {
    try locked { () throws(WALError) in
      try checkAlive("pwrite", file)
      let h = try handle(fd, file)
      try counted("pwrite", file)
      if let e = takeFault(.write, path: h.path) { throw .io(operation: "pwrite", file: file, errno: e) }
      try checkCapacity(growing: h.inode, to: offset + bytes.count, file: file)
      record(.write(offset: offset, bytes: Self.copy(bytes)), on: h.inode)
    }
  }

  /// The bytes as an array, with one memory copy.
  private static func copy(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: bytes.count) { out, n in
      if let base = bytes.baseAddress {
        UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: base, byteCount: bytes.count)
      }
      n = bytes.count
    }
  }

  public func sync(_ fd: Int32, _ mode: WALOptions.Fsync, file: String) throws(WALError) {
    guard mode != .none else { return }
    try locked { () throws(WALError) in
      try checkAlive("fsync", file)
      let h = try handle(fd, file)
      try counted("fdatasync", file)
      if let e = takeFault(.sync, path: h.path) { throw .io(operation: "fdatasync", file: file, errno: e) }
      makeDurable(h.inode, through: h.inode.nextSequence - 1)
    }
  }

  public func allocate(_ fd: Int32, bytes: Int, file: String) throws(WALError) {
    try grow(fd, to: bytes, file: file, operation: "posix_fallocate", takesBlocks: true)
  }

  public func extend(_ fd: Int32, bytes: Int, file: String) throws(WALError) {
    // A hole takes no blocks until written; the size is metadata, durable like a fallocate's.
    try grow(fd, to: bytes, file: file, operation: "ftruncate", takesBlocks: false)
  }

  /// Grows the file to `bytes` (a no-op when it is that long already), its blocks allocated
  /// (checked against the capacity) or not.
  private func grow(_ fd: Int32, to bytes: Int, file: String, operation: String, takesBlocks: Bool) throws(WALError) {
    try locked { () throws(WALError) in
      try checkAlive(operation, file)
      let h = try handle(fd, file)
      guard bytes > h.inode.current.count else { return }
      try counted(operation, file)
      if takesBlocks { try checkCapacity(growing: h.inode, to: bytes, file: file) }
      record(.resize(bytes), on: h.inode)
    }
  }

  public func size(_ fd: Int32, file: String) throws(WALError) -> Int {
    try locked { () throws(WALError) -> Int in
      try checkAlive("fstat", file)
      return try handle(fd, file).inode.current.count
    }
  }

  public func readAll(_ path: String) throws(WALError) -> [UInt8] {
    try locked { () throws(WALError) -> [UInt8] in
      try checkAlive("read", path)
      let (dir, name) = try resolveParent(path)
      switch dir.current[name] {
      case .file(let inode)?: return inode.current
      case .directory?: throw .io(operation: "read", file: path, errno: EISDIR)
      case nil: throw .io(operation: "open", file: path, errno: ENOENT)
      }
    }
  }

  public func list(_ directory: String) throws(WALError) -> [String] {
    try locked { () throws(WALError) -> [String] in
      try checkAlive("opendir", directory)
      return try resolveDirectory(Self.components(directory)[...], path: directory).current.keys.sorted()
    }
  }

  public func rename(_ from: String, _ to: String) throws(WALError) {
    try locked { () throws(WALError) in
      try checkAlive("rename", from)
      try counted("rename", from)
      if let e = takeFault(.rename, path: from) { throw .io(operation: "rename to \(to)", file: from, errno: e) }
      let (dir, name) = try resolveParent(from)
      let (toDir, toName) = try resolveParent(to)
      guard toDir === dir else { throw .io(operation: "rename to \(to)", file: from, errno: EXDEV) }
      guard let node = dir.current.removeValue(forKey: name) else {
        throw .io(operation: "rename to \(to)", file: from, errno: ENOENT)
      }
      dir.current[toName] = node
      dir.pending.append(.rename(from: name, to: toName))
    }
  }

  public func unlink(_ path: String) throws(WALError) {
    try locked { () throws(WALError) in
      try checkAlive("unlink", path)
      guard let (dir, name) = try? resolveParent(path), dir.current[name] != nil else { return }
      try counted("unlink", path)
      dir.current[name] = nil
      dir.pending.append(.remove(name))
    }
  }

  public func syncDirectory(_ directory: String) throws(WALError) {
    try locked { () throws(WALError) in
      try checkAlive("fsync", directory)
      try counted("fsync", directory)
      if let e = takeFault(.syncDirectory, path: directory) {
        throw .io(operation: "fsync", file: directory, errno: e)
      }
      let dir = try resolveDirectory(Self.components(directory)[...], path: directory)
      dir.durable = dir.current
      dir.pending.removeAll()
    }
  }

  public func ringWillWrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int) {
    locked {
      guard let h = handles[fd], survives() else { return }
      record(.write(offset: offset, bytes: Self.copy(bytes)), on: h.inode)
    }
  }

  public func ringDidWrite(_ fd: Int32, result: Int32) -> Int32 {
    locked {
      if dead { return -EIO }
      guard result >= 0, let h = handles[fd] else { return result }
      if let e = takeFault(.write, path: h.path) {
        if let token = linkedSync[fd] { brokenLinks.insert(token) }
        return -e
      }
      return result
    }
  }

  public func ringWillSync(_ fd: Int32) -> UInt64 {
    locked {
      guard let h = handles[fd], survives() else { return 0 }
      let token = nextRingToken
      nextRingToken += 1
      ringSyncs[token] = (h.inode, h.inode.nextSequence - 1)
      linkedSync[fd] = token
      return token
    }
  }

  public func ringDidSync(_ token: UInt64, result: Int32) -> Int32 {
    locked {
      guard let sync = ringSyncs.removeValue(forKey: token), survives() else { return -EIO }
      guard result >= 0 else { return result }
      if brokenLinks.remove(token) != nil { return -ECANCELED }
      let path = handles.values.first { $0.inode === sync.inode }?.path ?? ""
      if let e = takeFault(.sync, path: path) { return -e }
      makeDurable(sync.inode, through: sync.through)
      return result
    }
  }

  // MARK: - The model

  private func checkCapacity(growing inode: Inode, to size: Int, file: String) throws(WALError) {
    guard let capacity, size > inode.current.count else { return }
    if usedBytes + (size - inode.current.count) > capacity {
      throw .io(operation: "pwrite", file: file, errno: ENOSPC)
    }
  }

  /// Applies `change` to what reads see, and keeps it pending until a sync.
  private func record(_ change: Change, on inode: Inode) {
    let before = inode.current.count
    Self.apply(change, to: &inode.current)
    usedBytes += inode.current.count - before
    inode.pending.append((inode.nextSequence, change))
    inode.nextSequence += 1
  }

  /// A sync covering the changes up to `sequence` completed.
  private func makeDurable(_ inode: Inode, through sequence: UInt64) {
    var k = 0
    while k < inode.pending.count && inode.pending[k].sequence <= sequence {
      Self.apply(inode.pending[k].change, to: &inode.durable)
      k += 1
    }
    inode.pending.removeFirst(k)
    if inode.pending.isEmpty {
      assert(Self.same(inode.durable, inode.current), "fault fs: a synced file differs from its reads")
    }
  }

  private static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count
      && (a.isEmpty
        || a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } })
  }

  private static func apply(_ change: Change, to content: inout [UInt8]) {
    switch change {
    case .write(let offset, let bytes):
      if content.count < offset + bytes.count { resize(&content, to: offset + bytes.count) }
      content.withUnsafeMutableBytes { to in
        bytes.withUnsafeBytes { from in
          guard let source = from.baseAddress else { return }
          (to.baseAddress! + offset).copyMemory(from: source, byteCount: from.count)
        }
      }
    case .resize(let size):
      resize(&content, to: size)
    }
  }

  /// Cuts `content` to `size` bytes or extends it with zeros (memory operations: this runs for
  /// every write of the tests' debug builds).
  private static func resize(_ content: inout [UInt8], to size: Int) {
    guard size != content.count else { return }
    let kept = min(size, content.count)
    var out = [UInt8](unsafeUninitializedCapacity: size) { buffer, n in
      let base = UnsafeMutableRawPointer(buffer.baseAddress!)
      content.withUnsafeBytes { old in if kept > 0 { base.copyMemory(from: old.baseAddress!, byteCount: kept) } }
      if size > kept { memset(base + kept, 0, size - kept) }
      n = size
    }
    swap(&content, &out)
  }

  // MARK: - Power cuts

  /// Cuts the power: returns the file system as the next boot finds it (what `seed` chose of
  /// everything not yet durable), and what the cut did. This instance is dead afterwards.
  public func powerCut(seed: UInt64) -> (FaultInjectingFileSystem, PowerCutReport) {
    locked {
      dead = true
      var rng = SplitMix64(seed: seed)
      var report = PowerCutReport()
      let next = FaultInjectingFileSystem()
      var files: [ObjectIdentifier: Inode] = [:]
      var directories: [ObjectIdentifier: Directory] = [:]

      func survivor(of inode: Inode) -> Inode {
        if let done = files[ObjectIdentifier(inode)] { return done }
        let out = Inode()
        out.durable = Self.surviving(inode, &rng, &report)
        out.current = out.durable
        files[ObjectIdentifier(inode)] = out
        next.usedBytes += out.current.count
        return out
      }

      func survivor(of dir: Directory, into out: Directory) {
        directories[ObjectIdentifier(dir)] = out
        var entries = dir.durable
        let kept = Int(rng.next() % UInt64(dir.pending.count + 1))
        report.directoryOperationsUnsynced += dir.pending.count
        report.directoryOperationsLost += dir.pending.count - kept
        for op in dir.pending.prefix(kept) {
          switch op {
          case .set(let name, let node): entries[name] = node
          case .remove(let name): entries[name] = nil
          case .rename(let from, let to):
            if let node = entries.removeValue(forKey: from) { entries[to] = node }
          }
        }
        // Sorted: the same seed makes the same choices whatever the hashing of this process.
        for name in entries.keys.sorted() {
          switch entries[name]! {
          case .file(let inode): out.current[name] = .file(survivor(of: inode))
          case .directory(let d):
            if let done = directories[ObjectIdentifier(d)] {
              out.current[name] = .directory(done)
            } else {
              let child = Directory()
              survivor(of: d, into: child)
              out.current[name] = .directory(child)
            }
          }
        }
        out.durable = out.current
      }

      survivor(of: root, into: next.root)
      next.capacity = capacity
      return (next, report)
    }
  }

  /// What of `inode` a power cut leaves.
  private static func surviving(_ inode: Inode, _ rng: inout SplitMix64, _ report: inout PowerCutReport) -> [UInt8] {
    var content = inode.durable
    guard !inode.pending.isEmpty else { return content }
    report.filesWithUnsyncedChanges += 1
    switch rng.next() % 3 {
    case 0:
      report.keptNothing += 1
    case 1:
      report.keptPrefix += 1
      let kept = Int(rng.next() % UInt64(inode.pending.count + 1))
      for (_, change) in inode.pending.prefix(kept) { apply(change, to: &content) }
    default:
      report.keptSubset += 1
      let sector = 512
      for (_, change) in inode.pending {
        switch change {
        case .resize:
          if rng.next() & 1 == 0 { apply(change, to: &content) }
        case .write(let offset, let bytes):
          // Whole sectors of the medium, each reached or not.
          var at = offset
          while at < offset + bytes.count {
            let end = min((at / sector + 1) * sector, offset + bytes.count)
            if rng.next() & 1 == 0 {
              apply(.write(offset: at, bytes: Array(bytes[(at - offset)..<(end - offset)])), to: &content)
            }
            at = end
          }
        }
      }
    }
    return content
  }
}
