import Raft

/// How a simulated node handles its Ready: as the engine's run loop does in each mode.
public enum SimMode: String, Sendable, CaseIterable {
  /// Persist (write + sync), send, apply, advance.
  case sync
  /// Asynchronous storage writes: `MsgStorageAppend`s to an append worker (write, then sync,
  /// then the responses), `MsgStorageApply`s to an apply worker; every response comes back
  /// through the node's inbox or the network, delayed and interleaved.
  case async
}

/// Raft's log lines go nowhere in the simulator (thousands of seeds).
final class SilentLogger: RaftLogger {
  func isEnabled(_ level: RaftLogLevel) -> Bool { false }
  func log(_ level: RaftLogLevel, _ message: String) {}
}

/// A key-value write as it travels in an entry: op id, key, value (8 bytes each, little endian).
struct SimCommand: Equatable {
  var opID: UInt64
  var key: UInt64
  var value: UInt64

  var encoded: [UInt8] {
    var out: [UInt8] = []
    for v in [opID, key, value] { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    return out
  }

  init(opID: UInt64, key: UInt64, value: UInt64) {
    self.opID = opID
    self.key = key
    self.value = value
  }

  init?(_ data: [UInt8]) {
    guard data.count == 24 else { return nil }
    func word(_ k: Int) -> UInt64 { data[(8 * k)..<(8 * k + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    (opID, key, value) = (word(0), word(1), word(2))
  }
}

/// One simulated node: a real `RawNode` over a `MemoryStorage` that holds what its `SimDisk`
/// made durable, a key-value state machine, and (in async mode) the append and apply workers'
/// queues. The simulation decides when each piece of work happens.
final class SimNode {
  let id: UInt64
  let mode: SimMode
  var disk = SimDisk()
  /// False while crashed.
  private(set) var up = false
  private(set) var raw: RawNode!
  private(set) var storage: MemoryStorage!

  // The state machine.
  private(set) var kv: [UInt64: UInt64] = [:]
  /// The op ids applied so far: a write applied twice (a duplicated MsgProp: Raft does not
  /// deduplicate proposals) takes effect once, as with client sessions (Raft thesis, 6.3).
  private(set) var appliedOps: Set<UInt64> = []
  /// Set when Raft handed out an entry out of order (a violation the simulation reports).
  var appliedOutOfOrder: String?
  /// A node was added since the last snapshot: the next one is taken at once (the engine's
  /// policy: a new member refuses a snapshot whose configuration does not have it).
  private var nodeAdded = false
  private(set) var applied: UInt64 = 0
  private(set) var confState = ConfState()
  private var lastSnapshotIndex: UInt64 = 0
  /// Async mode: a snapshot taken by the apply side, for the append worker (the WAL's owner) to
  /// save once everything queued before it is written and its index is durable here, as the
  /// engine's `AppendWorker` does.
  private var compaction: (index: UInt64, data: [UInt8], confState: ConfState)?
  /// MsgStorageAppends queued before the compaction (it waits for them to be written).
  private var compactionBehind = 0

  /// Whether the append worker has a snapshot to save.
  var hasCompaction: Bool { compaction != nil }

  // The async workers' queues (cleared by a crash).
  /// MsgStorageAppends not yet written.
  private(set) var appendQueue: [Message] = []
  /// Written, waiting for the sync before their responses go out.
  private(set) var written: [Message] = []
  /// MsgStorageApplys not yet applied.
  private(set) var applyQueue: [Message] = []
  /// What the run loop has yet to take, in order: responses, and (async mode) the conf changes
  /// the apply worker applied, which the engine's run loop applies to Raft when it gets them.
  enum InboxItem {
    case step(Message)
    case applyConfChange(AnyConfChange, index: UInt64)
    /// The apply side took a snapshot: the run loop hands it to the append worker with the
    /// configuration it has by then (the conf changes up to `index` came through first).
    case snapshotTaken(index: UInt64, data: [UInt8])
  }
  private(set) var inbox: [InboxItem] = []

  /// Test hook (a bug on purpose): responses go out before the writes are synced.
  var skipsSync = false

  private let raftConfig: (electionTick: Int, preVote: Bool, checkQuorum: Bool, maxSizePerMsg: UInt64)
  let snapshotEvery: UInt64
  let retainEntries: UInt64

  init(
    id: UInt64, mode: SimMode, preVote: Bool, checkQuorum: Bool, maxSizePerMsg: UInt64, snapshotEvery: UInt64,
    retainEntries: UInt64
  ) {
    self.id = id
    self.mode = mode
    raftConfig = (10, preVote, checkQuorum, maxSizePerMsg)
    self.snapshotEvery = snapshotEvery
    self.retainEntries = retainEntries
  }

  /// Whether the async workers have anything to do.
  var hasWork: Bool {
    !appendQueue.isEmpty || !written.isEmpty || !applyQueue.isEmpty || !inbox.isEmpty || compaction != nil
  }

  /// Starts (or restarts) from what the disk holds; a node with an empty disk and `bootstrap`
  /// peers starts a new cluster, one with none waits to be added.
  func start(bootstrap peers: [UInt64], seed: UInt64) throws {
    precondition(!up, "SimNode.start on a running node")
    let storage = MemoryStorage()
    if !disk.snapshot.isEmpty { try storage.applySnapshot(disk.snapshot) }
    try storage.setHardState(disk.recoveredHardState)
    try storage.append(disk.entries)
    self.storage = storage
    var c = Config(id: id, electionTick: raftConfig.electionTick, heartbeatTick: 1, storage: storage)
    c.applied = disk.snapshot.metadata.index
    c.asyncStorageWrites = mode == .async
    c.preVote = raftConfig.preVote
    c.checkQuorum = raftConfig.checkQuorum
    c.maxSizePerMsg = raftConfig.maxSizePerMsg
    c.maxInflightMsgs = 16
    c.randomSeed = seed
    c.logger = SilentLogger()
    raw = try RawNode(config: c)
    (kv, appliedOps) = Self.decodeState(disk.snapshot.data)
    applied = disk.snapshot.metadata.index
    lastSnapshotIndex = applied
    confState = disk.snapshot.metadata.confState
    if disk.hardState.isEmpty && disk.entries.isEmpty && disk.snapshot.isEmpty && !peers.isEmpty {
      try raw.bootstrap(peers.map { Peer(id: $0) })
    }
    up = true
  }

  /// The machine dies: everything in memory is gone, the disk keeps what `SimDisk.crash` lets it.
  func crash(_ rng: inout SimRandom) {
    disk.crash(&rng)
    up = false
    raw = nil
    storage = nil
    appendQueue = []
    written = []
    applyQueue = []
    inbox = []
    compaction = nil
  }

  // MARK: The run loop

  /// Handles one Ready; `send` takes the messages for other nodes; `applied` sees each applied
  /// entry. Returns false when `crashMidWrite` says the machine dies between the write and its
  /// sync: the caller then crashes it.
  func handleReady(
    send: ([Message]) -> Void, applied onApply: (SimNode, Entry) -> Void, readStates: ([ReadState]) -> Void,
    crashMidWrite: () -> Bool
  ) throws -> Bool {
    let rd = raw.ready()
    if !rd.readStates.isEmpty { readStates(rd.readStates) }
    switch mode {
    case .sync:
      let hs = rd.hardState.isEmpty ? nil : rd.hardState
      let snapshot: Snapshot? = rd.hasSnapshot ? rd.snapshot : nil
      if snapshot != nil || !rd.entries.isEmpty || hs != nil {
        disk.write(SimDisk.Write(snapshot: snapshot, entries: rd.entries, hardState: hs))
        // A commit-only hard state (MustSync false) rides with the next sync, as the engine's
        // deferred WAL record does.
        if rd.mustSync || snapshot != nil {
          if crashMidWrite() { return false }  // the caller crashes the node, before the sync
          if !skipsSync { disk.sync() }
        }
        if let snapshot { try storage.applySnapshot(snapshot) }
        try storage.append(rd.entries)
        if let hs { try storage.setHardState(hs) }
      }
      if let snapshot { restore(snapshot) }
      send(rd.messages.filter { $0.to != id })
      try apply(rd.committedEntries, onApply)
      raw.advance(rd)
    case .async:
      var remote: [Message] = []
      for m in rd.messages {
        switch m.to {
        case localAppendThread: appendQueue.append(m)
        case localApplyThread: applyQueue.append(m)
        case id: inbox.append(.step(m))
        default: remote.append(m)
        }
      }
      send(remote)
    }
    return true
  }

  /// Takes the next item waiting in the inbox.
  func stepInbox() {
    switch inbox.removeFirst() {
    case .step(let m): try? raw.step(m)
    case .applyConfChange(let cc, let index):
      // As the engine's run loop: not below a snapshot Raft restored meanwhile.
      if index >= raw.raft.raftLog.firstIndex() { confState = raw.applyConfChange(cc) }
    case .snapshotTaken(let index, let data):
      if let c = compaction, c.index >= index { return }
      compaction = (index, data, confState)
      compactionBehind = appendQueue.count
    }
  }

  /// Steps a message from the network (refused ones are dropped, as the engine does).
  func step(_ m: Message) { try? raw.step(m) }

  // MARK: The append worker (async)

  private static func hardState(of m: Message) -> HardState? {
    let hs = HardState(term: m.term, vote: m.vote, commit: m.commit)
    return hs.isEmpty ? nil : hs
  }

  /// Writes the next MsgStorageAppend (not synced yet). A snapshot follows etcd's contract: the
  /// earlier writes are made durable and the apply side is flushed first, then the snapshot is
  /// persisted and the state machine restored.
  func appendNext(send: ([Message]) -> Void, applied onApply: (SimNode, Entry) -> Void) throws {
    let m = appendQueue.removeFirst()
    if compactionBehind > 0 { compactionBehind -= 1 }
    let hs = Self.hardState(of: m)
    if let snapshot = m.snapshot {
      try syncWritten(send: send)
      while !applyQueue.isEmpty { try applyNext(applied: onApply) }
      disk.write(SimDisk.Write(snapshot: snapshot, entries: m.entries, hardState: hs))
      disk.sync()
      try persisted(m)
      restore(snapshot)
      deliver(m.responses, send)
      return
    }
    let previous = disk.latestHardState
    disk.write(SimDisk.Write(snapshot: nil, entries: m.entries, hardState: hs))
    if m.entries.isEmpty, let hs, !mustSync(hs, previous, entryCount: 0), written.isEmpty {
      // Only the commit index moved and every earlier write is durable: no sync of its own.
      try persisted(m)
      deliver(m.responses, send)
    } else {
      written.append(m)
    }
  }

  /// Syncs what was written and delivers its responses in order; then saves the snapshot the
  /// apply side took, once its index is durable here.
  func syncWritten(send: ([Message]) -> Void) throws {
    if !written.isEmpty {
      if !skipsSync { disk.sync() }
      let done = written
      written = []
      for m in done {
        try persisted(m)
        deliver(m.responses, send)
      }
    }
    if let c = compaction, compactionBehind == 0, c.index <= (try storage.lastIndex()) {
      compaction = nil
      try saveSnapshot(c.index, c.data, c.confState)
    }
  }

  /// The durable message's content becomes visible to Raft.
  private func persisted(_ m: Message) throws {
    if let s = m.snapshot { try storage.applySnapshot(s) }
    try storage.append(m.entries)
    if let hs = Self.hardState(of: m) { try storage.setHardState(hs) }
  }

  private func deliver(_ responses: [Message], _ send: ([Message]) -> Void) {
    var remote: [Message] = []
    for r in responses {
      if r.to == id { inbox.append(.step(r)) } else { remote.append(r) }
    }
    if !remote.isEmpty { send(remote) }
  }

  // MARK: The apply worker (async)

  /// Applies the next MsgStorageApply and queues its responses.
  func applyNext(applied onApply: (SimNode, Entry) -> Void) throws {
    let m = applyQueue.removeFirst()
    try apply(m.entries, onApply)
    deliver(m.responses) { _ in preconditionFailure("SimNode: an apply response to another node") }
  }

  // MARK: The state machine

  private func apply(_ entries: [Entry], _ onApply: (SimNode, Entry) -> Void) throws {
    for e in entries {
      // Raft never hands out an entry twice or with a gap; the simulation checks it.
      guard e.index == applied + 1 else {
        appliedOutOfOrder = appliedOutOfOrder ?? "node \(id) was handed entry \(e.index) to apply after \(applied)"
        return
      }
      switch e.type {
      case .normal:
        if let c = SimCommand(e.data), appliedOps.insert(c.opID).inserted { kv[c.key] = c.value }
      case .confChange, .confChangeV2:
        if let cc = try e.decodedConfChange() {
          // Sync mode: the run loop applies it here. Async mode: it goes back through the
          // inbox, ahead of the apply's responses, as the engine's apply worker hands it back.
          if mode == .sync {
            confState = raw.applyConfChange(cc)
          } else {
            inbox.append(.applyConfChange(cc, index: e.index))
          }
          for c in cc.asV2.changes where c.type == .removeNode { disk.removedMembers.insert(c.nodeID) }
          if cc.asV2.changes.contains(where: { $0.type == .addNode || $0.type == .addLearnerNode }) { nodeAdded = true }
        }
      }
      applied = e.index
      onApply(self, e)
    }
    try snapshotIfDue()
  }

  /// Every `snapshotEvery` applied entries: a snapshot of the state, saved by the WAL's owner
  /// (here in sync mode, the append worker in async mode), and the log compacted `retainEntries`
  /// behind it.
  private func snapshotIfDue() throws {
    guard snapshotEvery > 0, applied > lastSnapshotIndex, nodeAdded || applied >= lastSnapshotIndex + snapshotEvery
    else { return }
    lastSnapshotIndex = applied
    nodeAdded = false
    let data = Self.encodeState(kv, appliedOps)
    switch mode {
    case .sync:
      try saveSnapshot(applied, data, confState)
    case .async:
      inbox.append(.snapshotTaken(index: applied, data: data))
    }
  }

  /// Saves a snapshot at `index` durably and compacts behind it. The WAL's records are durable
  /// in order: everything written before the snapshot's record is synced with it.
  private func saveSnapshot(_ index: UInt64, _ data: [UInt8], _ cs: ConfState) throws {
    guard index > (try storage.snapshot()).metadata.index, index <= (try storage.lastIndex()) else { return }
    let snap = try storage.createSnapshot(index, confState: cs, data: data)
    disk.sync()
    disk.saveSnapshot(snap)
    if index > retainEntries, index - retainEntries > (try storage.firstIndex()) {
      try storage.compact(index - retainEntries)
    }
  }

  private func restore(_ snapshot: Snapshot) {
    (kv, appliedOps) = Self.decodeState(snapshot.data)
    applied = snapshot.metadata.index
    lastSnapshotIndex = applied
    confState = snapshot.metadata.confState
  }

  /// The state in a snapshot: one 24-byte record per key (op id 0), then one per applied op
  /// (key and value 0), sorted.
  static func encodeState(_ kv: [UInt64: UInt64], _ ops: Set<UInt64>) -> [UInt8] {
    var out: [UInt8] = []
    for (k, v) in kv.sorted(by: { $0.key < $1.key }) { out += SimCommand(opID: 0, key: k, value: v).encoded }
    for op in ops.sorted() { out += SimCommand(opID: op, key: 0, value: 0).encoded }
    return out
  }

  static func decodeState(_ data: [UInt8]) -> ([UInt64: UInt64], Set<UInt64>) {
    var kv: [UInt64: UInt64] = [:]
    var ops: Set<UInt64> = []
    var k = 0
    while k + 24 <= data.count {
      let c = SimCommand(Array(data[k..<(k + 24)]))!
      if c.opID == 0 { kv[c.key] = c.value } else { ops.insert(c.opID) }
      k += 24
    }
    return (kv, ops)
  }
}
