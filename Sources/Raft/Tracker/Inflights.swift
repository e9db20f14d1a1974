/// The window of append messages sent to one follower and not yet acknowledged (etcd-raft's
/// `tracker.Inflights`). Each message is remembered by the index of its last entry and its
/// payload size; the window is full when it holds `size` messages or, if `maxBytes` is not zero,
/// at least `maxBytes` bytes.
///
/// Messages must be added in increasing index order and are released from the front by
/// `freeLE`. Storage is a ring buffer that grows on demand up to `size` slots.
public final class Inflights {
  private struct Slot {
    var index: UInt64
    var bytes: UInt64
  }

  /// Position of the oldest message in `buffer`.
  @exclusivity(unchecked) private var start = 0
  /// Number of messages in the window. Invariant: `0 <= count <= size`.
  @exclusivity(unchecked) public private(set) var count = 0
  /// Total payload bytes of the messages in the window.
  @exclusivity(unchecked) public private(set) var bytes: UInt64 = 0
  /// Maximum number of messages in the window.
  public let size: Int
  /// Maximum total payload bytes in the window; 0 means unlimited.
  public let maxBytes: UInt64
  /// The ring; its length grows by doubling until it reaches `size`.
  @exclusivity(unchecked) private var buffer: ContiguousArray<Slot> = []

  /// An empty window of at most `size` messages and `maxBytes` bytes (0 = no byte limit).
  public init(size: Int, maxBytes: UInt64) {
    precondition(size > 0, "inflights size must be positive")
    self.size = size
    self.maxBytes = maxBytes
  }

  /// An independent copy with the same contents and limits.
  public func clone() -> Inflights {
    let copy = Inflights(size: size, maxBytes: maxBytes)
    copy.start = start
    copy.count = count
    copy.bytes = bytes
    copy.buffer = buffer
    return copy
  }

  /// Records a message whose last entry is `index`, with `bytes` of payload.
  /// The window must not be full.
  public func add(_ index: UInt64, bytes: UInt64) {
    precondition(!full, "cannot add into a full inflights window")
    var slot = start + count
    if slot >= size { slot -= size }
    if slot >= buffer.count { grow() }
    buffer[slot] = Slot(index: index, bytes: bytes)
    count += 1
    self.bytes += bytes
  }

  /// Doubles the ring (capped at `size`). Only called when the ring is not wrapped, i.e. all
  /// messages sit in `buffer[start..<buffer.count]` followed by free space, so a plain copy
  /// keeps the positions valid.
  private func grow() {
    let newLength = buffer.isEmpty ? 1 : min(buffer.count * 2, size)
    buffer.reserveCapacity(newLength)
    while buffer.count < newLength { buffer.append(Slot(index: 0, bytes: 0)) }
  }

  /// Releases every message whose index is `<= to` (the follower acknowledged up to `to`).
  public func freeLE(_ to: UInt64) {
    guard count > 0, to >= buffer[start].index else { return }
    var slot = start
    var freed = 0
    var freedBytes: UInt64 = 0
    while freed < count {
      let s = buffer[slot]
      if to < s.index { break }
      freedBytes += s.bytes
      freed += 1
      slot += 1
      if slot >= size { slot -= size }
    }
    count -= freed
    bytes -= freedBytes
    start = count == 0 ? 0 : slot
  }

  /// True when no more messages may be added: `size` messages, or the byte limit reached.
  public var full: Bool {
    count == size || (maxBytes != 0 && bytes >= maxBytes)
  }

  /// Empties the window.
  public func reset() {
    count = 0
    start = 0
    bytes = 0
  }
}
