/// The kind of one membership change (etcd-raft's `raftpb.ConfChangeType`).
public enum ConfChangeType: UInt8, Sendable, CustomStringConvertible {
  case addNode = 0
  case removeNode = 1
  case updateNode = 2
  case addLearnerNode = 3

  public var description: String {
    switch self {
    case .addNode: return "ConfChangeAddNode"
    case .removeNode: return "ConfChangeRemoveNode"
    case .updateNode: return "ConfChangeUpdateNode"
    case .addLearnerNode: return "ConfChangeAddLearnerNode"
    }
  }
}

/// How a `ConfChangeV2` moves through joint consensus.
public enum ConfChangeTransition: UInt8, Sendable {
  /// Joint consensus with automatic leave when more than one change is made; a single change
  /// is applied directly.
  case auto = 0
  /// Always joint consensus, left automatically.
  case jointImplicit = 1
  /// Always joint consensus, left only by an explicit empty `ConfChangeV2`.
  case jointExplicit = 2
}

/// One change of a `ConfChangeV2`.
public struct ConfChangeSingle: Sendable, Equatable, Hashable {
  public var type: ConfChangeType
  public var nodeID: UInt64

  public init(type: ConfChangeType, nodeID: UInt64) {
    self.type = type
    self.nodeID = nodeID
  }
}

/// A single-node membership change, the original (v1) form.
public struct ConfChange: Sendable, Equatable, Hashable {
  public var id: UInt64
  public var type: ConfChangeType
  public var nodeID: UInt64
  public var context: [UInt8]

  public init(id: UInt64 = 0, type: ConfChangeType = .addNode, nodeID: UInt64 = 0, context: [UInt8] = []) {
    self.id = id
    self.type = type
    self.nodeID = nodeID
    self.context = context
  }
}

/// A membership change of one or more nodes, possibly through joint consensus.
/// The empty `ConfChangeV2` (no changes, auto transition) leaves a joint configuration.
public struct ConfChangeV2: Sendable, Equatable, Hashable {
  public var transition: ConfChangeTransition
  public var changes: [ConfChangeSingle]
  public var context: [UInt8]

  public init(transition: ConfChangeTransition = .auto, changes: [ConfChangeSingle] = [], context: [UInt8] = []) {
    self.transition = transition
    self.changes = changes
    self.context = context
  }

  /// Whether this change enters a joint configuration, and if so whether it leaves it
  /// automatically (etcd's `ConfChangeV2.EnterJoint`).
  public var enterJoint: (autoLeave: Bool, ok: Bool) {
    guard transition != .auto || changes.count > 1 else { return (false, false) }
    switch transition {
    case .auto, .jointImplicit: return (true, true)
    case .jointExplicit: return (false, true)
    }
  }

  /// True for the empty change that leaves a joint configuration (context ignored).
  public var leaveJoint: Bool { transition == .auto && changes.isEmpty }
}

/// Either form of conf change (etcd's `ConfChangeI`).
public enum AnyConfChange: Sendable, Equatable {
  case v1(ConfChange)
  case v2(ConfChangeV2)

  /// The change as a `ConfChangeV2` (a v1 change becomes a single-change v2 with its context).
  public var asV2: ConfChangeV2 {
    switch self {
    case .v1(let cc):
      return ConfChangeV2(changes: [ConfChangeSingle(type: cc.type, nodeID: cc.nodeID)], context: cc.context)
    case .v2(let cc):
      return cc
    }
  }

  /// The change as a v1 `ConfChange`, or nil for a v2 change.
  public var asV1: ConfChange? {
    if case .v1(let cc) = self { return cc }
    return nil
  }

  /// The entry type and encoded data that carry this change in the log.
  public func entryPayload() -> (EntryType, [UInt8]) {
    switch self {
    case .v1(let cc): return (.confChange, cc.encoded())
    case .v2(let cc): return (.confChangeV2, cc.encoded())
    }
  }
}

/// Errors from parsing the compact conf change notation (`v1 l2 r3 u4`).
public struct ConfChangeParseError: Error, Equatable, CustomStringConvertible {
  public var description: String
}

extension ConfChangeSingle {
  /// Parses the compact notation of the scenario scripts: `v2` adds voter 2, `l3` adds learner
  /// 3, `r4` removes 4, `u5` updates 5; tokens separated by spaces.
  public static func parse(_ text: String) throws -> [ConfChangeSingle] {
    let trimmed = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
    var out: [ConfChangeSingle] = []
    for tok in trimmed {
      guard tok.count >= 2 else { throw ConfChangeParseError(description: "unknown token \(tok)") }
      let type: ConfChangeType
      switch tok.first! {
      case "v": type = .addNode
      case "l": type = .addLearnerNode
      case "r": type = .removeNode
      case "u": type = .updateNode
      default: throw ConfChangeParseError(description: "unknown input: \(tok)")
      }
      guard let id = UInt64(tok.dropFirst()) else {
        throw ConfChangeParseError(description: "invalid node id in \(tok)")
      }
      out.append(ConfChangeSingle(type: type, nodeID: id))
    }
    return out
  }

  /// The compact notation of a list of changes (inverse of `parse`).
  public static func describe(_ changes: [ConfChangeSingle]) -> String {
    var s = ""
    for (i, cc) in changes.enumerated() {
      if i > 0 { s += " " }
      switch cc.type {
      case .addNode: s += "v"
      case .addLearnerNode: s += "l"
      case .removeNode: s += "r"
      case .updateNode: s += "u"
      }
      s += String(cc.nodeID)
    }
    return s
  }
}

extension ConfChangeTransition: CustomStringConvertible {
  /// etcd-raft's spelling (`ConfChangeTransitionAuto`, ...).
  public var description: String {
    switch self {
    case .auto: return "ConfChangeTransitionAuto"
    case .jointImplicit: return "ConfChangeTransitionJointImplicit"
    case .jointExplicit: return "ConfChangeTransitionJointExplicit"
    }
  }
}

extension ConfChange: CustomStringConvertible {
  /// `type:ConfChangeAddNode node_id:2`, the text form etcd-raft logs.
  public var description: String { "type:\(type) node_id:\(nodeID)" }
}

extension ConfChangeV2: CustomStringConvertible {
  /// `transition:ConfChangeTransitionAuto changes:{type:ConfChangeAddNode node_id:2}`, the text
  /// form etcd-raft logs.
  public var description: String {
    var s = "transition:\(transition)"
    for c in changes { s += " changes:{type:\(c.type) node_id:\(c.nodeID)}" }
    return s
  }
}

extension AnyConfChange: CustomStringConvertible {
  public var description: String {
    switch self {
    case .v1(let cc): return cc.description
    case .v2(let cc): return cc.description
    }
  }
}
