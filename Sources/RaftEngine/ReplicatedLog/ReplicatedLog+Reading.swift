import Raft
import Synchronization

extension ReplicatedLog {
  /// The log's entries from `index` on, in batches, as they are applied on this node: a reader
  /// that is behind reads from the log held by the node (what the last compaction left), a
  /// reader that caught up waits for the next entry. Nothing is buffered for a reader: each
  /// batch is read when the reader asks for it (at most `batchEntriesMax` entries and about
  /// `batchBytesMax` bytes; at least one entry), so a slow reader costs nothing but its
  /// position.
  ///
  /// Every index appears, in order: normal entries (with data or empty: a new leader's entry,
  /// an empty append) and membership changes. The sequence throws `.compacted(firstIndex:)`
  /// when the entries it needs were compacted away (then read `latestSnapshot()` and go on
  /// from `firstIndex`), `.cancelled` when the reading task is cancelled while it waits, and
  /// ends when the log shuts down.
  public func entries(from index: UInt64, batchEntriesMax: Int = 1_024, batchBytesMax: UInt64 = 1 << 20)
    -> LogEntries
  {
    precondition(index >= 1, "ReplicatedLog.entries: indexes start at 1")
    precondition(batchEntriesMax >= 1, "ReplicatedLog.entries: batchEntriesMax must be at least 1")
    let machine = self.machine
    let storage = node.storage
    return LogEntries(
      position: index, batchEntriesMax: batchEntriesMax, batchBytesMax: batchBytesMax,
      applied: { machine.applied.load(ordering: .acquiring) },
      read: { lo, hi, maxSize throws(ReplicatedLogError) in
        do {
          let first = try storage.firstIndex()
          if lo < first { throw ReplicatedLogError.compacted(firstIndex: first) }
          return try storage.entries(lo: lo, hi: hi, maxSize: maxSize)
        } catch let e as ReplicatedLogError {
          throw e
        } catch RaftError.compacted {
          throw .compacted(firstIndex: (try? storage.firstIndex()) ?? lo)
        } catch {
          throw .internalFailure("reading entries \(lo)..<\(hi): \(error)")
        }
      },
      wait: { index, wake in
        machine.whenApplied(index, wake)
      },
      cancel: { id in machine.waiters.cancel(id, .cancelled) })
  }
}

/// The entries of a `ReplicatedLog` from an index on, in batches (`ReplicatedLog.entries(from:)`).
public struct LogEntries: AsyncSequence, Sendable {
  public typealias Element = [LogEntry]

  let position: UInt64
  let batchEntriesMax: Int
  let batchBytesMax: UInt64
  let applied: @Sendable () -> UInt64
  let read: @Sendable (UInt64, UInt64, UInt64) throws(ReplicatedLogError) -> [Entry]
  let wait: @Sendable (UInt64, @escaping AppliedWaiters.Waker) -> UInt64?
  let cancel: @Sendable (UInt64) -> Void

  public func makeAsyncIterator() -> Iterator { Iterator(sequence: self, next: position) }

  public struct Iterator: AsyncIteratorProtocol {
    let sequence: LogEntries
    /// The index of the next entry to return.
    var next: UInt64
    var ended = false

    /// The next batch (nil once the log shut down).
    public mutating func next() async throws -> [LogEntry]? {
      while !ended {
        let applied = sequence.applied()
        if next <= applied {
          let hi = Swift.min(applied, next + UInt64(sequence.batchEntriesMax) - 1)
          let entries = try sequence.read(next, hi + 1, sequence.batchBytesMax)
          precondition(entries.first?.index == next, "LogEntries: the storage returned another range")
          next = entries[entries.count - 1].index + 1
          return entries.map(LogEntry.init)
        }
        if Task.isCancelled { throw ReplicatedLogError.cancelled }
        switch await waitApplied(next) {
        case .success: continue
        case .failure(.stopped): ended = true
        case .failure(let error): throw error
        }
      }
      return nil
    }

    private func waitApplied(_ index: UInt64) async -> Result<Void, ReplicatedLogError> {
      let once = Once<Void>()
      let sequence = self.sequence
      let id = Mutex<UInt64?>(nil)
      return await withTaskCancellationHandler {
        await withCheckedContinuation { c in
          once.install(c)
          let waiting = sequence.wait(index) { r in once.resume(r) }
          id.withLock { $0 = waiting }
        }
      } onCancel: {
        once.resume(.failure(.cancelled))
        if let waiting = id.withLock({ $0 }) { sequence.cancel(waiting) }
      }
    }
  }
}
