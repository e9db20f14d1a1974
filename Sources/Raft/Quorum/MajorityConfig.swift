/// A set of voters that decides by simple majority (etcd-raft's `quorum.MajorityConfig`).
///
/// The empty configuration is a neutral element for joint quorums: it commits every index and
/// wins every vote, so that a joint configuration with one empty half behaves like its other half.
public struct MajorityConfig: Sendable, Equatable, CustomStringConvertible {
  /// The voters.
  public var ids: Set<UInt64>

  /// A configuration with the given voters (duplicates are ignored).
  public init(_ ids: some Sequence<UInt64> = [UInt64]()) {
    self.ids = Set(ids)
  }

  /// The number of voters.
  public var count: Int { ids.count }

  /// True when there are no voters.
  public var isEmpty: Bool { ids.isEmpty }

  /// Whether `id` is one of the voters.
  public func contains(_ id: UInt64) -> Bool { ids.contains(id) }

  /// The voters in ascending order.
  public func sorted() -> [UInt64] { ids.sorted() }

  /// The voters, sorted and space separated in parentheses: `(1 2 3)`, or `()` when empty.
  public var description: String {
    "(" + sorted().map { String($0) }.joined(separator: " ") + ")"
  }

  /// The highest index acknowledged by a majority of the voters. Voters the indexer knows
  /// nothing about count as having acknowledged index 0. The empty configuration returns
  /// `UInt64.max` so that it never holds back the other half of a joint configuration.
  public func committedIndex(_ l: some AckedIndexer) -> UInt64 {
    let n = ids.count
    if n == 0 { return UInt64.max }
    // Sort the acknowledged indexes in a scratch buffer (on the stack for usual cluster sizes);
    // the value a majority has reached is the one `n/2 + 1` places from the top.
    return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { scratch in
      var buf = scratch
      var i = 0
      for id in ids {
        buf.initializeElement(at: i, to: l.ackedIndex(voter: id) ?? 0)
        i += 1
      }
      buf.sort()
      let result = buf[n - (n / 2 + 1)]
      _ = buf.deinitialize()
      return result
    }
  }

  /// Counts `votes` (true = granted) of the voters; votes of non-voters are ignored. The empty
  /// configuration wins by convention.
  public func voteResult(_ votes: [UInt64: Bool]) -> VoteResult {
    if ids.isEmpty { return .won }
    var granted = 0
    var missing = 0
    for id in ids {
      guard let v = votes[id] else {
        missing += 1
        continue
      }
      if v { granted += 1 }
    }
    let quorum = ids.count / 2 + 1
    if granted >= quorum { return .won }
    if granted + missing >= quorum { return .pending }
    return .lost
  }

  /// A multi-line table of the voters' acknowledged indexes, one row per voter in id order,
  /// with a bar whose length is the rank of the voter's index (equal indexes, equal bars) and `?`
  /// for voters without a known index. This is the format of etcd's `MajorityConfig.Describe`.
  public func describe(_ l: some AckedIndexer) -> String {
    if ids.isEmpty { return "<empty majority quorum>" }
    let n = ids.count
    var rows = ids.map { id -> DescribeRow in
      let acked = l.ackedIndex(voter: id)
      return DescribeRow(id: id, index: acked ?? 0, known: acked != nil, bar: 0)
    }
    rows.sort { ($0.index, $0.id) < ($1.index, $1.id) }
    // The bar of a row is its rank among the sorted indexes; equal indexes share a bar.
    for i in rows.indices.dropFirst() {
      rows[i].bar = rows[i - 1].index < rows[i].index ? i : rows[i - 1].bar
    }
    rows.sort { $0.id < $1.id }

    var out = String(repeating: " ", count: n) + "    idx\n"
    for row in rows {
      if row.known {
        out += String(repeating: "x", count: row.bar) + ">" + String(repeating: " ", count: n - row.bar)
      } else {
        out += "?" + String(repeating: " ", count: n)
      }
      let idx = String(row.index)
      out += " " + String(repeating: " ", count: max(0, 5 - idx.count)) + idx + "    (id=\(row.id))\n"
    }
    return out
  }
}

/// One row of `MajorityConfig.describe`.
private struct DescribeRow {
  var id: UInt64
  var index: UInt64
  var known: Bool
  var bar: Int
}
