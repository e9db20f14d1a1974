import Raft
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A network for clusters inside one process: delivers each node's messages to the others'
/// sinks, in order per (from, to) pair, and can drop, delay and partition them for tests.
///
/// Undelayed messages are delivered on the sender's thread (a sink only enqueues). Delayed ones
/// go through one courier thread, started by the first `setDelay` and stopped by `shutdown`
/// (call it when done); once a pair has a message waiting there, the pair's later messages
/// queue behind it, so a delay never reorders a pair.
public final class InMemoryNetwork: @unchecked Sendable {
  /// Counters since the network was made.
  public struct Stats: Sendable, Equatable {
    public var sent = 0
    public var delivered = 0
    public var dropped = 0
  }

  private struct Pair: Hashable {
    var from: UInt64
    var to: UInt64
  }

  private struct Delayed {
    var at: UInt64
    var order: UInt64
    var pair: Pair
    var message: Message
  }

  private let mutex = Mutex<State>(State())

  private struct State {
    var sinks: [UInt64: MessageSink] = [:]
    /// Partition groups: a message between nodes of different groups is dropped (empty: none).
    var groupOf: [UInt64: Int] = [:]
    var isolated: Set<UInt64> = []
    var dropRate: [Pair: Double] = [:]
    var defaultDropRate = 0.0
    var delay: [Pair: UInt64] = [:]
    var defaultDelay: UInt64 = 0
    /// Each message's delay gains a uniform random part in `0...jitter` nanoseconds.
    var jitter: UInt64 = 0
    /// The latest delivery time given to a delayed message of each pair.
    var lastDelayedAt: [Pair: UInt64] = [:]
    /// Messages of each pair waiting in the courier's queue: while any is, later ones queue too.
    var delayedCount: [Pair: Int] = [:]
    var delayed: [Delayed] = []
    var order: UInt64 = 0
    var random: UInt64
    var stats = Stats()
    var stopped = false

    init(seed: UInt64 = 1) { random = seed }

    mutating func nextRandom() -> Double {
      random &+= 0x9E37_79B9_7F4A_7C15
      var z = random
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      z ^= z >> 31
      return Double(z >> 11) / Double(1 << 53)
    }
  }

  private let courierQueue = BatchQueue<Void>(spinNanoseconds: 0)
  private let courierRunning = Atomic<Bool>(false)

  /// A network whose random drops are drawn from `seed`.
  public init(seed: UInt64 = 1) {
    mutex.withLock { $0.random = seed }
  }

  deinit { courierQueue.close() }

  /// Connects node `id`: messages to it go to `sink`.
  public func register(_ id: UInt64, sink: @escaping MessageSink) {
    mutex.withLock { $0.sinks[id] = sink }
  }

  /// Disconnects node `id` (a stopped node): messages to it are dropped.
  public func unregister(_ id: UInt64) {
    mutex.withLock { _ = $0.sinks.removeValue(forKey: id) }
  }

  /// The transport node `id` sends through.
  public func transport(for id: UInt64) -> Transport { NodeTransport(network: self, from: id) }

  /// Drops every message to and from `id` until `heal`.
  public func isolate(_ id: UInt64) { mutex.withLock { _ = $0.isolated.insert(id) } }

  /// Drops every message between nodes of different groups until `heal` (nodes in no group
  /// reach everyone).
  public func partition(_ groups: [[UInt64]]) {
    mutex.withLock { state in
      state.groupOf = [:]
      for (k, g) in groups.enumerated() { for id in g { state.groupOf[id] = k } }
    }
  }

  /// Ends partitions and isolation (drop rates and delays stay).
  public func heal() {
    mutex.withLock { state in
      state.groupOf = [:]
      state.isolated = []
    }
  }

  /// Drops each message with probability `rate`, for one pair or (both nil) for every pair
  /// without its own rate.
  public func setDropRate(_ rate: Double, from: UInt64? = nil, to: UInt64? = nil) {
    precondition(rate >= 0 && rate <= 1, "drop rate must be in [0, 1]")
    mutex.withLock { state in
      if let from, let to { state.dropRate[Pair(from: from, to: to)] = rate } else { state.defaultDropRate = rate }
    }
  }

  /// Delays each message by `nanoseconds`, for one pair or (both nil) for every pair without
  /// its own delay.
  public func setDelay(_ nanoseconds: UInt64, from: UInt64? = nil, to: UInt64? = nil) {
    mutex.withLock { state in
      if let from, let to {
        state.delay[Pair(from: from, to: to)] = nanoseconds
      } else {
        state.defaultDelay = nanoseconds
      }
    }
    startCourier()
  }

  /// Adds a uniform random part in `0...nanoseconds` to every message's delay. Messages of one
  /// pair still arrive in the order they were sent.
  public func setJitter(_ nanoseconds: UInt64) {
    mutex.withLock { $0.jitter = nanoseconds }
    if nanoseconds > 0 { startCourier() }
  }

  /// What the network has done so far.
  public var stats: Stats { mutex.withLock { $0.stats } }

  /// Stops the courier thread; delayed messages not yet due are dropped.
  public func shutdown() {
    mutex.withLock { state in
      state.stopped = true
      state.stats.dropped += state.delayed.count
      state.delayed = []
    }
    courierQueue.close()
  }

  // MARK: Delivery

  fileprivate func send(_ messages: [Message], from: UInt64) {
    var now: [UInt64: [Message]] = [:]
    var sinks: [UInt64: MessageSink] = [:]
    var delayedAny = false
    let time = EngineClock.nanoseconds()
    mutex.withLock { state in
      for m in messages {
        state.stats.sent += 1
        let pair = Pair(from: from, to: m.to)
        guard !state.stopped, let sink = state.sinks[m.to], !state.isolated.contains(from),
          !state.isolated.contains(m.to),
          state.groupOf[from] == nil || state.groupOf[m.to] == nil || state.groupOf[from] == state.groupOf[m.to]
        else {
          state.stats.dropped += 1
          continue
        }
        let rate = state.dropRate[pair] ?? state.defaultDropRate
        if rate > 0 && state.nextRandom() < rate {
          state.stats.dropped += 1
          continue
        }
        var delay = state.delay[pair] ?? state.defaultDelay
        if state.jitter > 0 { delay &+= UInt64(state.nextRandom() * Double(state.jitter + 1)) }
        let queuedBehind = (state.delayedCount[pair] ?? 0) > 0
        if delay > 0 || queuedBehind {
          let at = max(time &+ delay, state.lastDelayedAt[pair] ?? 0)
          state.lastDelayedAt[pair] = at
          state.delayedCount[pair, default: 0] += 1
          state.order &+= 1
          state.delayed.append(Delayed(at: at, order: state.order, pair: pair, message: m))
          delayedAny = true
          continue
        }
        now[m.to, default: []].append(m)
        sinks[m.to] = sink
        state.stats.delivered += 1
      }
    }
    for (to, batch) in now { sinks[to]!(batch) }
    if delayedAny { courierQueue.push(()) }
  }

  private func startCourier() {
    guard !courierRunning.exchange(true, ordering: .acquiringAndReleasing) else { return }
    let thread = UnsafeMutablePointer<pthread_t>.allocate(capacity: 1)
    defer { thread.deallocate() }
    let context = Unmanaged.passRetained(self).toOpaque()
    let rc = pthread_create(
      thread, nil,
      { arg in
        let network = Unmanaged<InMemoryNetwork>.fromOpaque(arg!).takeRetainedValue()
        network.courier()
        return nil
      }, context)
    precondition(rc == 0, "InMemoryNetwork: pthread_create failed (\(rc))")
    pthread_detach(thread.pointee)
  }

  /// Delivers delayed messages when they are due, in time order (ties in send order).
  private func courier() {
    var wake: [Void] = []
    while !courierQueue.closed {
      var due: [Message] = []
      var sinks: [UInt64: MessageSink] = [:]
      var next: UInt64 = UInt64.max
      let time = EngineClock.nanoseconds()
      mutex.withLock { state in
        state.delayed.sort { ($0.at, $0.order) < ($1.at, $1.order) }
        var k = 0
        while k < state.delayed.count && state.delayed[k].at <= time {
          let m = state.delayed[k].message
          state.delayedCount[state.delayed[k].pair]! -= 1
          if let sink = state.sinks[m.to] {
            due.append(m)
            sinks[m.to] = sink
            state.stats.delivered += 1
          } else {
            state.stats.dropped += 1
          }
          k += 1
        }
        state.delayed.removeFirst(k)
        if let first = state.delayed.first { next = first.at }
      }
      var byNode: [UInt64: [Message]] = [:]
      for m in due { byNode[m.to, default: []].append(m) }
      for (to, batch) in byNode { sinks[to]!(batch) }
      wake.removeAll(keepingCapacity: true)
      let wait = next == .max ? 100_000_000 : (next > time ? next - time : 0)
      if wait > 0 { courierQueue.take(into: &wake, timeoutNanoseconds: min(wait, 100_000_000)) }
    }
  }
}

/// One node's view of an `InMemoryNetwork`.
private final class NodeTransport: Transport, @unchecked Sendable {
  let network: InMemoryNetwork
  let from: UInt64

  init(network: InMemoryNetwork, from: UInt64) {
    self.network = network
    self.from = from
  }

  func send(_ messages: [Message]) { network.send(messages, from: from) }
}
