/// Writes a batch (one contiguous run of bytes at an offset of one segment) and makes it
/// durable. Implementations are owned by one thread, the WAL's.
///
/// A slot identifies a batch from `start` until `reap` reports it; the caller keeps the bytes
/// alive and unchanged for that long.
protocol BatchIO: AnyObject {
  /// The path this object implements.
  var kind: WALOptions.IO { get }
  /// Syncs that completed successfully so far.
  var syncs: UInt64 { get }
  /// Starts writing `bytes` at `offset` of `fd` and then syncing it (per the fsync mode).
  func start(slot: Int, fd: Int32, file: String, bytes: UnsafeRawBufferPointer, offset: Int) throws(WALError)
  /// Hands everything started so far to the kernel.
  func submit() throws(WALError)
  /// Appends the slots whose batch is durable (every byte written, the sync completed) to
  /// `done`; waits for at least one when `wait` and nothing is ready.
  func reap(wait: Bool, into done: inout [Int]) throws(WALError)
  /// Waits until a batch becomes durable (appended to `done`) or the eventfd `wakeFD` is
  /// signalled (its counter is then consumed): the owner's one wait point for disk completions
  /// and new work together. With nothing in flight, it waits for `wakeFD` alone.
  func wait(orWake wakeFD: Int32, into done: inout [Int]) throws(WALError)
  /// Waits for every started operation to finish, ignoring their errors (for close after a
  /// failure: the kernel may still read the buffers). Returns false when it could not, in
  /// which case the buffers must not be freed.
  @discardableResult
  func quiesce() -> Bool
}
