import Logging
import Raft
import RaftEngine

/// RaftKV's key-value store as a state machine for benchmarks of the write path: each applied
/// entry is a PUT of a key drawn at random from a key space, with the entry's data as the value,
/// so that applying costs what raftkv's store costs (a lock, a hash lookup, an insert) without
/// the HTTP layer and without changing the entries' size.
///
/// Keys are drawn from a seeded generator on the apply side, so every replica of a benchmark
/// cluster builds the same map.
public final class KVBenchmarkStateMachine: StateMachine, @unchecked Sendable {
  private let store: KVStore
  /// The keys, made once (`key-00000042`): drawing one costs no allocation.
  private let keys: [[UInt8]]
  /// Apply side only (one thread).
  private var random: SplitMix64

  /// A store of `keySpace` keys (at least 1), drawn with `seed`.
  public init(keySpace: Int, seed: UInt64 = 1) {
    precondition(keySpace >= 1, "KVBenchmarkStateMachine: the key space must hold a key")
    store = KVStore(
      localID: 0, initialMembers: [:],
      logger: Logger(label: "raftkv-bench", factory: { _ in SwiftLogNoOpLogHandler() }),
      membersChanged: { _ in }, removedSelf: {})
    keys = (0..<keySpace).map { k in Array("key-\(String(repeating: "0", count: max(0, 8 - String(k).count)))\(k)".utf8)
    }
    random = SplitMix64(seed: seed)
  }

  /// Keys in the map so far.
  public var keyCount: Int { store.keyCount }

  public func apply(index: UInt64, term: UInt64, data: Payload) {
    let key = keys[Int(random.next() % UInt64(keys.count))]
    store.store(.put, key: key, value: Array(data))
  }

  public func applied(through index: UInt64) { store.applied(through: index) }

  public func restore(snapshot: Snapshot) { store.restore(snapshot: snapshot) }

  public func snapshotData() -> [UInt8]? { store.snapshotData() }
}
