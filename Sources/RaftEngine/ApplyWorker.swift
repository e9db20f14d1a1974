import Raft

/// etcd's LocalApplyThread: performs the core's apply and restore jobs in order on the state
/// machine (`Applier`: the completions of the batches they settle run here, after applying),
/// and hands the outcomes back to the run loop in one push per wake.
final class ApplyWorker: @unchecked Sendable {
  let queue: BatchQueue<StorageJob>
  private let applier: Applier
  private let toRunLoop: @Sendable ([Node.Input]) -> Void
  /// The node this worker serves (its `LocalInputs` are the node's).
  private let node: ObjectIdentifier
  private var thread: OSThread?

  init(
    applier: Applier, node: ObjectIdentifier, spinNanoseconds: UInt64,
    toRunLoop: @escaping @Sendable ([Node.Input]) -> Void
  ) {
    self.applier = applier
    self.node = node
    self.toRunLoop = toRunLoop
    queue = BatchQueue(spinNanoseconds: spinNanoseconds, engineThread: true)
  }

  /// Times the worker found nothing and parked.
  var wakeups: UInt64 { queue.wakeupCount }

  func start() {
    thread = OSThread(name: "raft-apply", engineThread: true) { [self] in run() }
  }

  /// Stops once every queued job is done.
  func stop() {
    queue.close()
    thread?.join()
  }

  /// True when called on the worker's thread.
  var isCurrentThread: Bool { thread?.isCurrent ?? false }

  private func run() {
    // The completions run here; what they propose again is gathered and handed over with the
    // outcomes, in one push.
    let local = LocalInputs(node: node)
    LocalInputs.installed(local) {
      var jobs: [StorageJob] = []
      while true {
        jobs.removeAll(keepingCapacity: true)
        queue.take(into: &jobs, timeoutNanoseconds: 100_000_000)
        if jobs.isEmpty && queue.closed { return }
        var outcomes: [ApplyOutcome] = []
        outcomes.reserveCapacity(jobs.count)
        for job in jobs {
          switch job {
          case .apply(let j): outcomes.append(applier.apply(j, now: EngineClock.nanoseconds))
          case .restore(let j): outcomes.append(applier.restore(j))
          case .write, .save: preconditionFailure("ApplyWorker: a write job on the apply side")
          }
        }
        var inputs: [Node.Input] = [.applied(outcomes)]
        if !local.inputs.isEmpty {
          inputs.append(contentsOf: local.inputs)
          local.inputs.removeAll(keepingCapacity: true)
        }
        toRunLoop(inputs)
      }
    }
  }
}
