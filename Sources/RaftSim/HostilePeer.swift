import Raft

/// A message a hostile peer sends into a live node's core, described relative to that node's
/// state at the moment it is sent, so that arbitrary bytes make well-formed but hostile messages
/// (any type, a term or index just around the node's own or at the ends of the number space,
/// entries that skip, overlap or go back in term, conf changes that do not decode or cannot
/// apply, snapshots whose configuration does not fit).
///
/// Made from 12 bytes each (`decode`): the fuzz target's input is a list of them.
public struct HostileMessage: Sendable, Equatable {
  /// The bytes, in order: target, from, type, term, logTerm, index, commit, entries, context
  /// and reject, rejectHint, snapshot, payload.
  public var bytes: [UInt8]

  public static let size = 12

  public init(bytes: [UInt8]) {
    precondition(bytes.count == Self.size, "a hostile message is \(Self.size) bytes")
    self.bytes = bytes
  }

  /// Every whole 12-byte record of `input`, in order.
  public static func decode(_ input: [UInt8]) -> [HostileMessage] {
    stride(from: 0, to: input.count - size + 1, by: size).map { HostileMessage(bytes: Array(input[$0..<($0 + size)])) }
  }

  /// The node ids a hostile peer may claim (the members, the spare, a stranger, no node, the
  /// target itself, a local storage thread).
  func from(target: UInt64) -> UInt64 {
    switch bytes[1] % 8 {
    case 0: return noNode
    case 6: return target
    case 7: return localAppendThread
    case let k: return UInt64(k)
    }
  }

  /// A number around `base`, or at an end of the number space, chosen by `b`.
  static func around(_ base: UInt64, _ b: UInt8) -> UInt64 {
    let d = UInt64(b & 31)
    switch b >> 5 {
    case 0: return d
    case 1: return base &+ d
    case 2: return base > d ? base - d : 0
    case 3: return base &+ d &* 1000
    case 4: return UInt64.max - d
    case 5: return PeerMessageLimits.termFreeMax &+ d &- 16
    case 6: return base &+ PeerMessageLimits.termStepMax &+ d &- 16
    default: return d << 40
    }
  }

  /// The message for a target whose term, last index and commit index are as given.
  func message(to target: UInt64, term: UInt64, lastIndex: UInt64, commit: UInt64, voters: [UInt64]) -> Message {
    let type = MessageType(rawValue: bytes[2] % 24) ?? .msgApp
    var m = Message(type: type, to: target, from: from(target: target))
    m.term = Self.around(term, bytes[3])
    m.logTerm = Self.around(term, bytes[4])
    m.index = Self.around(lastIndex, bytes[5])
    m.commit = Self.around(commit, bytes[6])
    m.reject = bytes[8] & 1 == 1
    if bytes[8] & 2 == 2 { m.context = Array("CampaignTransfer".utf8) }
    m.rejectHint = Self.around(lastIndex, bytes[9])
    m.entries = entries(after: m.index, logTerm: m.logTerm, term: m.term, voters: voters)
    if type == .msgSnap || bytes[10] & 0x80 != 0 {
      m.snapshot = snapshot(lastIndex: lastIndex, term: term, voters: voters)
    }
    return m
  }

  private func entries(after index: UInt64, logTerm: UInt64, term: UInt64, voters: [UInt64]) -> [Entry] {
    let p = bytes[7]
    let count = Int(p & 3)
    guard count > 0 else { return [] }
    let data: [UInt8] = Array(repeating: bytes[11], count: Int(bytes[11] % 32))
    var out: [Entry] = []
    for k in 0..<count {
      let i = index &+ 1 &+ UInt64(k)
      switch (p >> 2) % 8 {
      case 0: out.append(Entry(term: term, index: i, data: data))
      case 1: out.append(Entry(term: logTerm, index: i, data: data))
      case 2: out.append(Entry(term: term, index: i &+ 1 &+ UInt64(k), data: data))  // gaps
      case 3: out.append(Entry(term: term, index: i &- 1, data: data))  // overlaps the previous entry
      case 4: out.append(Entry(term: term > UInt64(k) ? term - UInt64(k) : 0, index: i, data: data))  // terms go back
      case 5: out.append(Entry(term: term, index: i, type: .confChangeV2, data: [0xFF] + data))
      case 6:
        let node = UInt64(bytes[11] % 6)
        let type: ConfChangeType = bytes[11] & 0x40 == 0 ? .removeNode : .addNode
        let changes =
          bytes[11] & 0x80 == 0
          ? [ConfChangeSingle(type: type, nodeID: node)]
          : voters.map {
            ConfChangeSingle(type: .removeNode, nodeID: $0)
          }
        out.append(Entry(term: term, index: i, type: .confChangeV2, data: ConfChangeV2(changes: changes).encoded()))
      default: out.append(Entry(term: UInt64.max &- UInt64(k), index: i, data: data))
      }
    }
    return out
  }

  private func snapshot(lastIndex: UInt64, term: UInt64, voters: [UInt64]) -> Snapshot {
    let s = bytes[10]
    let confState: ConfState
    switch s % 6 {
    case 0: confState = ConfState(voters: voters)
    case 1: confState = ConfState(voters: [])
    case 2: confState = ConfState(voters: voters + voters)
    case 3: confState = ConfState(voters: voters, learners: voters)
    case 4: confState = ConfState(voters: [UInt64(bytes[11] % 8)])
    default: confState = ConfState(voters: voters, votersOutgoing: [1, 2], learnersNext: [3])
    }
    let index = Self.around(lastIndex, bytes[5] ^ bytes[10])
    let snapTerm = Self.around(term, bytes[4] ^ bytes[10])
    return Snapshot(data: [], metadata: SnapshotMetadata(confState: confState, index: index, term: snapTerm))
  }
}
