/// An entry's bytes: a view into a buffer that many entries may share (the payloads of one
/// proposal batch, the entries of one received message frame), so that handing an entry from
/// the proposal to the unstable log, to a MsgApp, to storage and to the state machine never
/// copies its bytes and allocates nothing per entry. Indexes run from 0 to `count`.
///
/// Small on purpose (one reference and two 32-bit bounds: 16 bytes), since entries are copied
/// between Raft's arrays. A payload keeps its whole buffer alive: an application that keeps a
/// few bytes of a large frame for long copies them out (`Array(payload)`).
public struct Payload: Sendable, Hashable, RandomAccessCollection, ExpressibleByArrayLiteral {
  public typealias Index = Int
  public typealias Element = UInt8

  /// The buffer the bytes live in.
  @usableFromInline
  let buffer: [UInt8]
  /// Where the bytes start in `buffer`, and how many there are.
  /// Invariant: `start + length <= buffer.count`.
  @usableFromInline
  let start: UInt32
  @usableFromInline
  let length: UInt32

  /// No bytes.
  @inlinable
  public init() {
    buffer = []
    start = 0
    length = 0
  }

  /// The whole of `bytes`, without a copy.
  @inlinable
  public init(_ bytes: [UInt8]) {
    precondition(bytes.count <= Int(UInt32.max), "Payload: more than 4 GiB")
    buffer = bytes
    start = 0
    length = UInt32(truncatingIfNeeded: bytes.count)
  }

  /// The bytes of `buffer` in `range`, without a copy.
  @inlinable
  public init(_ buffer: [UInt8], _ range: Range<Int>) {
    precondition(
      range.lowerBound >= 0 && range.upperBound <= buffer.count && buffer.count <= Int(UInt32.max),
      "Payload: range out of bounds")
    self.buffer = buffer
    start = UInt32(truncatingIfNeeded: range.lowerBound)
    length = UInt32(truncatingIfNeeded: range.count)
  }

  /// A copy of `bytes` in a buffer of its own.
  @inlinable
  public init<S: Sequence>(copying bytes: S) where S.Element == UInt8 { self.init(Array(bytes)) }

  @inlinable
  public init(arrayLiteral elements: UInt8...) { self.init(elements) }

  @inlinable public var startIndex: Int { 0 }
  @inlinable public var endIndex: Int { Int(length) }
  @inlinable public var count: Int { Int(length) }
  @inlinable public var isEmpty: Bool { length == 0 }

  @inlinable
  public subscript(position: Int) -> UInt8 {
    precondition(position >= 0 && position < Int(length), "Payload: index out of range")
    return buffer[Int(start) &+ position]
  }

  /// The bytes from `range` (payload indexes), as a payload over the same buffer.
  @inlinable
  public func payload(_ range: Range<Int>) -> Payload {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "Payload: range out of bounds")
    return Payload(buffer, (Int(start) + range.lowerBound)..<(Int(start) + range.upperBound))
  }

  /// Calls `body` with the bytes in place.
  @inlinable
  public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    let result: Result<R, E> = buffer.withUnsafeBytes { raw in
      let bytes = UnsafeRawBufferPointer(rebasing: raw[Int(start)..<(Int(start) + Int(length))])
      do throws(E) {
        return .success(try body(bytes))
      } catch {
        return .failure(error)
      }
    }
    return try result.get()
  }

  /// The bytes in place, for the standard library's bulk copies (`Array(payload)`,
  /// `append(contentsOf:)`: one `memcpy`, not a loop over the bytes).
  @inlinable
  public func withContiguousStorageIfAvailable<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R? {
    try buffer.withUnsafeBufferPointer { all in
      try body(UnsafeBufferPointer(rebasing: all[Int(start)..<(Int(start) + Int(length))]))
    }
  }

  /// The bytes as an array of their own (shared, not copied, when the payload is its whole
  /// buffer).
  @inlinable
  public var bytes: [UInt8] {
    if start == 0 && Int(length) == buffer.count { return buffer }
    return Array(buffer[Int(start)..<(Int(start) + Int(length))])
  }

  @inlinable
  public static func == (a: Payload, b: Payload) -> Bool {
    guard a.length == b.length else { return false }
    return a.withUnsafeBytes { x in b.withUnsafeBytes { y in x.elementsEqual(y) } }
  }

  @inlinable
  public func hash(into hasher: inout Hasher) {
    hasher.combine(count)
    withUnsafeBytes { hasher.combine(bytes: $0) }
  }
}

extension Payload: CustomStringConvertible, CustomDebugStringConvertible {
  public var description: String { "\(bytes)" }
  public var debugDescription: String { description }
}
