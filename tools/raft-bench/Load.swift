import Dispatch
import Foundation
import Histogram
import RaftEngine
import RaftWAL
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The benchmark's load on the leader: closed-loop clients (each keeps one propose call in
/// flight and calls again when it is answered) or an open loop (`rate` calls per second whatever
/// the answers, latency measured from each call's intended time, so that a stall shows in the
/// percentiles instead of slowing the load down: no coordinated omission).
///
/// A call proposes `batch` entries and is answered once all of them are acknowledged
/// (committed and applied on the leader).
final class Load: Sendable {
  struct Shared {
    /// Entries acknowledged in the measured window.
    var done: UInt64 = 0
    var measuring = false
    /// Call to answer, in nanoseconds, in the measured window.
    var latency = makeLatencyHistogram()
    var failuresMeasured = 0
    var lastFailure: EngineError?
  }

  let shared = Mutex(Shared())
  private let leader: Node
  /// Entries per call, and calls per second (0: closed loop).
  private let batch: Int
  private let rate: Int
  private let data: [UInt8]
  private let running = Atomic<Bool>(true)
  /// Entered once per closed-loop client and once per open-loop call in flight.
  private let outstanding = DispatchGroup()

  init(leader: Node, plan: RunPlan) {
    self.leader = leader
    batch = plan.batch
    rate = plan.rate
    data = [UInt8](repeating: 0x5A, count: plan.payload)
  }

  /// Stops the load and waits until every call in flight is answered; false when some still
  /// were not after `timeoutSeconds`.
  func stop(timeoutSeconds: Int) -> Bool {
    running.store(false, ordering: .relaxed)
    return outstanding.wait(timeout: .now() + .seconds(timeoutSeconds)) == .success
  }

  /// Proposes one call's entries; `answered` runs once, when all are acknowledged or one failed.
  private func proposeCall(_ answered: @escaping @Sendable (EngineError?) -> Void) {
    if batch == 1 {
      leader.propose(data) { result in
        if case .failure(let e) = result { answered(e) } else { answered(nil) }
      }
      return
    }
    let state = Mutex((left: batch, failure: EngineError?.none))
    for _ in 0..<batch {
      leader.propose(data) { result in
        let finished = state.withLock { s -> (Bool, EngineError?) in
          if case .failure(let e) = result, s.failure == nil { s.failure = e }
          s.left -= 1
          return (s.left == 0, s.failure)
        }
        if finished.0 { answered(finished.1) }
      }
    }
  }

  private func record(_ failure: EngineError?, started: UInt64, now: UInt64) {
    shared.withLock { s in
      guard s.measuring else { return }
      if let failure {
        s.failuresMeasured += 1
        s.lastFailure = failure
      } else {
        s.done += UInt64(batch)
        s.latency.record(now &- min(started, now))
      }
    }
  }

  /// One closed-loop client: calls again as soon as a call is answered.
  func closedLoopClient(_ started: UInt64) {
    outstanding.enter()
    closedLoopCall(started)
  }

  private func closedLoopCall(_ started: UInt64) {
    proposeCall { [self] failure in
      let now = monotonicNanoseconds()
      record(failure, started: started, now: now)
      guard running.load(ordering: .relaxed) else { return outstanding.leave() }
      if failure != nil {
        // A refused proposal is answered at once: retry later, not on this stack.
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(1)) { [self] in
          closedLoopCall(monotonicNanoseconds())
        }
      } else {
        closedLoopCall(now)
      }
    }
  }

  /// Starts the open loop on a thread of its own: call k is due at start + k / rate.
  func startOpenLoop() {
    let thread = Foundation.Thread(block: { [self] in openLoop() })
    thread.name = "raft-bench-open-loop"
    thread.start()
  }

  private func openLoop() {
    outstanding.enter()
    defer { outstanding.leave() }
    let intervalNanoseconds = 1e9 / Double(rate)
    let start = monotonicNanoseconds()
    var k: UInt64 = 0
    while running.load(ordering: .relaxed) {
      let now = monotonicNanoseconds()
      var due = start &+ UInt64(Double(k) * intervalNanoseconds)
      // Every call that is due goes now, each timed from when it should have gone.
      while due <= now && running.load(ordering: .relaxed) {
        outstanding.enter()
        let intended = due
        proposeCall { [self] failure in
          record(failure, started: intended, now: monotonicNanoseconds())
          outstanding.leave()
        }
        k += 1
        due = start &+ UInt64(Double(k) * intervalNanoseconds)
      }
      // Pacing, not synchronization: the next call's time.
      let wait = due > now ? min(due - now, 1_000_000) : 0
      if wait > 0 {
        var ts = timespec(tv_sec: 0, tv_nsec: Int(wait))
        nanosleep(&ts, nil)
      }
    }
  }
}
