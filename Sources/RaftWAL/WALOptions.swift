/// How the WAL writes, batches and syncs. Every limit has a default that suits a 2-core machine
/// with one SSD; `validate()` checks them together.
public struct WALOptions: Sendable, Equatable {
  /// The I/O path.
  public enum IO: String, Sendable, CaseIterable, CustomStringConvertible {
    /// io_uring: writes and syncs are submitted to a ring; several batches may be in flight.
    case uring
    /// pwritev + fdatasync from the calling thread, one batch at a time.
    case posix

    public var description: String { rawValue }
  }

  /// How a batch is made durable.
  public enum Fsync: String, Sendable, CaseIterable, CustomStringConvertible {
    /// fdatasync: the data and the metadata needed to read it back (segments never change size).
    case datasync
    /// fsync: data and all metadata.
    case fsync
    /// No sync at all. For measurement only: nothing is durable, and opening says so in a warning.
    case none

    public var description: String { rawValue }
  }

  /// How io_uring orders a batch's write before its sync.
  public enum URingWrites: String, Sendable, CaseIterable, CustomStringConvertible {
    /// pwritev from the owner thread (into the page cache), then the sync through the ring.
    case inline
    /// writev and sync both through the ring, linked with IOSQE_IO_LINK.
    case linked

    public var description: String { rawValue }
  }

  /// How a new segment is prepared ahead of use. Either way its unwritten blocks read as zeros,
  /// which is what recovery relies on to recognise torn writes.
  public enum SegmentPreparation: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Write zeros through the whole file: later writes overwrite allocated, written blocks and
    /// their syncs touch no metadata (fastest syncs), at the price of writing every byte twice.
    case zeroFill = "zero"
    /// `posix_fallocate`: unwritten extents, no extra bandwidth; the first sync over each block
    /// converts its extent (dearer syncs).
    case fallocate
    /// `ftruncate`: holes, no work ahead at all; each write allocates its blocks (in the writer's
    /// thread) and the sync after it commits the allocation (the dearest syncs). The choice
    /// when nothing is synced: zeros would only cost a core's worth of copies.
    case sparse
    /// Zero-fill while batches are small (syncs dominate); fallocate once the average batch of
    /// the segment being written reaches `autoFallocateBatchBytes` (bandwidth dominates);
    /// sparse with `fsync` `.none`.
    case auto

    public var description: String { rawValue }
  }

  /// The I/O path asked for. io_uring falls back to posix when a ring cannot be set up.
  public var io: IO = .uring
  /// How batches are made durable.
  public var fsync: Fsync = .datasync
  /// How new segments are prepared.
  public var segmentPreparation: SegmentPreparation = .auto
  /// With `.auto`, the average batch size from which the next segment is fallocated.
  public var autoFallocateBatchBytes: Int = 64 << 10
  /// How io_uring orders writes before syncs (ignored by posix).
  public var uringWrites: URingWrites = .inline
  /// The fixed size of every segment file, zero-filled ahead of use.
  public var segmentBytes: Int = 64 << 20
  /// A batch is closed once it holds this many entries.
  public var batchEntriesMax: Int = 4096
  /// A batch is closed once it holds this many bytes of records.
  public var batchBytesMax: Int = 4 << 20
  /// How long a batch that is not full may wait for more writes while the disk is busy, in
  /// microseconds (0: submit as soon as the caller has nothing more to add).
  public var lingerMicroseconds: Int = 0
  /// Batches submitted and not yet durable, at most (io_uring; posix always has one).
  public var batchesInFlightMax: Int = 8
  /// io_uring with inline writes: syncs in flight at most. A batch written while they run waits
  /// for the next sync, which covers every batch written before it (group commit); equal to
  /// `batchesInFlightMax`, every batch gets its own sync.
  public var syncsInFlightMax: Int = 2
  /// Submission queue entries of the ring; each batch in flight needs two (write, sync) plus
  /// one per resubmitted short write.
  public var ringDepth: Int = 64
  /// Whether the ring polls its submission queue from a kernel thread (IORING_SETUP_SQPOLL).
  public var sqpoll: Bool = false
  /// The largest record payload accepted (one entry or snapshot metadata), in bytes.
  public var recordBytesMax: Int = 16 << 20

  /// The most bytes that can be written but not yet synced at any moment: every batch in
  /// flight at its largest (a batch closes before it passes `batchBytesMax`, but one record may
  /// take it over) plus a segment prologue. Recovery never cuts a longer tail.
  public var unsyncedBytesMax: Int { batchesInFlightMax * (batchBytesMax + recordBytesMax + 4096) }

  /// Tests only: behave as if the kernel refused to set up a ring.
  var simulateURingUnavailable = false

  /// Fault injection, for the power-loss tests and `raft-sim --inject-skip-sync` only: batches
  /// are acknowledged without a sync (directory and snapshot syncs still run), so a power cut
  /// loses acknowledged writes. The durability checks must fail with it.
  public var injectSkipSync = false

  /// Fault injection, for the power-loss tests only: the WAL never syncs its directory, so a
  /// power cut can lose a segment's creation by rename (and what was acknowledged in it).
  public var injectSkipDirectorySync = false

  /// Whether creations, renames and removals in the WAL's directory are synced.
  var syncsDirectories: Bool { fsync != .none && !injectSkipDirectorySync }

  /// Whether the next segment is prepared on a thread of its own, ahead of use (the default);
  /// false prepares it on the owner's thread when a roll needs it (deterministic: the
  /// simulator's choice).
  public var spareInBackground = true

  /// The defaults.
  public init() {}

  /// Throws `WALError.invalidOptions` naming the first field that is out of range.
  public func validate() throws(WALError) {
    func fail(_ s: String) -> WALError { .invalidOptions(s) }
    guard segmentBytes >= 64 << 10, segmentBytes <= 1 << 30, segmentBytes % 4096 == 0 else {
      throw fail("segmentBytes must be a multiple of 4096 between 64 KiB and 1 GiB (got \(segmentBytes))")
    }
    guard batchEntriesMax >= 1 else { throw fail("batchEntriesMax must be at least 1 (got \(batchEntriesMax))") }
    guard batchBytesMax >= 4096 else { throw fail("batchBytesMax must be at least 4096 (got \(batchBytesMax))") }
    guard lingerMicroseconds >= 0, lingerMicroseconds <= 1_000_000 else {
      throw fail("lingerMicroseconds must be between 0 and 1000000 (got \(lingerMicroseconds))")
    }
    guard batchesInFlightMax >= 1, batchesInFlightMax <= 256 else {
      throw fail("batchesInFlightMax must be between 1 and 256 (got \(batchesInFlightMax))")
    }
    guard syncsInFlightMax >= 1, syncsInFlightMax <= batchesInFlightMax else {
      throw fail("syncsInFlightMax must be between 1 and batchesInFlightMax (got \(syncsInFlightMax))")
    }
    guard ringDepth >= 4, ringDepth <= 4096, ringDepth & (ringDepth - 1) == 0 else {
      throw fail("ringDepth must be a power of two between 4 and 4096 (got \(ringDepth))")
    }
    guard ringDepth >= 4 * batchesInFlightMax else {
      throw fail(
        "ringDepth (\(ringDepth)) must be at least 4 x batchesInFlightMax (\(batchesInFlightMax)): "
          + "a batch needs up to four submission entries")
    }
    guard recordBytesMax >= 1024, recordBytesMax <= min(segmentBytes / 2, 128 << 20) else {
      throw fail("recordBytesMax must be between 1024 and min(segmentBytes / 2, 128 MiB) (got \(recordBytesMax))")
    }
  }
}
