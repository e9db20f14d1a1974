import Raft

/// etcd's LocalApplyThread: performs the core's apply and restore jobs in order on the state
/// machine (`Applier`: the completions of the batches they settle run here, after applying),
/// and hands the outcomes back to the run loop in one push per wake.
final class ApplyWorker: @unchecked Sendable {
  enum Job {
    case apply(ApplyJob)
    case restore(RestoreJob)
  }

  let queue: BatchQueue<Job>
  private let applier: Applier
  private let toRunLoop: @Sendable (Node.Input) -> Void
  private var thread: OSThread?

  init(
    applier: Applier, spinNanoseconds: UInt64, yieldingPollNanoseconds: UInt64,
    toRunLoop: @escaping @Sendable (Node.Input) -> Void
  ) {
    self.applier = applier
    self.toRunLoop = toRunLoop
    queue = BatchQueue(spinNanoseconds: spinNanoseconds, yieldingPollNanoseconds: yieldingPollNanoseconds)
  }

  func start() {
    thread = OSThread(name: "raft-apply") { [self] in run() }
  }

  /// Stops once every queued job is done.
  func stop() {
    queue.close()
    thread?.join()
  }

  /// True when called on the worker's thread.
  var isCurrentThread: Bool { thread?.isCurrent ?? false }

  private func run() {
    var jobs: [Job] = []
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
        }
      }
      toRunLoop(.applied(outcomes))
    }
  }
}
