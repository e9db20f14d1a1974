import Dispatch
import Raft

/// etcd's LocalApplyThread: applies the committed entries of each `MsgStorageApply` in order,
/// then hands the message's responses (and the conf changes to apply) back to the run loop in
/// one push.
final class ApplyWorker: @unchecked Sendable {
  enum Job {
    case apply(Message)
    /// Restores the state machine from a snapshot after everything queued before it was
    /// applied, then signals (the append worker waits: etcd's contract for snapshots).
    case restore(Snapshot, DispatchSemaphore)
    /// Signals once everything queued before it is applied.
    case barrier(DispatchSemaphore)
  }

  let queue: BatchQueue<Job>
  private let applier: Applier
  private let toRunLoop: @Sendable ([Node.Input]) -> Void
  private var thread: OSThread?
  /// Worker thread only: applying failed; later batches are not applied.
  private var failed = false

  init(
    applier: Applier, spinNanoseconds: UInt64, yieldingPollNanoseconds: UInt64,
    toRunLoop: @escaping @Sendable ([Node.Input]) -> Void
  ) {
    self.applier = applier
    self.toRunLoop = toRunLoop
    queue = BatchQueue(spinNanoseconds: spinNanoseconds, yieldingPollNanoseconds: yieldingPollNanoseconds)
  }

  func start() {
    thread = OSThread(name: "raft-apply") { [self] in run() }
  }

  func stop() {
    queue.close()
    thread?.join()
  }

  /// True when called on the worker's thread.
  var isCurrentThread: Bool { thread?.isCurrent ?? false }

  /// Returns once everything queued so far is applied (its responses handed to the run loop).
  func flush() {
    let done = DispatchSemaphore(value: 0)
    guard queue.push(.barrier(done)) else { return }
    done.wait()
  }

  /// Restores the state machine from `snapshot` once everything queued before is applied, and
  /// returns when it is done.
  func restoreAndWait(_ snapshot: Snapshot) {
    let done = DispatchSemaphore(value: 0)
    guard queue.push(.restore(snapshot, done)) else { return }
    done.wait()
  }

  private func run() {
    var jobs: [Job] = []
    var out: [Node.Input] = []
    while true {
      jobs.removeAll(keepingCapacity: true)
      queue.take(into: &jobs, timeoutNanoseconds: 100_000_000)
      if jobs.isEmpty && queue.closed { return }
      out.removeAll(keepingCapacity: true)
      var confChanges: [Applier.ConfChangeEntry] = []
      for job in jobs {
        switch job {
        case .apply(let m):
          // After a failure nothing more is applied (the run loop stops on it): no gaps.
          guard !failed else { continue }
          do {
            let ccs = try applier.apply(m.entries)
            for cc in ccs { out.append(.applyConfChange(cc.change, index: cc.index)) }
            confChanges += ccs
            if let last = m.entries.last, let snap = applier.snapshotIfDue(appliedThrough: last.index) {
              // After this batch's conf changes: the run loop's configuration is then the
              // snapshot's.
              out.append(.snapshotTaken(index: snap.index, data: snap.data))
            }
          } catch {
            failed = true
            out.append(.storageFailed("applying entries: \(error)"))
            continue
          }
          for r in m.responses { out.append(.step(r)) }
        case .restore(let snapshot, let done):
          if !out.isEmpty {
            toRunLoop(out)
            out.removeAll(keepingCapacity: true)
          }
          applier.confChangesApplied(confChanges)
          confChanges.removeAll()
          applier.stateMachine.restore(snapshot: snapshot)
          applier.lastSnapshotIndex = snapshot.metadata.index
          applier.proposals.restored(through: snapshot.metadata.index)
          done.signal()
        case .barrier(let done):
          if !out.isEmpty {
            toRunLoop(out)
            out.removeAll(keepingCapacity: true)
          }
          applier.confChangesApplied(confChanges)
          confChanges.removeAll()
          done.signal()
        }
      }
      if !out.isEmpty { toRunLoop(out) }
      // Queued on the run loop ahead of anything the completions lead to.
      applier.confChangesApplied(confChanges)
    }
  }
}
