// The human-readable descriptions of etcd-raft's `util.go` (DescribeHardState, DescribeReady,
// DescribeMessage, DescribeEntry, ...). The scenario scripts compare these strings literally,
// so every space, bracket and newline follows the reference format.

/// Renders the data of a normal entry. The default (`nil`) quotes the bytes like Go's `%q`.
public typealias EntryFormatter = ([UInt8]) -> String

/// `Term:1 Vote:2 Commit:3`; the vote is left out when it is 0.
public func describeHardState(_ hs: HardState) -> String {
  var s = "Term:\(hs.term)"
  if hs.vote != 0 { s += " Vote:\(hs.vote)" }
  s += " Commit:\(hs.commit)"
  return s
}

/// `Lead:1 State:StateLeader`.
public func describeSoftState(_ ss: SoftState) -> String {
  "Lead:\(ss.lead) State:\(ss.raftState)"
}

/// `Voters:[1 2] VotersOutgoing:[] Learners:[3] LearnersNext:[] AutoLeave:false` (ids in the
/// order the ConfState holds them).
public func describeConfState(_ cs: ConfState) -> String {
  "Voters:\(goList(cs.voters)) VotersOutgoing:\(goList(cs.votersOutgoing)) "
    + "Learners:\(goList(cs.learners)) LearnersNext:\(goList(cs.learnersNext)) AutoLeave:\(cs.autoLeave)"
}

/// `Index:4 Term:1 ConfState:...` (the data is not shown).
public func describeSnapshot(_ snap: Snapshot) -> String {
  let m = snap.metadata
  return "Index:\(m.index) Term:\(m.term) ConfState:\(describeConfState(m.confState))"
}

/// A multi-line description of everything a Ready carries, or `<empty Ready>`.
///
/// Read states are printed like Go's `%v` of `[]ReadState`: `ReadStates [{12 [102 111]}]`
/// (index, then the request context as decimal bytes).
public func describeReady(_ rd: Ready, formatter: EntryFormatter? = nil) -> String {
  var s = ""
  if let ss = rd.softState {
    s += describeSoftState(ss) + "\n"
  }
  if !rd.hardState.isEmpty {
    s += "HardState " + describeHardState(rd.hardState) + "\n"
  }
  if !rd.readStates.isEmpty {
    let states = rd.readStates.map { "{\($0.index) \(goList($0.requestCtx))}" }
    s += "ReadStates [" + states.joined(separator: " ") + "]\n"
  }
  if !rd.entries.isEmpty {
    s += "Entries:\n" + describeEntries(rd.entries, formatter: formatter)
  }
  if !rd.snapshot.isEmpty {
    s += "Snapshot " + describeSnapshot(rd.snapshot) + "\n"
  }
  if !rd.committedEntries.isEmpty {
    s += "CommittedEntries:\n" + describeEntries(rd.committedEntries, formatter: formatter)
  }
  if !rd.messages.isEmpty {
    s += "Messages:\n"
    for m in rd.messages {
      s += describeMessage(m, formatter: formatter) + "\n"
    }
  }
  if s.isEmpty { return "<empty Ready>" }
  return "Ready MustSync=\(rd.mustSync):\n" + s
}

/// A one-line description of a message (several lines when it carries more than one entry, a
/// snapshot or responses; nested responses are indented by two more spaces per level).
public func describeMessage(_ m: Message, formatter: EntryFormatter? = nil) -> String {
  var s = ""
  appendMessage(&s, m, indent: "", formatter: formatter)
  return s
}

private func appendMessage(_ s: inout String, _ m: Message, indent: String, formatter: EntryFormatter?) {
  s += "\(indent)\(describeTarget(m.from))->\(describeTarget(m.to)) \(m.type) "
  s += "Term:\(m.term) Log:\(m.logTerm)/\(m.index)"
  if m.reject { s += " Rejected (Hint: \(m.rejectHint))" }
  if m.commit != 0 { s += " Commit:\(m.commit)" }
  if m.vote != 0 { s += " Vote:\(m.vote)" }
  if m.entries.count == 1 {
    s += " Entries:[" + describeEntry(m.entries[0], formatter: formatter) + "]"
  } else if m.entries.count > 1 {
    s += " Entries:["
    for e in m.entries {
      s += "\n\(indent)  " + describeEntry(e, formatter: formatter)
    }
    s += "\n\(indent)]"
  }
  if let snap = m.snapshot, !snap.isEmpty {
    s += "\n\(indent)  Snapshot: " + describeSnapshot(snap)
  }
  if !m.responses.isEmpty {
    s += " Responses:["
    for r in m.responses {
      s += "\n"
      appendMessage(&s, r, indent: indent + "  ", formatter: formatter)
    }
    s += "\n\(indent)]"
  }
}

/// A message endpoint: the node id in hex, `None` for 0, or the local storage threads.
func describeTarget(_ id: UInt64) -> String {
  switch id {
  case noNode: return "None"
  case localAppendThread: return "AppendThread"
  case localApplyThread: return "ApplyThread"
  default: return String(id, radix: 16)
  }
}

/// `term/index Type payload`: the payload is the formatted data of a normal entry, or the compact
/// notation (`v2 l3 r4`) of a conf change; nothing (not even the space) when it is empty.
public func describeEntry(_ e: Entry, formatter: EntryFormatter? = nil) -> String {
  var payload: String
  switch e.type {
  case .normal:
    payload = formatter?(e.data.bytes) ?? goQuote(e.data.bytes)
  case .confChange:
    do {
      payload = ConfChangeSingle.describe(AnyConfChange.v1(try ConfChange(decoding: e.data.bytes)).asV2.changes)
    } catch {
      payload = "\(error)"
    }
  case .confChangeV2:
    do {
      payload = ConfChangeSingle.describe(try ConfChangeV2(decoding: e.data.bytes).changes)
    } catch {
      payload = "\(error)"
    }
  }
  if !payload.isEmpty { payload = " " + payload }
  return "\(e.term)/\(e.index) \(e.type)\(payload)"
}

/// One `describeEntry` line per entry, each ending with a newline.
public func describeEntries(_ entries: [Entry], formatter: EntryFormatter? = nil) -> String {
  var s = ""
  for e in entries {
    s += describeEntry(e, formatter: formatter) + "\n"
  }
  return s
}

/// Go's `%v` of an integer slice: `[1 2 3]`, `[]` when empty.
private func goList<T: BinaryInteger>(_ values: [T]) -> String {
  "[" + values.map { String($0) }.joined(separator: " ") + "]"
}
