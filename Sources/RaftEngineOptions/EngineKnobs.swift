import ArgumentParser
import RaftEngine
import RaftWAL

extension WALOptions.IO: ExpressibleByArgument {}
extension WALOptions.Fsync: ExpressibleByArgument {}
extension WALOptions.URingWrites: ExpressibleByArgument {}
extension WALOptions.SegmentPreparation: ExpressibleByArgument {}
extension NodeConfiguration.ReadyHandling: ExpressibleByArgument {}
extension NodeConfiguration.StorageThreads: ExpressibleByArgument {}

/// The engine, WAL and Raft knobs shared by `raft-bench` and `raftkv`: the same flag names and
/// defaults in both (`--batch-max-entries`, `--io`, `--fsync`, `--max-size-per-msg`, ...).
public struct EngineKnobs: ParsableArguments {
  @Option(help: "WAL: entries in one batch at most (one write, one sync).")
  public var batchMaxEntries = WALOptions().batchEntriesMax
  @Option(help: "WAL: bytes in one batch at most.")
  public var batchMaxBytes = WALOptions().batchBytesMax
  @Option(help: "WAL: how long a batch waits for more writes before it is submitted, in microseconds.")
  public var batchLingerUs = WALOptions().lingerMicroseconds
  @Option(help: "WAL: batches written and not yet durable, at most.")
  public var maxInflightBatches = WALOptions().batchesInFlightMax
  @Option(help: "WAL (io_uring, inline writes): syncs in flight at most.")
  public var maxInflightSyncs = WALOptions().syncsInFlightMax
  @Option(help: "WAL: io_uring submission queue depth.")
  public var ringDepth = WALOptions().ringDepth
  @Flag(help: "WAL: poll the io_uring submission queue from a kernel thread (IORING_SETUP_SQPOLL).")
  public var sqpoll = false
  @Option(help: "WAL I/O path: uring or posix (pwritev + fdatasync).")
  public var io = WALOptions.IO.uring
  @Option(help: "How io_uring orders a batch's write before its sync: inline or linked.")
  public var uringWrites = WALOptions().uringWrites
  @Option(help: "datasync, fsync or none (none: no durability at all; measures the CPU path).")
  public var fsync = WALOptions.Fsync.datasync
  @Option(help: "WAL: the size of every segment file, in bytes (a multiple of 4096, 64 KiB to 1 GiB).")
  public var segmentBytes = WALOptions().segmentBytes
  @Option(help: "WAL: how segments are prepared ahead: zero, fallocate, sparse or auto (sparse with --fsync none).")
  public var prepare = WALOptions().segmentPreparation
  @Option(help: "Raft: bytes of entries in one MsgApp at most.")
  public var maxSizePerMsg: UInt64 = 1 << 20
  @Option(help: "Raft: MsgApps in flight to one follower at most.")
  public var maxInflightMsgs = 256
  @Option(help: "Raft: bytes of committed entries in one Ready at most (0: no limit).")
  public var maxCommittedSizePerReady: UInt64 = 0
  @Option(help: "Raft: the leader refuses proposals while its uncommitted entries carry this many bytes (0: no limit).")
  public var maxUncommittedBytes = NodeConfiguration(id: 1, peers: [1], directory: "").maxUncommittedEntriesSize
  @Option(help: "Raft: bytes of entries in flight to one follower at most (0: no limit; at least --max-size-per-msg).")
  public var maxInflightBytes = NodeConfiguration(id: 1, peers: [1], directory: "").maxInflightBytes
  @Option(
    help:
      "Engine threads: polling before parking, in microseconds, for the run loop and the apply worker when a core is free (at most processors - 1 threads spin at once)."
  )
  public var spinUs = Int(NodeConfiguration(id: 1, peers: [1], directory: "").spinNanoseconds / 1000)
  @Option(
    help:
      "Engine threads: polling before parking under load (a turn of more than \(NodeConfiguration.lightTurnInputs) inputs) when the engine threads outnumber the processors, in microseconds; at most --spin-us."
  )
  public var loadedSpinUs = Int(NodeConfiguration(id: 1, peers: [1], directory: "").loadedSpinNanoseconds / 1000)
  @Option(
    help:
      "Engine: how much lower the run loop thread's scheduling priority is than the process's (a nice increment, 0 to 19): with the cores contended it runs after the threads that feed it, and batches more."
  )
  public var runLoopNice = NodeConfiguration(id: 1, peers: [1], directory: "").runLoopNiceIncrement
  @Option(
    help:
      "Async mode: threads for the storage work: one (appends and applies), two (an append worker and an apply worker), or auto (one on 2 cores or fewer)."
  )
  public var storageThreads = NodeConfiguration.StorageThreads.auto

  public init() {}

  public func validate() throws {
    do {
      try walOptions(payload: 0).validate()
    } catch {
      throw ValidationError("\(error)")
    }
    guard maxSizePerMsg > 0 else { throw ValidationError("--max-size-per-msg must be positive") }
    guard (1...1 << 20).contains(maxInflightMsgs) else {
      throw ValidationError("--max-inflight-msgs must be between 1 and 1048576")
    }
    guard (0...1_000_000).contains(spinUs) else { throw ValidationError("--spin-us must be between 0 and 1000000") }
    guard (0...1_000_000).contains(loadedSpinUs) else {
      throw ValidationError("--loaded-spin-us must be between 0 and 1000000")
    }
    guard (0...19).contains(runLoopNice) else { throw ValidationError("--run-loop-nice must be between 0 and 19") }
    guard maxInflightBytes == 0 || maxInflightBytes >= maxSizePerMsg else {
      throw ValidationError("--max-inflight-bytes must be 0 or at least --max-size-per-msg (\(maxSizePerMsg))")
    }
  }

  /// The WAL options, with room for records of `payload` bytes.
  public func walOptions(payload: Int) -> WALOptions {
    var o = WALOptions()
    o.io = io
    o.fsync = fsync
    o.uringWrites = uringWrites
    o.segmentPreparation = prepare
    o.batchEntriesMax = batchMaxEntries
    o.batchBytesMax = batchMaxBytes
    o.lingerMicroseconds = batchLingerUs
    o.batchesInFlightMax = maxInflightBatches
    o.syncsInFlightMax = min(maxInflightSyncs, maxInflightBatches)
    o.ringDepth = ringDepth
    o.sqpoll = sqpoll
    o.segmentBytes = segmentBytes
    // The default record bound, lowered to what a small segment holds, but never below a payload.
    o.recordBytesMax = max(min(o.recordBytesMax, segmentBytes / 2), payload + 1024)
    return o
  }

  /// Applies the knobs to a node's configuration.
  public func configure(_ c: inout NodeConfiguration, payload: Int) {
    c.wal = walOptions(payload: payload)
    c.maxSizePerMsg = maxSizePerMsg
    c.maxInflightMsgs = maxInflightMsgs
    c.maxCommittedSizePerReady = maxCommittedSizePerReady
    c.maxUncommittedEntriesSize = maxUncommittedBytes
    c.maxInflightBytes = maxInflightBytes
    c.spinNanoseconds = UInt64(spinUs) * 1000
    c.loadedSpinNanoseconds = UInt64(min(loadedSpinUs, spinUs)) * 1000
    c.storageThreads = storageThreads
    c.runLoopNiceIncrement = runLoopNice
  }
}
