/// One pending ReadIndex request of a leader in `ReadOnlyOption.safe` mode.
final class ReadIndexStatus {
  let request: Message
  /// The commit index when the request arrived: what the read may observe once confirmed.
  let index: UInt64
  /// Voters that acknowledged a heartbeat carrying this request's context.
  var acks: [UInt64: Bool] = [:]

  init(request: Message, index: UInt64) {
    self.request = request
    self.index = index
  }
}

/// The ReadIndex requests a leader is confirming (etcd-raft's `readOnly`). Requests are keyed by
/// their context; the queue keeps arrival order so that one quorum acknowledgement also confirms
/// every earlier request.
struct ReadOnly {
  let option: ReadOnlyOption
  private(set) var pending: [[UInt8]: ReadIndexStatus] = [:]
  /// Contexts in arrival order. Invariant: exactly the keys of `pending`.
  private(set) var queue: [[UInt8]] = []

  init(option: ReadOnlyOption) { self.option = option }

  /// Records a request read at `index`; a repeated context is ignored.
  mutating func addRequest(index: UInt64, _ m: Message) {
    let ctx = m.entries[0].data.bytes
    if pending[ctx] != nil { return }
    pending[ctx] = ReadIndexStatus(request: m, index: index)
    queue.append(ctx)
  }

  /// Notes that `id` acknowledged the heartbeat carrying `context`; returns the acks so far, or
  /// nil when no request has that context.
  mutating func receiveAck(from id: UInt64, context: [UInt8]) -> [UInt64: Bool]? {
    guard let rs = pending[context] else { return nil }
    rs.acks[id] = true
    return rs.acks
  }

  /// Removes and returns every request up to and including the one whose context the
  /// acknowledged message carries (empty when it is unknown).
  mutating func advance(_ m: Message) -> [ReadIndexStatus] {
    guard let position = queue.firstIndex(of: m.context) else { return [] }
    var out: [ReadIndexStatus] = []
    out.reserveCapacity(position + 1)
    for ctx in queue[...position] {
      guard let rs = pending.removeValue(forKey: ctx) else {
        preconditionFailure("read index queue and pending map disagree")
      }
      out.append(rs)
    }
    queue.removeFirst(position + 1)
    return out
  }

  /// The context of the latest pending request, if any.
  var lastPendingRequestContext: [UInt8]? { queue.last }
}
