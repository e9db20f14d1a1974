import Raft

extension InteractionEnv {
  /// Runs one directive and returns its output (`ok` when it printed nothing).
  ///
  /// Directives (node arguments are ids, 1-based):
  /// - `add-nodes N [voters=(..)] [learners=(..)] [index=I] [content=S] [inflight=N]
  ///   [async-storage-writes=B] [prevote=B] [checkquorum=B] [max-committed-size-per-ready=N]
  ///   [disable-conf-change-validation=B] [read-only=safe|lease-based] [step-down-on-removal=B]
  ///   [max-size-per-msg=N] [max-uncommitted-size=N] [max-inflight-bytes=N]
  ///   [disable-proposal-forwarding=B] [election-tick=N] [heartbeat-tick=N]` (the last six are
  ///   this project's additions)
  /// - `campaign ID`, `compact ID NEW_FIRST_INDEX`, `forget-leader ID`, `propose ID DATA`,
  ///   `read-index ID [CTX]`, `report-unreachable ID PEER`, `send-snapshot FROM TO`,
  ///   `report-snapshot ID PEER [failure]` (this project's addition),
  ///   `set-randomized-election-timeout ID timeout=T`, `tick ID COUNT`, `tick-election ID`, `tick-heartbeat ID`,
  ///   `transfer-leadership from=ID to=ID`
  /// - `deliver-msgs [ID...] [type=MsgType] [drop=(ID,...)]`
  /// - `process-ready ID...`, `process-append-thread ID...`, `process-apply-thread ID...`
  /// - `stabilize [ID...] [log-level=L]`, `log-level L`, `raft-log ID`, `raft-state`, `status ID`
  /// - `propose-conf-change ID [v1=B] [transition=auto|implicit|explicit]` with the changes
  ///   (`v2 l3 r4`) as input
  ///
  /// For other directives every input line is run as one more directive. An error is printed as
  /// the output (also at log level NONE).
  public func handle(_ d: TestData) -> String {
    output.reset()
    do {
      if d.cmd == "propose-conf-change" {
        try handleProposeConfChange(d)
      } else {
        try handleMultiCommand(d)
      }
    } catch {
      if output.quiet { return "\(error)" }
      output.write("\(error)")
    }
    return output.text.isEmpty ? "ok" : output.text
  }

  private func handleMultiCommand(_ d: TestData) throws {
    try handleSingle(d.cmd, d.cmdArgs)
    for line in d.input.split(separator: "\n") where !line.isEmpty {
      let (cmd, args) = try parseCommandLine(String(line), pos: d.pos)
      do {
        try handleSingle(cmd, args)
      } catch {
        if output.quiet { throw error }
        output.write("\(error)")
      }
    }
  }

  private func handleSingle(_ cmd: String, _ args: [CmdArg]) throws {
    switch cmd {
    case "_breakpoint": return
    case "add-nodes": try handleAddNodes(args)
    case "campaign": try node(firstAsNodeIdx(args)).rawNode.campaign()
    case "compact": try handleCompact(args)
    case "deliver-msgs": try handleDeliverMsgs(args)
    case "process-ready":
      try forEachNode(args, header: "handling Ready") { try processReady($0) }
    case "process-append-thread":
      try forEachNode(args, header: "processing append thread") { try processAppendThread($0) }
    case "process-apply-thread":
      try forEachNode(args, header: "processing apply thread") { try processApplyThread($0) }
    case "log-level":
      guard let name = args.first?.key else { throw InteractionError("log-level needs a level") }
      try output.setLevel(named: name)
    case "raft-log": try raftLog(firstAsNodeIdx(args))
    case "raft-state": try handleRaftState()
    case "set-randomized-election-timeout": try handleSetRandomizedElectionTimeout(args)
    case "stabilize": try handleStabilize(args)
    case "status": try handleStatus(args)
    case "tick-election":
      let n = try node(firstAsNodeIdx(args))
      for _ in 0..<n.config.electionTick { n.rawNode.tick() }
    case "tick":
      // tick <node> <count>: ticks the node count times (etcd-raft's later `tick` command).
      guard args.count >= 2 else { throw InteractionError("tick needs a node and a count") }
      let n = try node(firstAsNodeIdx(args))
      guard let count = Int(args[1].key), count >= 0 else {
        throw InteractionError("invalid tick count \(args[1].key)")
      }
      for _ in 0..<count { n.rawNode.tick() }
    case "tick-heartbeat":
      let n = try node(firstAsNodeIdx(args))
      for _ in 0..<n.config.heartbeatTick { n.rawNode.tick() }
    case "transfer-leadership": try handleTransferLeadership(args)
    case "forget-leader":
      // Like etcd's environment, a refusal (the node is a leader, say) is not reported.
      let n = try node(firstAsNodeIdx(args))
      try? n.rawNode.forgetLeader()
    case "send-snapshot": try handleSendSnapshot(args)
    case "propose": try handlePropose(args)
    case "read-index": try handleReadIndex(args)
    case "report-unreachable": try handleReportUnreachable(args)
    case "report-snapshot": try handleReportSnapshot(args)
    default: throw InteractionError("unknown command")
    }
  }

  // MARK: Argument helpers

  /// The first argument as an integer.
  private func firstAsInt(_ args: [CmdArg]) throws -> Int {
    guard let first = args.first else { throw InteractionError("missing node argument") }
    guard let n = Int(first.key) else { throw InteractionError("invalid node argument \(first.key)") }
    return n
  }

  /// The node index named by the first argument (the id minus one).
  private func firstAsNodeIdx(_ args: [CmdArg]) throws -> Int { try firstAsInt(args) - 1 }

  /// The node indexes named by the arguments without values.
  private func nodeIdxs(_ args: [CmdArg]) throws -> [Int] {
    try args.filter { $0.vals.isEmpty }.map {
      guard let n = Int($0.key) else { throw InteractionError("invalid node argument \($0.key)") }
      return n - 1
    }
  }

  /// Runs `body` for each node argument; with more than one node, under a `> ID header` line
  /// and indented.
  private func forEachNode(_ args: [CmdArg], header: String, _ body: (Int) throws -> Void) throws {
    let idxs = try nodeIdxs(args)
    for idx in idxs {
      if idxs.count > 1 {
        output.write("> \(idx + 1) \(header)\n")
        try withIndent { try body(idx) }
      } else {
        try body(idx)
      }
    }
  }

  /// The value of `key=value`, or nil when the argument is absent.
  private func scanArg(_ args: [CmdArg], _ key: String) throws -> String? {
    guard let arg = args.first(where: { $0.key == key }) else { return nil }
    guard arg.vals.count == 1 else { throw InteractionError("\(key) needs exactly one value") }
    return arg.vals[0]
  }

  private func parseUInt64(_ s: String, _ what: String) throws -> UInt64 {
    guard let v = UInt64(s) else { throw InteractionError("invalid \(what): \(s)") }
    return v
  }

  /// Go's `strconv.ParseBool`.
  private func parseBool(_ s: String, _ what: String) throws -> Bool {
    switch s {
    case "1", "t", "T", "true", "TRUE", "True": return true
    case "0", "f", "F", "false", "FALSE", "False": return false
    default: throw InteractionError("invalid \(what): \(s)")
    }
  }

  // MARK: Handlers

  private func handleAddNodes(_ args: [CmdArg]) throws {
    let n = try firstAsInt(args)
    var stub = ConfigStub()
    var snap = Snapshot()
    for arg in args.dropFirst() {
      for val in arg.vals {
        switch arg.key {
        case "voters": snap.metadata.confState.voters.append(try parseUInt64(val, "voter"))
        case "learners": snap.metadata.confState.learners.append(try parseUInt64(val, "learner"))
        case "inflight":
          guard let v = Int(val) else { throw InteractionError("invalid inflight: \(val)") }
          stub.maxInflightMsgs = v
        case "index":
          snap.metadata.index = try parseUInt64(val, "index")
          stub.applied = snap.metadata.index
        case "content": snap.data = Array(val.utf8)
        case "async-storage-writes": stub.asyncStorageWrites = try parseBool(val, arg.key)
        case "prevote": stub.preVote = try parseBool(val, arg.key)
        case "checkquorum": stub.checkQuorum = try parseBool(val, arg.key)
        case "max-committed-size-per-ready":
          stub.maxCommittedSizePerReady = try parseUInt64(val, arg.key)
        case "disable-conf-change-validation": stub.disableConfChangeValidation = try parseBool(val, arg.key)
        case "step-down-on-removal": stub.stepDownOnRemoval = try parseBool(val, arg.key)
        case "max-size-per-msg": stub.maxSizePerMsg = try parseUInt64(val, arg.key)
        case "max-uncommitted-size": stub.maxUncommittedEntriesSize = try parseUInt64(val, arg.key)
        case "max-inflight-bytes": stub.maxInflightBytes = try parseUInt64(val, arg.key)
        case "disable-proposal-forwarding": stub.disableProposalForwarding = try parseBool(val, arg.key)
        case "election-tick":
          guard let v = Int(val) else { throw InteractionError("invalid election-tick: \(val)") }
          stub.electionTick = v
        case "heartbeat-tick":
          guard let v = Int(val) else { throw InteractionError("invalid heartbeat-tick: \(val)") }
          stub.heartbeatTick = v
        case "read-only":
          switch val {
          case "safe": stub.readOnlyOption = .safe
          case "lease-based": stub.readOnlyOption = .leaseBased
          default: throw InteractionError("invalid read-only option \(goQuote(Array(val.utf8)))")
          }
        default: break
        }
      }
    }
    try addNodes(n, stub: stub, snapshot: snap)
  }

  private func handleCompact(_ args: [CmdArg]) throws {
    let idx = try firstAsNodeIdx(args)
    guard args.count > 1 else { throw InteractionError("compact needs a new first index") }
    let newFirstIndex = try parseUInt64(args[1].key, "index")
    try node(idx).storage.memory.compact(newFirstIndex)
    try raftLog(idx)
  }

  private func handleDeliverMsgs(_ args: [CmdArg]) throws {
    var type: MessageType?
    var recipients: [Recipient] = []
    for arg in args {
      if arg.vals.isEmpty {
        recipients.append(Recipient(id: try parseUInt64(arg.key, "recipient")))
      }
      for val in arg.vals {
        switch arg.key {
        case "drop":
          let id = try parseUInt64(val, "recipient")
          if recipients.contains(where: { $0.id == id }) {
            throw InteractionError("can't both deliver and drop msgs to \(id)")
          }
          recipients.append(Recipient(id: id, drop: true))
        case "type":
          guard let t = MessageType.allCases.first(where: { $0.description == val }) else {
            throw InteractionError("unknown message type \(val)")
          }
          type = t
        default: break
        }
      }
    }
    if deliverMsgs(type: type, recipients) == 0 {
      output.write("no messages\n")
    }
  }

  private func handleRaftState() throws {
    for n in nodes {
      let st = n.rawNode.status()
      let voter = st.config.voters.ids.contains(st.basic.id) ? "(Voter)" : "(Non-Voter)"
      let ss = st.basic.softState
      output.write("\(st.basic.id): \(ss.raftState) \(voter) Term:\(st.basic.hardState.term) Lead:\(ss.lead)\n")
    }
  }

  private func handleSetRandomizedElectionTimeout(_ args: [CmdArg]) throws {
    let idx = try firstAsNodeIdx(args)
    guard let s = try scanArg(args, "timeout"), let timeout = Int(s), timeout != 0 else {
      throw InteractionError("set-randomized-election-timeout needs timeout=N with N != 0")
    }
    try node(idx).rawNode.setRandomizedElectionTimeout(timeout)
  }

  private func handleStabilize(_ args: [CmdArg]) throws {
    let idxs = try nodeIdxs(args)
    let savedLevel = output.level
    defer { output.level = savedLevel }
    if let level = try scanArg(args, "log-level") {
      try output.setLevel(named: level)
    }
    try stabilize(idxs)
  }

  private func handleStatus(_ args: [CmdArg]) throws {
    let st = try node(firstAsNodeIdx(args)).rawNode.status()
    output.write(describeProgressMap(st.progress))
  }

  private func handleTransferLeadership(_ args: [CmdArg]) throws {
    guard let fromS = try scanArg(args, "from"), let toS = try scanArg(args, "to") else {
      throw InteractionError("transfer-leadership needs from=ID and to=ID")
    }
    let from = try parseUInt64(fromS, "from")
    let to = try parseUInt64(toS, "to")
    guard from != 0 && from <= UInt64(nodes.count) else { throw InteractionError(#"expected valid "from" argument"#) }
    guard to != 0 && to <= UInt64(nodes.count) else { throw InteractionError(#"expected valid "to" argument"#) }
    nodes[Int(from - 1)].rawNode.transferLeader(to: to)
  }

  private func handleSendSnapshot(_ args: [CmdArg]) throws {
    let idxs = try nodeIdxs(args)
    guard idxs.count == 2 else { throw InteractionError("send-snapshot needs exactly two nodes: FROM TO") }
    let from = try node(idxs[0])
    let snap = try from.storage.snapshot()
    let m = Message(
      type: .msgSnap, to: UInt64(idxs[1] + 1), from: UInt64(idxs[0] + 1),
      term: from.rawNode.basicStatus().hardState.term, snapshot: snap)
    messages.append(m)
    output.write(describeMessage(m))
  }

  private func handlePropose(_ args: [CmdArg]) throws {
    let idx = try firstAsNodeIdx(args)
    guard args.count == 2 && args[1].vals.isEmpty else {
      throw InteractionError("propose needs exactly one data argument without value")
    }
    try node(idx).rawNode.propose(Array(args[1].key.utf8))
  }

  /// `read-index ID [CTX]`: a ReadIndex request on the node with the request context CTX
  /// (empty when omitted). The answer shows up in a later Ready's `ReadStates`.
  private func handleReadIndex(_ args: [CmdArg]) throws {
    let idx = try firstAsNodeIdx(args)
    guard args.count <= 2 && args.dropFirst().allSatisfy({ $0.vals.isEmpty }) else {
      throw InteractionError("read-index needs a node and at most one context argument without value")
    }
    let ctx = args.count == 2 ? Array(args[1].key.utf8) : []
    try node(idx).rawNode.readIndex(ctx)
  }

  private func handleReportUnreachable(_ args: [CmdArg]) throws {
    let idxs = try nodeIdxs(args)
    guard idxs.count == 2 else {
      throw InteractionError("must specify exactly two node indexes: node on which to report, and reported node")
    }
    try node(idxs[0]).rawNode.reportUnreachable(node(idxs[1]).config.id)
  }

  private func handleReportSnapshot(_ args: [CmdArg]) throws {
    let failure = args.contains { $0.key == "failure" }
    let idxs = try nodeIdxs(args.filter { $0.key != "failure" })
    guard idxs.count == 2 else {
      throw InteractionError("must specify exactly two node indexes: node on which to report, and reported node")
    }
    try node(idxs[0]).rawNode.reportSnapshot(node(idxs[1]).config.id, status: failure ? .failure : .finish)
  }

  private func handleProposeConfChange(_ d: TestData) throws {
    let idx = try firstAsNodeIdx(d.cmdArgs)
    var v1 = false
    var transition = ConfChangeTransition.auto
    for arg in d.cmdArgs.dropFirst() {
      for val in arg.vals {
        switch arg.key {
        case "v1": v1 = try parseBool(val, "v1")
        case "transition":
          switch val {
          case "auto": transition = .auto
          case "implicit": transition = .jointImplicit
          case "explicit": transition = .jointExplicit
          default: throw InteractionError("unknown transition \(val)")
          }
        default: throw InteractionError("unknown command \(arg.key)")
        }
      }
    }
    let changes = try ConfChangeSingle.parse(d.input)
    let cc: AnyConfChange
    if v1 {
      guard changes.count == 1 && transition == .auto else {
        throw InteractionError("v1 conf change can only have one operation and no transition")
      }
      cc = .v1(ConfChange(type: changes[0].type, nodeID: changes[0].nodeID))
    } else {
      cc = .v2(ConfChangeV2(transition: transition, changes: changes))
    }
    try node(idx).rawNode.proposeConfChange(cc)
  }
}
