import Foundation
import NIOCore
import Raft
@_spi(Testing) import RaftTransport
import RaftWAL

/// Well-formed inputs for each target, from which the fuzzers and the seeded regression tests
/// mutate their way into the decoders.
public enum FuzzSeeds {
  public static func make(_ target: String) -> [[UInt8]] {
    switch target {
    case "wal": return wal()
    case "transport": return transport()
    case "http": return http()
    case "peer": return peer()
    default: preconditionFailure("unknown fuzz target \(target)")
    }
  }

  static func entries(_ range: ClosedRange<UInt64>, term: UInt64) -> [Entry] {
    range.map { Entry(term: term, index: $0, data: Array("value \($0)".utf8)) }
  }

  /// A real segment (entries, hard states, a snapshot), its trailing zeros cut, and records.
  static func wal() -> [[UInt8]] {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("raft-fuzz-seed-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var out: [[UInt8]] = []
    do {
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      var options = WALOptions()
      options.io = .posix
      options.segmentBytes = 64 << 10
      options.recordBytesMax = 16 << 10
      options.segmentPreparation = .fallocate
      let wal = try WAL(directory: dir, options: options)
      try wal.append(entries: entries(1...5, term: 1), hardState: HardState(term: 1, vote: 1, commit: 3))
      try wal.append(entries: entries(4...6, term: 2), hardState: HardState(term: 2, vote: 2, commit: 5))
      let snap = Snapshot(
        data: [1, 2, 3], metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2, 3]), index: 9, term: 3))
      try wal.append(entries: [], hardState: HardState(term: 3, vote: 2, commit: 9), snapshot: snap)
      try wal.append(entries: entries(10...12, term: 3))
      try wal.sync()
      try wal.close()
      for name in try FileManager.default.contentsOfDirectory(atPath: dir) where name.hasSuffix(".wal") {
        var image = [UInt8](FileManager.default.contents(atPath: dir + "/" + name) ?? Data())
        while image.last == 0 { image.removeLast() }
        out.append(image)
      }
    } catch {
      preconditionFailure("fuzz seeds: could not write a WAL: \(error)")
    }
    out.append(RaftCodec.encodeRecord(entries(7...7, term: 2)[0]))
    out.append(RaftCodec.encodeRecord(HardState(term: 4, vote: 1, commit: 7)))
    out.append(
      RaftCodec.encodeRecord(SnapshotMetadata(confState: ConfState(voters: [1, 2], learners: [3]), index: 5, term: 2)))
    return out
  }

  static func frame(_ kind: FrameKind, _ body: (inout ByteBuffer) -> Void) -> [UInt8] {
    var b = ByteBuffer()
    b.writeFrame(kind, body)
    return Array(b.readableBytesView)
  }

  /// A connection's bytes: hello, message batches, a snapshot stream; and a bare batch.
  static func transport() -> [[UInt8]] {
    let hello = frame(.hello) { b in
      b.writeInteger(UInt64(1))
      b.writeInteger(UInt64(2))
    }
    let batch = RaftCodec.encodeMessages([
      Message(
        type: .msgApp, to: 2, from: 1, term: 3, logTerm: 2, index: 4, entries: entries(5...6, term: 3), commit: 4),
      Message(type: .msgHeartbeat, to: 2, from: 1, term: 3, commit: 6, context: [7, 7]),
      Message(type: .msgVote, to: 2, from: 1, term: 4, logTerm: 3, index: 6),
    ])
    let messages = frame(.messages) { $0.writeBytes(batch) }
    let snapshot = Snapshot(
      data: Array(repeating: 9, count: 40),
      metadata: SnapshotMetadata(confState: ConfState(voters: [1, 2]), index: 8, term: 3))
    let header = RaftCodec.encodeMessage(
      Message(type: .msgSnap, to: 2, from: 1, term: 3, snapshot: Snapshot(metadata: snapshot.metadata)))
    let begin = frame(.snapshotBegin) { b in
      b.writeInteger(UInt64(1))
      b.writeInteger(UInt64(40))
      b.writeBytes(header)
    }
    let chunk1 = frame(.snapshotChunk) { b in
      b.writeInteger(UInt64(1))
      b.writeBytes(snapshot.data.prefix(25))
    }
    let chunk2 = frame(.snapshotChunk) { b in
      b.writeInteger(UInt64(1))
      b.writeBytes(snapshot.data.dropFirst(25))
    }
    let end = frame(.snapshotEnd) { $0.writeInteger(UInt64(1)) }
    return [hello + messages, hello + begin + chunk1 + messages + chunk2 + end + messages, batch]
  }

  /// Requests of every route, one pipelined stream, and store encodings.
  static func http() -> [[UInt8]] {
    let requests = [
      "PUT /color HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nblue",
      "GET /color?linearizable=true HTTP/1.1\r\nHost: h\r\n\r\n",
      "DELETE /a%20b/c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
      "POST /members/4 HTTP/1.1\r\nHost: h\r\nContent-Length: 22\r\n\r\nhttp://127.0.0.1:42379",
      "DELETE /members/2 HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET /status HTTP/1.1\r\nHost: h\r\n\r\nGET /metrics HTTP/1.1\r\nHost: h\r\n\r\nGET /members HTTP/1.1\r\n\r\n",
      "PUT /k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      "PATCH /k?x=1 HTTP/1.0\r\n\r\n",
    ]
    var out = requests.map { Array($0.utf8) }
    out.append([1, 1, 5, 1, 0x6b, 0x76])  // a put command: version, op, request id, key length, key, value
    out.append([1, 1, 1, 7, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 1, 1, 0x6b, 1, 0x76])  // a snapshot
    return out
  }

  /// Hostile peers: the attacks of the security review, each alone and all in one run, and a
  /// few mixes (first byte: the seed and the Ready handling; then 12 bytes per message).
  static func peer() -> [[UInt8]] {
    // target, from, type, term, logTerm, index, commit, entries, context|reject, rejectHint,
    // snapshot, payload (see HostileMessage: 0x20 | d is "ours + d", 0x80 | d is "max - d").
    let attacks: [[UInt8]] = [
      [1, 1, 8, 0x20, 0x20, 0x20, 0x61, 0, 0, 0x20, 0, 1],  // MsgHeartbeat committing far past the log
      [1, 1, 3, 0x20, 0x20, 0x20, 0x20, 0x09, 0, 0x20, 0, 1],  // MsgApp whose entries skip ahead
      [1, 1, 3, 0x21, 0x20, 0x40, 0x20, 0x0D, 0, 0x20, 0, 1],  // MsgApp rewriting below itself
      [0, 2, 2, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0],  // MsgProp without entries
      [1, 1, 3, 0x20, 0x20, 0x20, 0x20, 0x0B, 0, 0x20, 0, 3],  // MsgApp with non-consecutive entries
      [2, 3, 5, 0x81, 0x20, 0x20, 0x20, 0, 2, 0x20, 0, 0],  // MsgVote, CampaignTransfer, term 2^64 - 2
      [1, 2, 2, 0x00, 0x00, 0x00, 0x00, 0x15, 0, 0, 0, 0x80],  // MsgProp removing every voter
      [1, 2, 7, 0x20, 0x20, 0x21, 0x20, 0, 0, 0, 0x81, 0],  // MsgSnap whose configuration has no voters
      [1, 2, 14, 0x20, 0x20, 0x20, 0x20, 0, 0, 0, 0, 0],  // MsgTimeoutNow
      [1, 2, 17, 0xA0, 0x20, 0x20, 0x20, 0, 2, 0, 0, 0],  // MsgPreVote at 2^62
    ]
    var out: [[UInt8]] = []
    for (k, a) in attacks.enumerated() { out.append([UInt8(k)] + a) }
    out.append([7] + attacks.joined())
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    for k in 0..<4 {
      var input: [UInt8] = [UInt8(k)]
      for _ in 0..<(12 * 24) {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        input.append(UInt8(truncatingIfNeeded: x))
      }
      out.append(input)
    }
    return out
  }
}
