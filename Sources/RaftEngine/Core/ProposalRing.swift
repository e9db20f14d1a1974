import DequeModule
import Raft

/// The proposal batches this node appended as leader and whose outcome is not decided yet, in
/// log order: one record per batch, owned by the core's thread (no lock, no table by index).
///
/// Invariants (checked on every append):
/// - records are ordered by index and do not overlap (`first` of each is above the `last` of
///   the one before);
/// - their terms never decrease along the ring (a record appended at index i replaced every
///   record at or above i: a leader of a later term truncated the log there).
///
/// So the records a committed range decides are always at the front: those it covers, and
/// those of a lower term than its last entry (a later leader's entry is committed below them:
/// theirs can never be).
struct ProposalRing {
  struct Record {
    var first: UInt64
    var last: UInt64
    var term: UInt64
    /// A conf change proposal succeeds only if a conf change entry is committed at its index
    /// (a leader that refuses one appends an empty normal entry instead, same index and term).
    var isConfChange: Bool
    var completion: ProposalCallback
    var proposedAtNanoseconds: UInt64
  }

  private var records = Deque<Record>()

  var count: Int { records.count }
  var isEmpty: Bool { records.isEmpty }

  /// Registers a batch appended at `range` in `term`. Records at or above `range`'s first index
  /// were overwritten in the log (this node leads again, in a later term): they fail.
  mutating func append(_ r: Record, superseded: inout [ProposalOutcome]) {
    precondition(r.first <= r.last, "ProposalRing: an empty range")
    while let back = records.last, back.last >= r.first {
      precondition(back.term < r.term, "ProposalRing: index \(r.first) proposed twice in term \(r.term)")
      // This node overwrote its own entries as a later leader; another node may still hold
      // them and win an election before the overwrite is replicated: not decided.
      superseded.append(
        Self.outcome(back, .failure(.outcomeUnknown("overwritten in the log by a later term"))))
      records.removeLast()
    }
    if let back = records.last {
      precondition(back.last < r.first && back.term <= r.term, "ProposalRing: records out of order")
    }
    records.append(r)
  }

  /// Decides the records that `committed` (consecutive entries, handed out once each, in
  /// order) settles: a record succeeds once all its entries are committed with its term (and
  /// kind); it fails when an entry of its range has another term, or when a later term's
  /// entry is committed below it.
  mutating func resolve(committed: [Entry], into out: inout [ProposalOutcome]) {
    guard let lo = committed.first?.index, let hi = committed.last?.index else { return }
    let highestTerm = committed[committed.count - 1].term
    while let r = records.first {
      if r.first > hi {
        // Not reached yet: it can still commit only if no later term committed below it.
        guard r.term < highestTerm else { return }
        out.append(Self.outcome(r, .failure(.dropped)))
        records.removeFirst()
        continue
      }
      precondition(r.last >= lo, "ProposalRing: record \(r.first)...\(r.last) was skipped by the hand-outs")
      let a = committed[Int(max(r.first, lo) - lo)]
      let b = committed[Int(min(r.last, hi) - lo)]
      // Terms never decrease along a log: equal at both ends means equal in between (and, by
      // the log matching property, the same entries this node appended).
      let held = a.term == r.term && b.term == r.term && (!r.isConfChange || a.type != .normal)
      if !held {
        out.append(Self.outcome(r, .failure(.dropped)))
        records.removeFirst()
      } else if r.last <= hi {
        out.append(Self.outcome(r, .success(r.first...r.last)))
        records.removeFirst()
      } else {
        return  // its tail comes with a later hand-out
      }
    }
  }

  /// A snapshot replaced the log through `index`: the outcome of the records reaching into it
  /// is unknown here, so they fail with `.outcomeUnknown`.
  mutating func failThrough(_ index: UInt64, into out: inout [ProposalOutcome]) {
    while let r = records.first, r.first <= index {
      out.append(Self.outcome(r, .failure(.outcomeUnknown("a leader's snapshot replaced the log"))))
      records.removeFirst()
    }
  }

  /// Fails every record (the node stops, with `error`): their entries are in the log, so
  /// whether they commit is not known here (`.outcomeUnknown`).
  mutating func failAll(_ error: EngineError, into out: inout [ProposalOutcome]) {
    let unknown = EngineError.outcomeUnknown("the node stopped after appending it (\(error))")
    for r in records { out.append(Self.outcome(r, .failure(unknown))) }
    records.removeAll()
  }

  private static func outcome(_ r: Record, _ result: Result<ClosedRange<UInt64>, EngineError>) -> ProposalOutcome {
    if case .success(let range) = result {
      // A completion resolves exactly its own range.
      precondition(range == r.first...r.last, "ProposalRing: a batch answered with another range")
    }
    return ProposalOutcome(completion: r.completion, result: result, proposedAtNanoseconds: r.proposedAtNanoseconds)
  }
}
