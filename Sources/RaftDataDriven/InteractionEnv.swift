import Raft

/// A test bed for the interactions of the members of a Raft group, driven by datadriven scripts
/// (a port of etcd-raft's `rafttest.InteractionEnv`). Nodes are `RawNode`s on `MemoryStorage`;
/// messages between them sit in one in-flight queue until a directive delivers or drops them,
/// and in the asynchronous storage writes mode each node's storage work waits in an append and
/// an apply queue until a directive processes it. See `handle(_:)` for the directives.
public final class InteractionEnv {
  /// One member of the group.
  final class Node {
    let rawNode: RawNode
    let storage: InteractionStorage
    let config: Config
    /// MsgStorageAppend messages waiting for the append thread, oldest first.
    var appendWork: [Message] = []
    /// MsgStorageApply messages waiting for the apply thread, oldest first.
    var applyWork: [Message] = []

    init(rawNode: RawNode, storage: InteractionStorage, config: Config) {
      self.rawNode = rawNode
      self.storage = storage
      self.config = config
    }

    var id: UInt64 { config.id }
  }

  /// The members; node `i + 1` is at index `i`.
  var nodes: [Node] = []
  /// Messages sent but neither delivered nor dropped, in sending order.
  var messages: [Message] = []
  /// The directive's output and the nodes' logger.
  let output = InteractionOutput()

  /// An environment without nodes.
  public init() {}

  /// The template of every node's configuration: no limits, short timeouts (etcd-raft's
  /// `raftConfigStub`).
  struct ConfigStub {
    var electionTick = 3
    var heartbeatTick = 1
    var maxSizePerMsg = UInt64.max
    var maxInflightMsgs = Int(Int32.max)
    var applied: UInt64 = 0
    var asyncStorageWrites = false
    var preVote = false
    var checkQuorum = false
    var maxCommittedSizePerReady: UInt64 = 0
    var disableConfChangeValidation = false
    var stepDownOnRemoval = false
    var readOnlyOption = ReadOnlyOption.safe
    // Knobs beyond etcd-raft's env (this project's scripts use them).
    var maxUncommittedEntriesSize: UInt64 = 0
    var maxInflightBytes: UInt64 = 0
    var disableProposalForwarding = false
  }

  // MARK: Output helpers

  /// Runs `body` with a fresh output buffer, then appends what it wrote to the enclosing buffer
  /// with every line indented by two spaces (also when `body` throws, before rethrowing).
  func withIndent(_ body: () throws -> Void) throws {
    let saved = output.text
    output.text = ""
    var failure: Error?
    do { try body() } catch { failure = error }
    let inner = output.text
    output.text = saved
    var lines = inner.split(separator: "\n", omittingEmptySubsequences: false)
    if inner.hasSuffix("\n") { lines.removeLast() }
    for line in lines where !inner.isEmpty {
      output.text += "  " + line + "\n"
    }
    if let failure { throw failure }
  }

  /// The node at index `idx` (node id `idx + 1`).
  func node(_ idx: Int) throws -> Node {
    guard idx >= 0 && idx < nodes.count else {
      throw InteractionError("node index \(idx) out of range [0, \(nodes.count))")
    }
    return nodes[idx]
  }

  // MARK: Nodes

  /// Adds `n` nodes with consecutive ids, each starting from `snap` (the empty snapshot for a
  /// node without state). A non-empty snapshot bootstraps the node at term 1 and must have an
  /// index above 1.
  func addNodes(_ n: Int, stub: ConfigStub, snapshot: Snapshot) throws {
    var snap = snapshot
    let bootstrap = snap != Snapshot()
    for _ in 0..<n {
      let id = UInt64(nodes.count + 1)
      let memory = MemoryStorage()
      if bootstrap {
        guard snap.metadata.index > 1 else {
          throw InteractionError("index must be specified as > 1 due to bootstrap")
        }
        snap.metadata.term = 1
        try memory.applySnapshot(snap)
        let fi = try memory.firstIndex()
        let expected = snap.metadata.index + 1
        guard fi == expected else {
          throw InteractionError("failed to establish first index \(expected); got \(fi)")
        }
      }
      let storage = InteractionStorage(memory: memory, initial: snap)
      var cfg = Config(id: id, electionTick: stub.electionTick, heartbeatTick: stub.heartbeatTick, storage: storage)
      cfg.maxSizePerMsg = stub.maxSizePerMsg
      cfg.maxInflightMsgs = stub.maxInflightMsgs
      cfg.applied = stub.applied
      cfg.asyncStorageWrites = stub.asyncStorageWrites
      cfg.preVote = stub.preVote
      cfg.checkQuorum = stub.checkQuorum
      cfg.maxCommittedSizePerReady = stub.maxCommittedSizePerReady
      cfg.disableConfChangeValidation = stub.disableConfChangeValidation
      cfg.stepDownOnRemoval = stub.stepDownOnRemoval
      cfg.readOnlyOption = stub.readOnlyOption
      cfg.maxUncommittedEntriesSize = stub.maxUncommittedEntriesSize
      cfg.maxInflightBytes = stub.maxInflightBytes
      cfg.disableProposalForwarding = stub.disableProposalForwarding
      cfg.logger = output
      // The election timeout randomisation is seeded per node so that runs repeat exactly.
      cfg.randomSeed = id
      let rn = try RawNode(config: cfg)
      nodes.append(Node(rawNode: rn, storage: storage, config: cfg))
    }
  }

  // MARK: Ready handling and the storage threads

  /// Handles one Ready of node `idx`: prints it; in synchronous mode persists and applies it and
  /// calls `advance`; in the asynchronous mode queues its storage messages on the node's append
  /// and apply threads. Messages to peers go to the in-flight queue.
  func processReady(_ idx: Int) throws {
    let n = try node(idx)
    let rd = n.rawNode.ready()
    output.write(describeReady(rd, formatter: goQuote))

    let async = n.config.asyncStorageWrites
    if !async {
      try processAppend(n, hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot)
      try processApply(n, rd.committedEntries)
    }
    for m in rd.messages {
      guard m.to == localAppendThread || m.to == localApplyThread else {
        messages.append(m)
        continue
      }
      precondition(async, "unexpected local message target in synchronous mode: \(describeMessage(m))")
      switch m.type {
      case .msgStorageAppend: n.appendWork.append(m)
      case .msgStorageApply: n.applyWork.append(m)
      default: preconditionFailure("unexpected message type \(m.type)")
      }
    }
    if !async {
      n.rawNode.advance(rd)
    }
  }

  /// Performs the oldest MsgStorageAppend of node `idx`, then releases its responses.
  func processAppendThread(_ idx: Int) throws {
    let n = try node(idx)
    guard !n.appendWork.isEmpty else {
      output.write("no append work to perform")
      return
    }
    var m = n.appendWork.removeFirst()
    let responses = m.responses
    m.responses = []
    output.write("Processing:\n" + describeMessage(m, formatter: goQuote) + "\n")
    let hs = HardState(term: m.term, vote: m.vote, commit: m.commit)
    try processAppend(n, hardState: hs, entries: m.entries, snapshot: m.snapshot ?? Snapshot())
    output.write("Responses:\n")
    for r in responses {
      output.write(describeMessage(r, formatter: goQuote) + "\n")
    }
    messages.append(contentsOf: responses)
  }

  /// Performs the oldest MsgStorageApply of node `idx`, then releases its responses.
  func processApplyThread(_ idx: Int) throws {
    let n = try node(idx)
    guard !n.applyWork.isEmpty else {
      output.write("no apply work to perform")
      return
    }
    var m = n.applyWork.removeFirst()
    let responses = m.responses
    m.responses = []
    output.write("Processing:\n" + describeMessage(m, formatter: goQuote) + "\n")
    try processApply(n, m.entries)
    output.write("Responses:\n")
    for r in responses {
      output.write(describeMessage(r, formatter: goQuote) + "\n")
    }
    messages.append(contentsOf: responses)
  }

  /// Makes the hard state, the snapshot or the entries durable in the node's storage.
  private func processAppend(_ n: Node, hardState: HardState, entries: [Entry], snapshot: Snapshot) throws {
    if !hardState.isEmpty {
      try n.storage.memory.setHardState(hardState)
    }
    if !snapshot.isEmpty {
      guard entries.isEmpty else {
        throw InteractionError("can't apply snapshot and entries at the same time")
      }
      try n.storage.memory.applySnapshot(snapshot)
      return
    }
    try n.storage.memory.append(entries)
  }

  /// Applies committed entries: conf changes go to the RawNode; every entry extends the node's
  /// state machine, an "appender" of entry data (conf change context for conf changes), whose
  /// state after each entry is recorded as a snapshot in the node's history.
  private func processApply(_ n: Node, _ entries: [Entry]) throws {
    for e in entries {
      var update: [UInt8]
      var cs: ConfState?
      if let cc = try e.decodedConfChange() {
        cs = n.rawNode.applyConfChange(cc)
        switch cc {
        case .v1(let c): update = c.context
        case .v2(let c): update = c.context
        }
      } else {
        update = e.data.bytes
      }
      let last = n.storage.history[n.storage.history.count - 1]
      let snap = Snapshot(
        data: last.data + update,
        metadata: SnapshotMetadata(confState: cs ?? last.metadata.confState, index: e.index, term: e.term))
      n.storage.history.append(snap)
    }
  }

  // MARK: Messages

  /// A destination of `deliverMsgs`: its messages are delivered, or dropped when `drop` is set.
  struct Recipient {
    var id: UInt64
    var drop = false
  }

  /// Delivers (or drops) the in-flight messages to each recipient in turn, only those of type
  /// `type` when it is given, and prints each one. Messages between a node and itself or its
  /// storage threads are never dropped. Returns how many messages were handled.
  @discardableResult
  func deliverMsgs(type: MessageType?, _ recipients: [Recipient]) -> Int {
    var handled = 0
    for r in recipients {
      let (msgs, rest) = splitMsgs(messages, to: r.id, type: type, drop: r.drop)
      messages = rest
      handled += msgs.count
      for m in msgs {
        if r.drop { output.write("dropped: ") }
        output.write(describeMessage(m, formatter: goQuote) + "\n")
        if r.drop { continue }
        let toIdx = Int(m.to) - 1
        guard toIdx >= 0 && toIdx < nodes.count else {
          output.write("node \(m.to) does not exist\n")
          continue
        }
        do {
          try nodes[toIdx].rawNode.step(m)
        } catch {
          output.write("\(error)\n")
        }
      }
    }
    return handled
  }

  /// The messages to `to` (of `type` if given) and the rest, both in their original order.
  func splitMsgs(_ msgs: [Message], to: UInt64, type: MessageType?, drop: Bool) -> ([Message], [Message]) {
    var selected: [Message] = []
    var rest: [Message] = []
    for m in msgs {
      if m.to == to && !(drop && isLocal(m)) && (type == nil || m.type == type) {
        selected.append(m)
      } else {
        rest.append(m)
      }
    }
    return (selected, rest)
  }

  /// Messages that need reliable delivery: a node to itself, or to / from its storage threads.
  private func isLocal(_ m: Message) -> Bool {
    func isThread(_ id: UInt64) -> Bool { id == localAppendThread || id == localApplyThread }
    return m.from == m.to || isThread(m.from) || isThread(m.to)
  }

  // MARK: Stabilize

  /// Handles Readys, delivers messages and runs the storage threads of the given nodes (all
  /// when empty) until none of them has anything left to do. Each round: every node with a
  /// Ready handles it, then every node receives its messages, then every append thread and
  /// every apply thread is drained.
  func stabilize(_ idxs: [Int]) throws {
    let group = try idxs.isEmpty ? nodes : idxs.map { try node($0) }
    while true {
      var done = true
      for n in group where n.rawNode.hasReady() {
        output.write("> \(n.id) handling Ready\n")
        try withIndent { try processReady(Int(n.id) - 1) }
        done = false
      }
      for n in group {
        if !splitMsgs(messages, to: n.id, type: nil, drop: false).0.isEmpty {
          output.write("> \(n.id) receiving messages\n")
          try withIndent { deliverMsgs(type: nil, [Recipient(id: n.id)]) }
          done = false
        }
      }
      for n in group where !n.appendWork.isEmpty {
        output.write("> \(n.id) processing append thread\n")
        while !n.appendWork.isEmpty {
          try withIndent { try processAppendThread(Int(n.id) - 1) }
        }
        done = false
      }
      for n in group where !n.applyWork.isEmpty {
        output.write("> \(n.id) processing apply thread\n")
        while !n.applyWork.isEmpty {
          try withIndent { try processApplyThread(Int(n.id) - 1) }
        }
        done = false
      }
      if done { return }
    }
  }

  // MARK: Inspection

  /// Prints the node's stable log (the entries in its storage).
  func raftLog(_ idx: Int) throws {
    let s = try node(idx).storage.memory
    let fi = try s.firstIndex()
    let li = try s.lastIndex()
    if li < fi {
      output.write("log is empty: first index=\(fi), last index=\(li)")
      return
    }
    let ents = try s.entries(lo: fi, hi: li + 1, maxSize: UInt64.max)
    output.write(describeEntries(ents, formatter: goQuote))
  }
}

/// A node's storage: a `MemoryStorage` whose `snapshot()` returns the latest state of the node's
/// state machine (the last snapshot of its history) rather than the snapshot the memory storage
/// last applied, so a leader sends its followers what it has applied.
final class InteractionStorage: Storage {
  let memory: MemoryStorage
  /// The state machine after the initial snapshot and after each applied entry.
  /// Invariant: never empty.
  var history: [Snapshot]

  init(memory: MemoryStorage, initial: Snapshot) {
    self.memory = memory
    self.history = [initial]
  }

  func initialState() throws -> (HardState, ConfState) { try memory.initialState() }
  func entries(lo: UInt64, hi: UInt64, maxSize: UInt64) throws -> [Entry] {
    try memory.entries(lo: lo, hi: hi, maxSize: maxSize)
  }
  func term(_ i: UInt64) throws -> UInt64 { try memory.term(i) }
  func lastIndex() throws -> UInt64 { try memory.lastIndex() }
  func firstIndex() throws -> UInt64 { try memory.firstIndex() }
  func snapshot() throws -> Snapshot { history[history.count - 1] }
}
