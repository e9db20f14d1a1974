/// One log entry. `data` is opaque to Raft except for conf change entries, whose data is an
/// encoded `ConfChange` / `ConfChangeV2` (see `ConfChange+Encoding.swift`).
public struct Entry: Sendable, Equatable, Hashable {
  public var term: UInt64
  public var index: UInt64
  public var type: EntryType
  /// A view into a buffer the entries of one batch or one message share: copying an entry
  /// never copies its bytes.
  public var data: Payload

  public init(term: UInt64 = 0, index: UInt64 = 0, type: EntryType = .normal, data: Payload = Payload()) {
    self.term = term
    self.index = index
    self.type = type
    self.data = data
  }

  /// An entry whose data is the whole of `data` (not copied).
  public init(term: UInt64 = 0, index: UInt64 = 0, type: EntryType = .normal, data: [UInt8]) {
    self.init(term: term, index: index, type: type, data: Payload(data))
  }

  /// The entry's size as etcd-raft counts it (the protobuf encoding of `raftpb.Entry`):
  /// flow control (MaxSizePerMsg, MaxCommittedSizePerReady, Inflights bytes) uses this figure,
  /// so the same scenario produces the same message boundaries as the reference.
  @inlinable
  public var size: UInt64 {
    var n = 3 + varintSize(term) + varintSize(index) + varintSize(UInt64(type.rawValue))
    if !data.isEmpty {
      n += 1 + varintSize(UInt64(data.count)) + UInt64(data.count)
    }
    return n
  }

  /// The payload size counted against MaxUncommittedEntriesSize (etcd's `payloadSize`).
  @inlinable
  public var payloadSize: UInt64 { UInt64(data.count) }
}

/// The number of bytes of `v` as a protobuf varint.
@inlinable
func varintSize(_ v: UInt64) -> UInt64 {
  // ((bits.Len64(v|1) + 6) / 7); terms, types and most indexes and lengths take one or two
  // bytes, so those are answered without the division.
  if v < 0x80 { return 1 }
  if v < 0x4000 { return 2 }
  let bits = 64 - v.leadingZeroBitCount
  return UInt64((bits + 6) / 7)
}

/// Total `Entry.size` of a slice of entries.
@inlinable
func entriesSize<C: Collection>(_ entries: C) -> UInt64 where C.Element == Entry {
  // In place: iterating copies of the entries would retain and release each one's payload.
  if let n = entries.withContiguousStorageIfAvailable({ buf -> UInt64 in
    var n: UInt64 = 0
    for k in buf.indices { n += buf[k].size }
    return n
  }) {
    return n
  }
  var n: UInt64 = 0
  for e in entries { n += e.size }
  return n
}

/// Total `Entry.payloadSize` of a slice of entries.
@inlinable
func payloadsSize<C: Collection>(_ entries: C) -> UInt64 where C.Element == Entry {
  if let n = entries.withContiguousStorageIfAvailable({ buf -> UInt64 in
    var n: UInt64 = 0
    for k in buf.indices { n += buf[k].payloadSize }
    return n
  }) {
    return n
  }
  var n: UInt64 = 0
  for e in entries { n += e.payloadSize }
  return n
}

/// The durable vote and commit state of a node (etcd-raft's `raftpb.HardState`).
public struct HardState: Sendable, Equatable, Hashable {
  public var term: UInt64
  public var vote: UInt64
  public var commit: UInt64

  public init(term: UInt64 = 0, vote: UInt64 = 0, commit: UInt64 = 0) {
    self.term = term
    self.vote = vote
    self.commit = commit
  }

  /// True when all fields are zero (nothing to persist).
  public var isEmpty: Bool { term == 0 && vote == 0 && commit == 0 }
}

/// The membership configuration (etcd-raft's `raftpb.ConfState`).
public struct ConfState: Sendable, Equatable, Hashable {
  /// The voters of the incoming configuration (the only one outside a joint configuration).
  public var voters: [UInt64]
  /// The learners of the incoming configuration.
  public var learners: [UInt64]
  /// The voters of the outgoing configuration; non-empty exactly in a joint configuration.
  public var votersOutgoing: [UInt64]
  /// Voters of the outgoing configuration that become learners when the joint state is left.
  public var learnersNext: [UInt64]
  /// Leave the joint configuration automatically once it is committed and applied.
  public var autoLeave: Bool

  public init(
    voters: [UInt64] = [], learners: [UInt64] = [], votersOutgoing: [UInt64] = [],
    learnersNext: [UInt64] = [], autoLeave: Bool = false
  ) {
    self.voters = voters
    self.learners = learners
    self.votersOutgoing = votersOutgoing
    self.learnersNext = learnersNext
    self.autoLeave = autoLeave
  }

  /// Equivalence ignoring the order of ids within each list (etcd's `ConfState.Equivalent`).
  public func isEquivalent(to other: ConfState) -> Bool {
    voters.sorted() == other.voters.sorted() && learners.sorted() == other.learners.sorted()
      && votersOutgoing.sorted() == other.votersOutgoing.sorted()
      && learnersNext.sorted() == other.learnersNext.sorted() && autoLeave == other.autoLeave
  }
}

/// Where a snapshot sits in the log and which configuration it carries.
public struct SnapshotMetadata: Sendable, Equatable, Hashable {
  public var confState: ConfState
  public var index: UInt64
  public var term: UInt64

  public init(confState: ConfState = ConfState(), index: UInt64 = 0, term: UInt64 = 0) {
    self.confState = confState
    self.index = index
    self.term = term
  }
}

/// A state machine snapshot: opaque data plus its metadata.
public struct Snapshot: Sendable, Equatable, Hashable {
  public var data: [UInt8]
  public var metadata: SnapshotMetadata

  public init(data: [UInt8] = [], metadata: SnapshotMetadata = SnapshotMetadata()) {
    self.data = data
    self.metadata = metadata
  }

  /// True when the snapshot is the empty one (index 0).
  public var isEmpty: Bool { metadata.index == 0 }
}
