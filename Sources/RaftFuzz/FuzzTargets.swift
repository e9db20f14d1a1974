import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Raft
@_spi(Testing) import RaftKV
import RaftSim
@_spi(Testing) import RaftTransport
import RaftWAL
import Synchronization

/// The decoders of untrusted bytes, each behind one entry point that takes arbitrary input:
/// the libFuzzer targets (`Fuzz/`) call them, and so do the regression tests that replay the
/// corpus. Any input may be refused; none may trap, hang, or get through wrong.
public enum FuzzTargets {
  /// The targets by name (`tools/fuzz NAME`).
  public static let all: [String: @Sendable ([UInt8]) -> Void] = [
    "wal": walSegment, "transport": transportStream, "http": httpStream, "peer": hostilePeer,
  ]

  /// A WAL segment as recovery reads it (records, CRCs, torn-tail rules, the codec behind them).
  /// What it recovers must be consistent: consecutive entries above the snapshot, a commit index
  /// at or above the snapshot's.
  public static func walSegment(_ bytes: [UInt8]) {
    let r = WALInspection.scan(segmentImage: bytes, recordBytesMax: 1 << 16)
    for (k, e) in r.entries.enumerated() {
      precondition(e.index == r.snapshot.index + 1 + UInt64(k), "recovered entries are not consecutive")
    }
    precondition(r.hardState.commit >= r.snapshot.index, "commit below the snapshot")
    // The payload decoders on their own: each record type's body, canonical when it decodes.
    if let e = try? RaftCodec.decodeRecord(Entry.self, from: bytes) {
      precondition(RaftCodec.encodeRecord(e) == bytes, "an entry's encoding is not canonical")
    }
    if let hs = try? RaftCodec.decodeRecord(HardState.self, from: bytes) {
      precondition(RaftCodec.encodeRecord(hs) == bytes, "a hard state's encoding is not canonical")
    }
    if let md = try? RaftCodec.decodeRecord(SnapshotMetadata.self, from: bytes) {
      precondition(RaftCodec.encodeRecord(md) == bytes, "snapshot metadata's encoding is not canonical")
    }
  }

  /// Bytes from a peer's connection, through the transport's frame decoder and inbound handler
  /// (node 2 listening): what reaches the node must be checked messages from the peer that said
  /// hello; anything else closes the connection. Raft's message codec is checked on the raw
  /// bytes too: what decodes re-encodes to the same bytes.
  public static func transportStream(_ bytes: [UInt8]) {
    if let ms = try? RaftCodec.decodeMessages(bytes) {
      precondition(RaftCodec.encodeMessages(ms) == bytes, "a message batch's encoding is not canonical")
    }
    var options = TCPTransportOptions()
    options.frameBytesMax = 1 << 20
    options.snapshotBytesMax = 1 << 20
    let delivered = Mutex<[Message]>([])
    let delegate = TransportDelegate(
      deliver: { ms in delivered.withLock { $0 += ms } }, reportUnreachable: { _ in }, reportSnapshot: { _, _ in })
    let channel = EmbeddedChannel()
    try! channel.pipeline.syncOperations.addHandlers(
      ByteToMessageHandler(FrameDecoder(frameBytesMax: options.frameBytesMax)),
      InboundConnectionHandler(localID: 2, options: options, delegate: delegate, logger: silent))
    // In pieces, as TCP would deliver them.
    var offset = 0
    var piece = 1
    while offset < bytes.count && channel.isActive {
      let end = min(bytes.count, offset + piece)
      _ = try? channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
      offset = end
      piece = piece * 3 + 1
    }
    while (try? channel.readOutbound(as: ByteBuffer.self)) ?? nil != nil {}
    _ = try? channel.finish(acceptAlreadyClosed: true)
    for m in delivered.withLock({ $0 }) {
      precondition(
        m.to == 2 && (m.from != 2 || m.type.isForwardedRequest) && !m.type.isLocal && m.responses.isEmpty,
        "an unchecked message got through")
    }
  }

  /// Messages of a hostile peer (`HostileMessage`, 12 bytes each, after a first byte that picks
  /// the seed and the Ready handling) stepped into the live cores of a simulated 3-node cluster
  /// alongside its normal traffic and faults (`Simulation`, the engine's real core): no node may
  /// trap or stop, and once the peer is gone the cluster must elect and commit again.
  public static func hostilePeer(_ bytes: [UInt8]) {
    guard let first = bytes.first else { return }
    var options = SimulationOptions(
      seed: UInt64(first) | UInt64(bytes.count) << 8, nodes: 3, steps: 400, mode: first & 1 == 0 ? .sync : .async)
    options.hostile = Array(HostileMessage.decode(Array(bytes.dropFirst())).prefix(hostileMessagesMax))
    let result = Simulation(options).run()
    if let v = result.violation { preconditionFailure("hostile peer: \(v) (\(options.replay))") }
  }

  /// Hostile messages taken from one input, at most (one simulation run each).
  static let hostileMessagesMax = 64

  /// An HTTP request stream through NIO's parser, the body limit (4 KiB) and the API's routing,
  /// against an in-memory stand-in for the member; the bytes are also decoded as the store's log
  /// entries and snapshots.
  public static func httpStream(_ bytes: [UInt8]) {
    KVFormats.decodeAll(bytes)
    let channel = EmbeddedChannel()
    try! HTTPHandler.configure(
      channel.pipeline.syncOperations, api: HTTPAPI(server: StandInService()), maxBodyBytes: 4096)
    _ = try? channel.writeInbound(ByteBuffer(bytes: bytes))
    channel.embeddedEventLoop.run()
    while (try? channel.readOutbound(as: ByteBuffer.self)) ?? nil != nil {}
    _ = try? channel.finish(acceptAlreadyClosed: true)
  }

  static let silent = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })
}

/// A member that keeps its keys in memory and answers at once (for the HTTP target).
final class StandInService: KVService, Sendable {
  private let data = Mutex<[[UInt8]: [UInt8]]>([:])
  let metrics = PrometheusMetrics()
  var limits: KVLimits { KVLimits(maxKeyBytes: 64, maxValueBytes: 1024) }
  var leaderAddress: (id: UInt64, url: String?)? { (1, "http://127.0.0.1:1") }
  var members: [UInt64: String] { [1: "http://127.0.0.1:1"] }

  func put(_ key: [UInt8], _ value: [UInt8], done: @escaping @Sendable (Result<UInt64, KVError>) -> Void) {
    data.withLock { $0[key] = value }
    done(.success(1))
  }

  func delete(_ key: [UInt8], done: @escaping @Sendable (Result<UInt64, KVError>) -> Void) {
    data.withLock { _ = $0.removeValue(forKey: key) }
    done(key.first == 0 ? .failure(.noLeader) : .success(1))
  }

  func get(_ key: [UInt8], linearizable: Bool, done: @escaping @Sendable (Result<[UInt8]?, KVError>) -> Void) {
    done(linearizable && key.count > 8 ? .failure(.timedOut) : .success(data.withLock { $0[key] }))
  }

  func addMember(_ memberID: UInt64, url: String, done: @escaping @Sendable (Result<UInt64, KVError>) -> Void) {
    done(.success(1))
  }

  func removeMember(_ memberID: UInt64, done: @escaping @Sendable (Result<UInt64, KVError>) -> Void) {
    done(.failure(.engine(.dropped)))
  }

  func status(_ done: @escaping @Sendable (KVStatusReport) -> Void) {
    done(
      KVStatusReport(
        id: 1, state: "StateLeader", term: 1, leader: 1, commit: 1, applied: 1, progress: [:], members: [:],
        connectedPeers: [], keys: data.withLock { $0.count }, restoredSnapshots: 0, snapshotIndex: 0, firstIndex: 1,
        lastIndex: 1, readyHandling: "async"))
  }
}
