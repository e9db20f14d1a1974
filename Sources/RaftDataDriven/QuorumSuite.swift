import Raft

/// Acknowledged indexes given as a dictionary (ids absent from it are unknown).
private struct MapAckIndexer: AckedIndexer {
  var indexes: [UInt64: UInt64]

  func ackedIndex(voter id: UInt64) -> UInt64? { indexes[id] }
}

/// Runs one directive of etcd-raft's quorum scripts (`quorum/testdata/*.txt`).
///
/// - `committed cfg=(ids) [cfgj=(ids)|cfgj=zero] idx=(i,_,...)`: prints the describe table and
///   the committed index of the majority (or, with `cfgj`, joint) configuration.
/// - `vote cfg=(ids) [cfgj=...] votes=(y,n,_,...)`: prints the vote result.
///
/// The values of `idx` / `votes` are assigned to the voters of `cfg` then `cfgj` in order of
/// appearance, each voter once; `_` means "no information". As in etcd's harness, the result is
/// also computed in ways that must agree (an independent algorithm, joining with the empty and
/// with the same configuration, swapping the halves, lowering indexes that cannot matter), and
/// any disagreement is printed.
public func runQuorumDirective(_ d: TestData) -> String {
  var joint = false
  var ids: [UInt64] = []
  var idsj: [UInt64] = []
  var idxs: [UInt64] = []
  var votes: [UInt64] = []  // 0 = no vote, 1 = rejected, 2 = granted

  for arg in d.cmdArgs {
    for val in arg.vals {
      switch arg.key {
      case "cfg":
        guard let n = UInt64(val) else { return "error: invalid id \(val)\n" }
        ids.append(n)
      case "cfgj":
        joint = true
        if val == "zero" {
          if arg.vals.count != 1 { return "error: cannot mix 'zero' into configuration\n" }
        } else {
          guard let n = UInt64(val) else { return "error: invalid id \(val)\n" }
          idsj.append(n)
        }
      case "idx":
        if val == "_" {
          idxs.append(0)
        } else {
          guard let n = UInt64(val) else { return "error: invalid index \(val)\n" }
          if n == 0 { return "error: cannot use 0 as idx\n" }
          idxs.append(n)
        }
      case "votes":
        switch val {
        case "y": votes.append(2)
        case "n": votes.append(1)
        case "_": votes.append(0)
        default: return "error: unknown vote: \(val)\n"
        }
      default:
        return "error: unknown arg \(arg.key)\n"
      }
    }
  }

  let c = MajorityConfig(ids)
  let cj = MajorityConfig(idsj)

  // Assigns input values to the voters in order of first appearance; zeros stand for "_".
  func makeLookuper(_ input: [UInt64]) -> MapAckIndexer {
    var l: [UInt64: UInt64] = [:]
    var p = 0
    for id in ids + idsj where l[id] == nil && p < input.count {
      l[id] = input[p]
      p += 1
    }
    return MapAckIndexer(indexes: l.filter { $0.value != 0 })
  }

  let input = d.cmd == "vote" ? votes : idxs
  let voters = JointConfig(incoming: c, outgoing: cj).ids
  if voters.count != input.count {
    let vs = voters.sorted().map { "\($0):{}" }.joined(separator: " ")
    let ins = input.map { String($0) }.joined(separator: " ")
    return "error: mismatched input (explicit or _) for voters map[\(vs)]: [\(ins)]"
  }

  var out = ""
  switch d.cmd {
  case "committed":
    let l = makeLookuper(idxs)
    if !joint {
      let idx = c.committedIndex(l)
      out += c.describe(l)
      let alt = alternativeMajorityCommittedIndex(c, l)
      if alt != idx { out += "\(describeQuorumIndex(alt)) <-- via alternative computation\n" }
      let zeroJoint = JointConfig(incoming: c).committedIndex(l)
      if zeroJoint != idx { out += "\(describeQuorumIndex(zeroJoint)) <-- via zero-joint quorum\n" }
      let selfJoint = JointConfig(incoming: c, outgoing: c).committedIndex(l)
      if selfJoint != idx { out += "\(describeQuorumIndex(selfJoint)) <-- via self-joint quorum\n" }
      // Lowering an index that is already below the committed index must not change it.
      func overlay(_ id: UInt64, _ value: UInt64) -> MapAckIndexer {
        var ll: [UInt64: UInt64] = [:]
        for iid in c.ids {
          if iid == id {
            ll[iid] = value
          } else if let v = l.ackedIndex(voter: iid) {
            ll[iid] = v
          }
        }
        return MapAckIndexer(indexes: ll)
      }
      for id in c.sorted() {
        let iidx = l.ackedIndex(voter: id) ?? 0
        guard idx > iidx && iidx > 0 else { continue }
        // etcd's harness prints these two without a trailing newline; kept for fidelity.
        let lower = c.committedIndex(overlay(id, iidx - 1))
        if lower != idx { out += "\(describeQuorumIndex(lower)) <-- overlaying \(id)->\(iidx)" }
        let zero = c.committedIndex(overlay(id, 0))
        if zero != idx { out += "\(describeQuorumIndex(zero)) <-- overlaying \(id)->0" }
      }
      out += "\(describeQuorumIndex(idx))\n"
    } else {
      let cc = JointConfig(incoming: c, outgoing: cj)
      out += cc.describe(l)
      let idx = cc.committedIndex(l)
      let swapped = JointConfig(incoming: cj, outgoing: c).committedIndex(l)
      if swapped != idx { out += "\(describeQuorumIndex(swapped)) <-- via symmetry\n" }
      out += "\(describeQuorumIndex(idx))\n"
    }
  case "vote":
    let ll = makeLookuper(votes)
    var l: [UInt64: Bool] = [:]
    for (id, v) in ll.indexes { l[id] = v != 1 }
    if !joint {
      out += "\(c.voteResult(l))\n"
    } else {
      let r = JointConfig(incoming: c, outgoing: cj).voteResult(l)
      let swapped = JointConfig(incoming: cj, outgoing: c).voteResult(l)
      if swapped != r { out += "\(swapped) <-- via symmetry\n" }
      out += "\(r)\n"
    }
  default:
    return "error: unknown command: \(d.cmd)\n"
  }
  return out
}

/// The committed index computed differently from `MajorityConfig.committedIndex`: for each
/// acknowledged index, count the voters at or above it, and take the highest index a majority
/// has reached.
private func alternativeMajorityCommittedIndex(_ c: MajorityConfig, _ l: some AckedIndexer) -> UInt64 {
  if c.isEmpty { return UInt64.max }
  let acked = c.ids.compactMap { l.ackedIndex(voter: $0) }
  let quorum = c.count / 2 + 1
  var best: UInt64 = 0
  for candidate in Set(acked) where acked.filter({ $0 >= candidate }).count >= quorum {
    best = max(best, candidate)
  }
  return best
}
