import Raft
import RaftWAL

/// The work the run loop hands to its storage threads, in the order the core asked for it.
enum StorageJob {
  case write(StorageWrite)
  case save(SnapshotSave)
  case apply(ApplyJob)
  case restore(RestoreJob)

  /// Answers the callers of a job that will not be performed (the storage failed under it):
  /// a snapshot save fails with `error`; the proposals an apply job settles were committed but
  /// are not applied here, so their outcome is unknown to their proposers; a restore's outcomes
  /// were decided before it was queued and go out as they are; a write has no caller (its
  /// responses are never sent: nothing of it is acknowledged).
  func abandon(_ error: EngineError) {
    switch self {
    case .write: break
    case .save(let s): s.answerFailed(error)
    case .apply(let job):
      for o in job.completions {
        ProposalOutcome(
          completion: o.completion, result: .failure(.outcomeUnknown("committed, not applied here: \(error)")),
          proposedAtNanoseconds: 0
        ).deliver()
      }
    case .restore(let job): for o in job.completions { o.deliver() }
    }
  }
}

/// etcd's LocalAppendThread: writes every queued `StorageWrite` into one WAL batch (group
/// commit), and as batches become durable releases the writes in order (`AppendStage`): their
/// content becomes visible to Raft and their responses go out, to the run loop in one push and
/// to peers in one send (a follower's MsgAppResp goes straight to the leader). It also saves
/// the state machine's snapshots and compacts the log (the WAL's owner does both).
///
/// With an `Applier` it is etcd's LocalApplyThread as well (`NodeConfiguration.storageThreads`
/// `.one`, the choice on machines of two cores or fewer): after writing and submitting what
/// is queued, it performs the apply and restore jobs while the syncs run, and hands their
/// outcomes back in the same push as the write responses. Jobs of each kind keep their order;
/// a restore is queued by the core only after the snapshot's write is durable.
final class AppendWorker: @unchecked Sendable {
  let queue: BatchQueue<StorageJob>
  private let storage: WALStorage
  private let nodeID: UInt64
  private let transport: Transport
  private let toRunLoop: @Sendable ([Node.Input]) -> Void
  /// Set when this worker applies too.
  private let applier: Applier?
  /// The node's engine threads' identity (for the inputs its completions produce).
  private let threads: ObjectIdentifier
  /// How long the worker may poll for new work before it waits (only when it applies too, and
  /// `SpinBudget` allows).
  private let spinNanoseconds: UInt64
  /// The bound instead of `spinNanoseconds` after a loaded turn (more than
  /// `NodeConfiguration.lightTurnInputs` entries written and applied).
  private let loadedSpinNanoseconds: UInt64
  /// Signalled by the queue's producers when the worker waits: the worker's one wait point is
  /// the WAL's ring, for disk completions and new work together.
  private let wake: WakeEvent
  private var thread: OSThread?
  /// Why the worker ended early (set on its thread before it ends; read after `stop` joined it).
  private var failure: EngineError?

  init(
    storage: WALStorage, nodeID: UInt64, transport: Transport, applier: Applier?, threads: ObjectIdentifier,
    spinNanoseconds: UInt64, loadedSpinNanoseconds: UInt64, toRunLoop: @escaping @Sendable ([Node.Input]) -> Void
  ) throws {
    self.storage = storage
    self.nodeID = nodeID
    self.transport = transport
    self.applier = applier
    self.threads = threads
    self.spinNanoseconds = applier == nil ? 0 : spinNanoseconds
    self.loadedSpinNanoseconds = applier == nil ? 0 : min(loadedSpinNanoseconds, spinNanoseconds)
    self.toRunLoop = toRunLoop
    let wake = try WakeEvent()
    self.wake = wake
    queue = BatchQueue(spinNanoseconds: 0, engineThread: true, wake: { wake.signal() })
  }

  func start() {
    thread = OSThread(name: applier == nil ? "raft-append" : "raft-storage", engineThread: true) { [self] in
      let local = LocalInputs(node: threads)
      LocalInputs.installed(local) { run(local) }
    }
  }

  /// Stops once every queued job is done and every write durable.
  func stop() {
    queue.close()
    thread?.join()
  }

  /// True when called on the worker's thread.
  var isCurrentThread: Bool { thread?.isCurrent ?? false }

  /// Times the worker waited (for the disk, new work, or both).
  var wakeups: UInt64 { queue.wakeupCount }

  /// Takes every queued job, writes them into the open WAL batch, submits what is due, applies
  /// (when it applies), and releases what is durable; with nothing new, waits in one place for
  /// the disk or new work. New writes are taken while syncs are in flight: they go into the
  /// next batch.
  private func run(_ local: LocalInputs) {
    let wal = storage.wal
    var stage = AppendStage(nodeID: nodeID)
    var jobs: [StorageJob] = []
    var responses: [Message] = []
    var remote: [Message] = []
    var outcomes: [ApplyOutcome] = []
    /// Entries written and applied by the last turn that had jobs (how loaded the node is).
    var lastTurnEntries = 0
    // This turn's progress through `jobs`, for what a failure leaves unperformed: the writes
    // and saves before `writing` are done, and the applies once `applied` is set.
    var writing = 0
    var applied = false
    do {
      while true {
        jobs.removeAll(keepingCapacity: true)
        writing = 0
        applied = false
        queue.takeNow(into: &jobs)
        var durable: UInt64
        if jobs.isEmpty {
          if stage.pendingCount == 0 && queue.closed { return }
          // What waits for durability must be on its way to the disk before the wait.
          if stage.pendingCount > 0 && wal.batchesInFlight == 0 { try wal.submit() }
          if wal.batchesInFlight == 0 && pollForWork(afterTurnOf: lastTurnEntries) { continue }
          // Waiting for new work alone frees the core; waiting for the disk keeps it counted
          // (the completion wakes this thread, and nothing else would count it back).
          if queue.beginExternalWait(parks: wal.batchesInFlight == 0) {
            durable = try wal.waitForCompletion(orWake: wake)
            queue.endExternalWait()
          } else if queue.closed {
            durable = try wal.waitForCompletion()  // the last writes, before the worker ends
          } else {
            continue  // work arrived meanwhile
          }
        } else {
          // Writes first, so that their syncs run while the apply jobs are performed.
          lastTurnEntries = 0
          for (k, job) in jobs.enumerated() {
            writing = k
            switch job {
            case .write(let w):
              lastTurnEntries += w.entries.count
              try stage.write(w, to: storage, local: &responses, remote: &remote)
            case .save(let s):
              try storage.save(s)
              s.answerSaved()
            case .apply, .restore: continue
            }
          }
          writing = jobs.count
          try wal.submitIfDue(nowNanoseconds: EngineClock.nanoseconds())
          if let applier {
            for job in jobs {
              switch job {
              case .apply(let j):
                lastTurnEntries += j.entries.count
                outcomes.append(applier.apply(j, now: EngineClock.nanoseconds))
              case .restore(let j): outcomes.append(applier.restore(j))
              case .write, .save: continue
              }
            }
          }
          applied = true
          durable = try wal.poll()
        }
        try stage.release(durableThrough: durable, log: storage, local: &responses, remote: &remote)
        if !remote.isEmpty {
          transport.send(remote)
          remote.removeAll(keepingCapacity: true)
        }
        // One push to the run loop: the write responses, the apply outcomes, and what the
        // completions proposed again.
        if !responses.isEmpty || !outcomes.isEmpty || !local.inputs.isEmpty {
          var inputs: [Node.Input] = []
          inputs.reserveCapacity(2 + local.inputs.count)
          if !responses.isEmpty {
            inputs.append(.local(responses))
            responses = []
          }
          if !outcomes.isEmpty {
            inputs.append(.applied(outcomes))
            outcomes = []
          }
          inputs.append(contentsOf: local.inputs)
          local.inputs.removeAll(keepingCapacity: true)
          toRunLoop(inputs)
        }
      }
    } catch {
      // Fail-stop: the run loop stops the node; what this turn leaves unperformed is answered
      // here, and what is still queued when the node stops, by `Node.stop`.
      let failure = EngineError(storageError: error)
      self.failure = failure
      for (k, job) in jobs.enumerated() {
        switch job {
        case .write: continue
        case .save: if k >= writing { job.abandon(failure) }
        case .apply, .restore: if !applied { job.abandon(failure) }
        }
      }
      toRunLoop([.failed(failure)])
    }
  }

  /// After the worker ended (`stop`): answers the jobs still queued, which only a failed worker
  /// leaves (with its failure); returns how many.
  @discardableResult
  func abandonQueued() -> Int {
    precondition(queue.closed, "AppendWorker: abandoning the queue of a worker still running")
    var left: [StorageJob] = []
    queue.takeNow(into: &left)
    precondition(left.isEmpty || failure != nil, "AppendWorker: a worker that did not fail left jobs queued")
    for job in left { job.abandon(failure ?? .stopped) }
    return left.count
  }

  /// When this worker applies too and a core is free: polls for new work for a while (the next
  /// write or apply job follows within a few microseconds of the last answer; after a loaded
  /// turn of `turnEntries` with the cores shared, only about a wake-up's cost); true when some
  /// arrived.
  private func pollForWork(afterTurnOf turnEntries: Int) -> Bool {
    let budget = SpinBudget.shared
    let spin = budget.pollNanoseconds(afterTurnOf: turnEntries, spinNanoseconds, loaded: loadedSpinNanoseconds)
    guard spin > 0, budget.mayPoll else { return false }
    let deadline = EngineClock.nanoseconds() &+ spin
    var polls = 0
    while queue.count == 0 && !queue.closed && budget.mayPoll {
      polls &+= 1
      if polls & 63 == 0 && EngineClock.nanoseconds() >= deadline { return false }
    }
    return queue.count > 0
  }
}
