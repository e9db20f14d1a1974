// A WAL writer for crash tests: it appends batches of deterministic entries forever and prints
// `durable N` each time every entry up to N is acknowledged as durable. The test SIGKILLs it at
// a random moment and checks that everything it printed survived.
//
//     wal-crash-writer DIR uring|posix SEED
//
// Entry N has term 1 and `crashEntrySize(N)` bytes of `crashEntryByte(N, i)`. Every 2,000
// entries it saves a snapshot of the last durable index and compacts below it.
import Raft
import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// Writes a line straight to a file descriptor (unbuffered: the process may die any moment).
func emit(_ line: String, to fd: Int32 = 1) {
  var s = line + "\n"
  s.withUTF8 { b in _ = write(fd, b.baseAddress, b.count) }
}

func fail(_ message: String) -> Never {
  emit("wal-crash-writer: \(message)", to: 2)
  exit(2)
}

let args = CommandLine.arguments
guard args.count == 4, let io = WALOptions.IO(rawValue: args[2]), var seed = UInt64(args[3]) else {
  fail("usage: wal-crash-writer DIR uring|posix SEED")
}

func random(_ bound: UInt64) -> UInt64 {
  seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
  return (seed >> 33) % bound
}

func entry(_ index: UInt64) -> Entry {
  let size = Int(16 + (index &* 7919) % 600)
  return Entry(term: 1, index: index, data: (0..<size).map { UInt8(truncatingIfNeeded: index &+ UInt64($0) &* 31) })
}

var options = WALOptions()
options.io = io
options.segmentBytes = 256 << 10
options.batchesInFlightMax = 8
options.ringDepth = 64
options.recordBytesMax = 64 << 10

do {
  let wal = try WAL(directory: args[1], options: options)
  var next = wal.inspection.lastIndex + 1
  emit("open \(wal.inspection.lastIndex)")
  /// (sequence, last index of that write), oldest first.
  var pending: [(UInt64, UInt64)] = []
  var printed: UInt64 = 0
  var nextSnapshot = (next / 2000 + 1) * 2000
  while true {
    let count = 1 + random(64)
    let entries = (next..<(next + count)).map(entry)
    let seq = try wal.append(entries: entries, hardState: HardState(term: 1, vote: 1, commit: next + count - 1))
    pending.append((seq, next + count - 1))
    next += count
    if random(3) == 0 { try wal.submit() }
    let durable = random(5) == 0 ? try wal.waitForCompletion() : try wal.poll()
    var acked: UInt64 = 0
    while let first = pending.first, first.0 <= durable {
      acked = first.1
      pending.removeFirst()
    }
    if acked > printed {
      printed = acked
      emit("durable \(acked)")
    }
    if next > nextSnapshot {
      try wal.sync()
      let index = next - 1
      let data = (0..<32).map { UInt8(truncatingIfNeeded: index &+ UInt64($0)) }
      try wal.saveSnapshot(
        Snapshot(data: data, metadata: SnapshotMetadata(confState: ConfState(voters: [1]), index: index, term: 1)))
      try wal.sync()
      try wal.compact(through: index - 100)
      nextSnapshot += 2000
    }
  }
} catch {
  fail("\(error)")
}
