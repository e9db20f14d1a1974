import Logging
import NIOCore
import Raft
import RaftEngine
import RaftTransport
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Why a key-value request failed.
public enum KVError: Error, Equatable, Sendable, CustomStringConvertible {
  /// No leader is known (an election is under way, or this node is cut off).
  case noLeader
  /// The engine refused or lost the proposal (the text says why). Its outcome may be unknown
  /// (a snapshot overtook it); PUT and DELETE are idempotent, so retrying them is safe.
  case engine(EngineError)
  /// The request got no answer in time; a write may still be applied later.
  case timedOut
  /// The node is shutting down.
  case stopped

  public var description: String {
    switch self {
    case .noLeader: return "no leader"
    case .engine(let e): return "\(e)"
    case .timedOut: return "timed out (a write may still be applied)"
    case .stopped: return "node stopped"
    }
  }
}

/// The replicated key-value map: the `StateMachine` that the node's apply side drives.
///
/// Besides the keys it keeps the cluster's members and their raft addresses (from the applied
/// conf changes' context, and in its snapshots, so that a member that catches up by snapshot
/// knows how to reach everyone), and the requests of this process waiting for their entry.
final class KVStore: StateMachine, Sendable {
  typealias Waiter = @Sendable (Result<UInt64, KVError>) -> Void

  private struct State {
    var data: [KVKey: [UInt8]] = [:]
    var members: [UInt64: String] = [:]
    /// Invariant: every waiter's index is above `applied` (or it would have been woken).
    var readWaiters: [(index: UInt64, waiter: Waiter)] = []
    var restoredSnapshots = 0
  }

  /// The requests of this process waiting for their entry.
  private struct Waiters {
    /// By request id, completed when their entry is applied (or failed).
    var byID: [UInt64: Waiter] = [:]
    /// When each request registered gives up, in registration order: with one timeout for all,
    /// that is deadline order (up to the skew between threads registering at once). Entries of
    /// requests already answered stay until their deadline, so at most (requests per second x
    /// timeout) of them are held.
    var deadlines = CircularBuffer<(deadlineNanoseconds: UInt64, requestID: UInt64)>()
  }

  private let state: Mutex<State>
  private let waiters = Mutex(Waiters())
  /// The highest applied index.
  let applied = Atomic<UInt64>(0)
  private let localID: UInt64
  private let logger: Logger
  /// Called (on the apply side) whenever the members change.
  private let membersChanged: @Sendable ([UInt64: String]) -> Void
  /// Called (on the apply side) when a conf change removed this node.
  private let removedSelf: @Sendable () -> Void

  init(
    localID: UInt64, initialMembers: [UInt64: String], logger: Logger,
    membersChanged: @escaping @Sendable ([UInt64: String]) -> Void, removedSelf: @escaping @Sendable () -> Void
  ) {
    self.localID = localID
    self.logger = logger
    self.membersChanged = membersChanged
    self.removedSelf = removedSelf
    state = Mutex(State(members: initialMembers))
  }

  // MARK: Reads (any thread)

  func value(of key: [UInt8]) -> [UInt8]? { state.withLock { $0.data[KVKey(key)] } }

  var members: [UInt64: String] { state.withLock { $0.members } }

  var keyCount: Int { state.withLock { $0.data.count } }

  var restoredSnapshots: Int { state.withLock { $0.restoredSnapshots } }

  // MARK: Waiting for entries

  /// Registers a waiter for the entry carrying `requestID`; if it still waits at
  /// `deadlineNanoseconds` (`NIODeadline.now().uptimeNanoseconds` clock), `failExpired` fails it
  /// with `.timedOut`. One sweep for all requests instead of a timer each: a timer costs a
  /// scheduling and a cancellation (locks and heap updates on two threads) per request.
  func expect(_ requestID: UInt64, deadlineNanoseconds: UInt64, _ waiter: @escaping Waiter) {
    waiters.withLock { w in
      w.byID[requestID] = waiter
      w.deadlines.append((deadlineNanoseconds, requestID))
    }
  }

  /// Fails the waiter of `requestID` if it is still waiting.
  func fail(_ requestID: UInt64, _ error: KVError) {
    waiters.withLock { $0.byID.removeValue(forKey: requestID) }?(.failure(error))
  }

  /// Fails with `.timedOut` the waiters whose deadline is at or before `nowNanoseconds`;
  /// returns how many.
  @discardableResult
  func failExpired(nowNanoseconds: UInt64) -> Int {
    let expired = waiters.withLock { w -> [Waiter] in
      var expired: [Waiter] = []
      while let first = w.deadlines.first, first.deadlineNanoseconds <= nowNanoseconds {
        w.deadlines.removeFirst()
        if let waiter = w.byID.removeValue(forKey: first.requestID) { expired.append(waiter) }
      }
      return expired
    }
    for waiter in expired { waiter(.failure(.timedOut)) }
    return expired.count
  }

  /// The requests waiting for their entry.
  var waitingRequests: Int { waiters.withLock { $0.byID.count } }

  /// Calls `waiter` once everything up to `index` is applied.
  func whenApplied(_ index: UInt64, _ waiter: @escaping Waiter) {
    let now = state.withLock { s -> Bool in
      if applied.load(ordering: .acquiring) >= index { return true }
      s.readWaiters.append((index, waiter))
      return false
    }
    if now { waiter(.success(index)) }
  }

  /// Fails every waiter (the node stops).
  func failAll() {
    let all = waiters.withLock { w in
      defer { w = Waiters() }
      return Array(w.byID.values)
    }
    let reads = state.withLock { s in
      defer { s.readWaiters = [] }
      return s.readWaiters.map(\.waiter)
    }
    for w in all + reads { w(.failure(.stopped)) }
  }

  // MARK: StateMachine (the apply side)

  func apply(index: UInt64, term: UInt64, data: Payload) {
    let command: KVCommand
    do {
      command = try KVCommand(decoding: data)
    } catch {
      // Every node skips the same entry: the replicas stay identical.
      logger.error("skipping an entry that is not a command", metadata: ["index": "\(index)", "error": "\(error)"])
      return
    }
    store(command.op, key: command.key, value: command.value)
    complete(command.requestID, index: index)
  }

  /// The write of one command to the map.
  func store(_ op: KVCommand.Op, key: [UInt8], value: [UInt8]) {
    state.withLock { s in
      switch op {
      case .put: s.data[KVKey(key)] = value
      case .delete: s.data.removeValue(forKey: KVKey(key))
      }
    }
  }

  func applyConfChange(_ change: AnyConfChange, index: UInt64, term: UInt64) {
    let cc = change.asV2
    var context: MemberContext?
    if !cc.context.isEmpty {
      do {
        context = try MemberContext(decoding: cc.context)
      } catch {
        logger.warning("conf change with an unreadable context", metadata: ["index": "\(index)", "error": "\(error)"])
      }
    }
    var removed = false
    let members = state.withLock { s in
      for single in cc.changes {
        switch single.type {
        case .addNode, .addLearnerNode, .updateNode:
          if let url = context?.url, !url.isEmpty { s.members[single.nodeID] = url }
        case .removeNode:
          s.members.removeValue(forKey: single.nodeID)
          if single.nodeID == localID { removed = true }
        }
      }
      return s.members
    }
    logger.info("membership changed", metadata: ["index": "\(index)", "change": "\(cc.changes)"])
    membersChanged(members)
    if let context { complete(context.requestID, index: index) }
    if removed { removedSelf() }
  }

  func applied(through index: UInt64) { advance(to: index) }

  func restore(snapshot: Snapshot) {
    let decoded: (data: [KVKey: [UInt8]], members: [UInt64: String])
    do {
      decoded = try Self.decodeSnapshot(snapshot.data)
    } catch {
      // A snapshot this node cannot read would leave it diverged: stop loudly.
      preconditionFailure("raftkv: snapshot at index \(snapshot.metadata.index) is unreadable: \(error)")
    }
    let members = state.withLock { s in
      s.data = decoded.data
      s.members = decoded.members
      s.restoredSnapshots += 1
      return s.members
    }
    logger.info(
      "restored a snapshot", metadata: ["index": "\(snapshot.metadata.index)", "keys": "\(decoded.data.count)"])
    membersChanged(members)
    advance(to: snapshot.metadata.index)
  }

  func snapshotData() -> [UInt8]? {
    state.withLock { s in Self.encodeSnapshot(data: s.data, members: s.members) }
  }

  private func complete(_ requestID: UInt64, index: UInt64) {
    waiters.withLock { $0.byID.removeValue(forKey: requestID) }?(.success(index))
  }

  private func advance(to index: UInt64) {
    applied.max(index, ordering: .acquiringAndReleasing)
    let ready = state.withLock { s -> [Waiter] in
      var ready: [Waiter] = []
      s.readWaiters.removeAll { w in
        guard w.index <= index else { return false }
        ready.append(w.waiter)
        return true
      }
      return ready
    }
    for w in ready { w(.success(index)) }
  }

  // MARK: Snapshot format

  /// `version u8 | member count | (id, url length, url)... | key count | (key length, key, value
  /// length, value)...`, lengths and counts as varints; keys in sorted order, so that equal
  /// states give equal bytes.
  static func encodeSnapshot(data: [KVKey: [UInt8]], members: [UInt64: String]) -> [UInt8] {
    var out: [UInt8] = [KVCommand.version]
    RaftCodec.appendVarint(UInt64(members.count), into: &out)
    for (id, url) in members.sorted(by: { $0.key < $1.key }) {
      RaftCodec.appendVarint(id, into: &out)
      RaftCodec.appendVarint(UInt64(url.utf8.count), into: &out)
      out += Array(url.utf8)
    }
    RaftCodec.appendVarint(UInt64(data.count), into: &out)
    // Sorted by key (memcmp, then length): members holding the same data write the same bytes.
    // Sorted by each key's first 8 bytes as one big-endian integer (shorter keys padded with
    // zeros), comparing the bytes only between keys whose first 8 are equal.
    let entries = Array(data)
    var order: [(prefix: UInt64, index: Int32)] = []
    order.reserveCapacity(entries.count)
    var bytes = out.count
    for (k, (key, value)) in entries.enumerated() {
      var prefix: UInt64 = 0
      for b in key.bytes.prefix(8) { prefix = prefix << 8 | UInt64(b) }
      prefix <<= UInt64(8 * (8 - min(key.bytes.count, 8)))
      order.append((prefix, Int32(k)))
      bytes += key.bytes.count + value.count + 20
    }
    order.sort { a, b in
      if a.prefix != b.prefix { return a.prefix < b.prefix }
      return entries[Int(a.index)].key.bytes.withUnsafeBufferPointer { x in
        entries[Int(b.index)].key.bytes.withUnsafeBufferPointer { y in
          let n = min(x.count, y.count)
          let c = n == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, n)
          return c != 0 ? c < 0 : x.count < y.count
        }
      }
    }
    out.reserveCapacity(bytes)
    for (_, k) in order {
      let (key, value) = entries[Int(k)]
      RaftCodec.appendVarint(UInt64(key.bytes.count), into: &out)
      out += key.bytes
      RaftCodec.appendVarint(UInt64(value.count), into: &out)
      out += value
    }
    return out
  }

  static func decodeSnapshot(_ bytes: [UInt8]) throws(KVFormatError) -> (
    data: [KVKey: [UInt8]], members: [UInt64: String]
  ) {
    var r = ByteReader(bytes)
    guard try r.byte("version") == KVCommand.version else { throw KVFormatError("unknown snapshot version") }
    var members: [UInt64: String] = [:]
    for _ in 0..<(try r.varint("member count")) {
      let id = try r.varint("member id")
      let url = try r.bytes(Int(clamping: try r.varint("url length")), "url")
      members[id] = String(decoding: url, as: UTF8.self)
    }
    var data: [KVKey: [UInt8]] = [:]
    let count = try r.varint("key count")
    guard count <= UInt64(bytes.count) else { throw KVFormatError("key count \(count) beyond the snapshot's size") }
    data.reserveCapacity(Int(count))
    for _ in 0..<count {
      let key = try r.bytes(Int(clamping: try r.varint("key length")), "key")
      data[KVKey(key)] = try r.bytes(Int(clamping: try r.varint("value length")), "value")
    }
    guard r.isAtEnd else { throw KVFormatError("trailing bytes after the snapshot") }
    return (data, members)
  }
}

/// A key of the store: its bytes, hashed in one call (an array of bytes hashes them one by
/// one, which costs more than the lookup itself for short keys).
struct KVKey: Hashable, Sendable, ExpressibleByArrayLiteral {
  let bytes: [UInt8]

  init(_ bytes: [UInt8]) { self.bytes = bytes }
  init(arrayLiteral elements: UInt8...) { bytes = elements }

  func hash(into hasher: inout Hasher) {
    bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
  }

  static func == (a: KVKey, b: KVKey) -> Bool { a.bytes == b.bytes }
}
