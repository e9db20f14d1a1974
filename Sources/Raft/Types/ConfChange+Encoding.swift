// Conf change payloads are stored in log entries in the protobuf wire format of etcd-raft's
// `raftpb.ConfChange` / `raftpb.ConfChangeV2`. Entry sizes (and therefore flow control
// decisions) then match the reference byte for byte, and a log written by etcd-raft decodes.

/// A malformed conf change payload.
public struct ConfChangeDecodingError: Error, Equatable, CustomStringConvertible {
  public var description: String
}

struct ProtoWriter {
  var bytes: [UInt8] = []

  mutating func varint(_ v: UInt64) {
    var v = v
    while v >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }

  mutating func field(_ number: UInt64, varint v: UInt64) {
    varint(number << 3)
    varint(v)
  }

  mutating func field(_ number: UInt64, bytes b: [UInt8]) {
    varint(number << 3 | 2)
    varint(UInt64(b.count))
    bytes.append(contentsOf: b)
  }
}

struct ProtoReader {
  let bytes: [UInt8]
  var offset = 0

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  var atEnd: Bool { offset >= bytes.count }

  mutating func varint() throws -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard offset < bytes.count else { throw ConfChangeDecodingError(description: "truncated varint") }
      guard shift < 64 else { throw ConfChangeDecodingError(description: "varint overflow") }
      let b = bytes[offset]
      offset += 1
      result |= UInt64(b & 0x7f) << shift
      if b < 0x80 { return result }
      shift += 7
    }
  }

  mutating func lengthDelimited() throws -> [UInt8] {
    let n = try varint()
    guard n <= UInt64(bytes.count - offset) else {
      throw ConfChangeDecodingError(description: "length \(n) exceeds the \(bytes.count - offset) bytes left")
    }
    let out = Array(bytes[offset..<offset + Int(n)])
    offset += Int(n)
    return out
  }

  /// Reads the next key; returns (field number, wire type).
  mutating func key() throws -> (UInt64, UInt64) {
    let k = try varint()
    return (k >> 3, k & 7)
  }

  mutating func skip(wireType: UInt64) throws {
    switch wireType {
    case 0: _ = try varint()
    case 1: try advance(8)
    case 2: _ = try lengthDelimited()
    case 5: try advance(4)
    default: throw ConfChangeDecodingError(description: "unsupported wire type \(wireType)")
    }
  }

  private mutating func advance(_ n: Int) throws {
    guard bytes.count - offset >= n else { throw ConfChangeDecodingError(description: "truncated field") }
    offset += n
  }
}

func decodeConfChangeType(_ v: UInt64) throws -> ConfChangeType {
  guard v <= 255, let t = ConfChangeType(rawValue: UInt8(v)) else {
    throw ConfChangeDecodingError(description: "unknown conf change type \(v)")
  }
  return t
}

extension ConfChange {
  /// The protobuf wire encoding (`raftpb.ConfChange`).
  public func encoded() -> [UInt8] {
    var w = ProtoWriter()
    w.field(1, varint: id)
    w.field(2, varint: UInt64(type.rawValue))
    w.field(3, varint: nodeID)
    if !context.isEmpty { w.field(4, bytes: context) }
    return w.bytes
  }

  /// Decodes the protobuf wire encoding; throws on malformed input.
  public init(decoding bytes: [UInt8]) throws {
    self.init()
    var r = ProtoReader(bytes)
    while !r.atEnd {
      let (field, wire) = try r.key()
      switch (field, wire) {
      case (1, 0): id = try r.varint()
      case (2, 0): type = try decodeConfChangeType(try r.varint())
      case (3, 0): nodeID = try r.varint()
      case (4, 2): context = try r.lengthDelimited()
      default: try r.skip(wireType: wire)
      }
    }
  }
}

extension ConfChangeV2 {
  /// The protobuf wire encoding (`raftpb.ConfChangeV2`).
  public func encoded() -> [UInt8] {
    var w = ProtoWriter()
    w.field(1, varint: UInt64(transition.rawValue))
    for c in changes {
      var inner = ProtoWriter()
      inner.field(1, varint: UInt64(c.type.rawValue))
      inner.field(2, varint: c.nodeID)
      w.field(2, bytes: inner.bytes)
    }
    if !context.isEmpty { w.field(3, bytes: context) }
    return w.bytes
  }

  /// Decodes the protobuf wire encoding; throws on malformed input.
  public init(decoding bytes: [UInt8]) throws {
    self.init()
    var r = ProtoReader(bytes)
    while !r.atEnd {
      let (field, wire) = try r.key()
      switch (field, wire) {
      case (1, 0):
        let v = try r.varint()
        guard v <= 2, let t = ConfChangeTransition(rawValue: UInt8(v)) else {
          throw ConfChangeDecodingError(description: "unknown conf change transition \(v)")
        }
        transition = t
      case (2, 2):
        var inner = ProtoReader(try r.lengthDelimited())
        var single = ConfChangeSingle(type: .addNode, nodeID: 0)
        while !inner.atEnd {
          let (f, w) = try inner.key()
          switch (f, w) {
          case (1, 0): single.type = try decodeConfChangeType(try inner.varint())
          case (2, 0): single.nodeID = try inner.varint()
          default: try inner.skip(wireType: w)
          }
        }
        changes.append(single)
      case (3, 2): context = try r.lengthDelimited()
      default: try r.skip(wireType: wire)
      }
    }
  }
}

extension Entry {
  /// The conf change carried by a conf change entry, or nil for a normal entry.
  public func decodedConfChange() throws -> AnyConfChange? {
    switch type {
    case .normal: return nil
    case .confChange: return .v1(try ConfChange(decoding: data.bytes))
    case .confChangeV2: return .v2(try ConfChangeV2(decoding: data.bytes))
    }
  }
}
