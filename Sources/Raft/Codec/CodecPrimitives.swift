// The low-level pieces of the binary codec: a writer that stores into memory sized in advance, and
// a bounds-checked reader over a raw buffer. Everything in the format is built from three
// primitives: single bytes, unsigned LEB128 varints (minimal, at most 10 bytes) and byte strings
// (varint length followed by the bytes).

/// The number of bytes of `v` as a LEB128 varint (1...10).
@inline(__always)
func codecVarintLength(_ v: UInt64) -> Int {
  Int(varintSize(v))  // LEB128, the same as the protobuf varint that entry sizes count
}

/// The encoded size of a byte string: its length varint plus the bytes.
@inline(__always)
func codecBytesLength(_ b: [UInt8]) -> Int {
  codecVarintLength(UInt64(b.count)) + b.count
}

/// The encoded size of an entry's data as a byte string.
@inline(__always)
func codecBytesLength(_ b: Payload) -> Int {
  codecVarintLength(UInt64(b.count)) + b.count
}

/// Writes into memory that the caller has sized exactly with the `encodedSize` functions.
/// Every store is checked against the end, so a size miscalculation traps instead of corrupting
/// memory.
struct CodecWriter {
  /// Next byte to write.
  private(set) var cursor: UnsafeMutableRawPointer
  /// One past the last writable byte.
  let end: UnsafeMutableRawPointer

  init(start: UnsafeMutableRawPointer, count: Int) {
    cursor = start
    end = start + count
  }

  /// True once exactly the reserved number of bytes has been written.
  var isFull: Bool { cursor == end }

  @inline(__always)
  mutating func byte(_ b: UInt8) {
    precondition(cursor < end, "RaftCodec: encodedSize under-estimated the encoding")
    cursor.storeBytes(of: b, as: UInt8.self)
    cursor += 1
  }

  @inline(__always)
  mutating func varint(_ v: UInt64) {
    var v = v
    while v >= 0x80 {
      byte(UInt8(truncatingIfNeeded: v) | 0x80)
      v >>= 7
    }
    byte(UInt8(truncatingIfNeeded: v))
  }

  /// The raw bytes, without a length.
  @inline(__always)
  mutating func raw(_ b: [UInt8]) {
    b.withUnsafeBytes { src in
      precondition(end - cursor >= src.count, "RaftCodec: encodedSize under-estimated the encoding")
      if let base = src.baseAddress, src.count > 0 {
        cursor.copyMemory(from: base, byteCount: src.count)
        cursor += src.count
      }
    }
  }

  /// A byte string: varint length, then the bytes.
  @inline(__always)
  mutating func bytes(_ b: [UInt8]) {
    varint(UInt64(b.count))
    raw(b)
  }

  /// An entry's data as a byte string: varint length, then the bytes (the one copy they get on
  /// their way to the disk or the network).
  @inline(__always)
  mutating func bytes(_ b: Payload) {
    varint(UInt64(b.count))
    b.withUnsafeBytes { src in
      precondition(end - cursor >= src.count, "RaftCodec: encodedSize under-estimated the encoding")
      if let base = src.baseAddress, src.count > 0 {
        cursor.copyMemory(from: base, byteCount: src.count)
        cursor += src.count
      }
    }
  }
}

extension RaftCodec {
  /// Appends exactly `size` bytes produced by `body` to `out`, growing it geometrically.
  @inline(__always)
  static func append(into out: inout [UInt8], size: Int, _ body: (inout CodecWriter) -> Void) {
    guard size > 0 else { return }
    #if compiler(>=6.2)
      // Writes straight into the array's new uninitialized tail.
      out.append(addingCapacity: size) { span in
        span.withUnsafeMutableBufferPointer { buf, initialized in
          var w = CodecWriter(start: UnsafeMutableRawPointer(buf.baseAddress!), count: size)
          body(&w)
          precondition(w.isFull, "RaftCodec: encodedSize over-estimated the encoding")
          initialized = size
        }
      }
    #else
      // Zero-fill, then overwrite.
      let start = out.count
      out.append(contentsOf: repeatElement(0, count: size))
      out.withUnsafeMutableBytes { buf in
        var w = CodecWriter(start: buf.baseAddress! + start, count: size)
        body(&w)
        precondition(w.isFull, "RaftCodec: encodedSize over-estimated the encoding")
      }
    #endif
  }

  /// A new array of exactly `size` bytes produced by `body`.
  @inline(__always)
  static func makeBytes(size: Int, _ body: (inout CodecWriter) -> Void) -> [UInt8] {
    // (Not `init(unsafeUninitializedCapacity:)`: it is not specialized and looks up generic
    // metadata on every call.)
    var out: [UInt8] = []
    out.reserveCapacity(size)
    append(into: &out, size: size, body)
    return out
  }
}

/// A decoding error; the detail is an autoclosure so that the message is formatted here, out of
/// the hot code. (A free function: a method would make the optimizer keep the reader in memory.)
@inline(never)
func codecError(_ kind: CodecError.Kind, at offset: Int, _ detail: @autoclosure () -> String) -> CodecError {
  CodecError(kind, offset: offset, detail: detail())
}

/// The input ended inside `what`, which starts at `offset`.
@inline(never)
func codecTruncated(_ what: StaticString, at offset: Int, total: Int) -> CodecError {
  CodecError(.truncated, offset: offset, detail: "input ends inside \(what) (\(total) bytes in all)")
}

/// Reads from a raw buffer with a cursor. Every read is bounds-checked and reports problems as
/// `CodecError`s carrying the offset of the item being read.
struct CodecReader {
  let buf: UnsafeRawBufferPointer
  /// Next byte to read, an index into `buf`.
  var pos: Int
  let limits: CodecLimits
  /// The array `buf` is the memory of, when known: entries' data are then views into it
  /// (`Payload`) instead of copies. Invariant: `owner` and `buf` have the same base and count.
  let owner: [UInt8]?

  init(_ buf: UnsafeRawBufferPointer, offset: Int, limits: CodecLimits, owner: [UInt8]? = nil) {
    self.buf = buf
    self.pos = offset
    self.limits = limits
    self.owner = owner
  }

  /// Bytes left after the cursor.
  @inline(__always)
  var remaining: Int { buf.count - pos }

  // MARK: Primitives

  /// Checks that the cursor is within the buffer (callers may hand us any offset).
  @inline(__always)
  func checkStart() throws(CodecError) {
    guard pos >= 0, pos <= buf.count else {
      // Copies for the message: capturing `self` would keep the reader out of registers.
      let (at, total) = (pos, buf.count)
      throw codecError(.truncated, at: at, "offset \(at) is outside the \(total) byte input")
    }
  }

  @inline(__always)
  mutating func byte(_ what: StaticString) throws(CodecError) -> UInt8 {
    guard pos < buf.count else { throw codecTruncated(what, at: pos, total: buf.count) }
    let b = buf[pos]
    pos += 1
    return b
  }

  @inline(__always)
  mutating func varint(_ what: StaticString) throws(CodecError) -> UInt64 {
    // Fast path, inlined at every field: well-formed varints of any length. Anything unusual
    // (end of input, over-long or overflowing encodings) is diagnosed by `varintSlow`.
    var p = pos
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while p < buf.count {
      let b = buf[p]
      p += 1
      result |= UInt64(b & 0x7f) &<< shift
      if b < 0x80 {
        // A last byte of 0 is over-long; the 10th byte may only hold the top bit.
        guard shift == 0 || (b != 0 && (shift < 63 || b == 1)) else { break }
        pos = p
        return result
      }
      shift += 7
      if shift > 63 { break }
    }
    return try varintSlow(what)
  }

  /// Reads the varint at `pos` byte by byte and reports precisely what is wrong with it.
  @inline(never)
  mutating func varintSlow(_ what: StaticString) throws(CodecError) -> UInt64 {
    let start = pos
    var p = pos
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard p < buf.count else { throw codecTruncated(what, at: start, total: buf.count) }
      let b = buf[p]
      p += 1
      if shift == 63, b > 1 {
        throw codecError(.varintOverflow, at: start, "\(what): varint exceeds 64 bits")
      }
      result |= UInt64(b & 0x7f) << shift
      if b < 0x80 {
        if b == 0, p - start > 1 {
          throw codecError(.nonCanonical, at: start, "\(what): over-long varint (\(p - start) bytes)")
        }
        pos = p
        return result
      }
      shift += 7
    }
  }

  /// A length or element count, checked against a limit and against the bytes left, given the
  /// smallest possible encoded size of one element.
  @inline(__always)
  mutating func count(
    _ what: StaticString, limit: Int, limitName: StaticString, minElementSize: Int
  ) throws(CodecError) -> Int {
    let start = pos
    let v = try varint(what)
    guard v <= UInt64(max(limit, 0)) else {
      throw codecError(.limitExceeded, at: start, "\(what): \(v) is over \(limitName) = \(limit)")
    }
    let left = remaining
    guard v <= UInt64(left / minElementSize) else {
      throw codecError(
        .lengthTooLarge, at: start,
        "\(what) is \(v) (at least \(minElementSize) byte(s) each) but only \(left) bytes are left")
    }
    return Int(v)
  }

  /// `n` raw bytes (already checked to be available).
  @inline(__always)
  mutating func raw(count n: Int) -> [UInt8] {
    precondition(n >= 0 && n <= remaining)
    guard n > 0 else { return [] }
    let src = UnsafeRawBufferPointer(start: buf.baseAddress! + pos, count: n)
    pos += n
    // Measurably faster than `init(unsafeUninitializedCapacity:)`, which is not specialized and
    // looks up generic metadata on every call.
    return [UInt8](src)
  }

  /// `n` bytes (already checked to be available) as an entry's data: a view into `owner` when
  /// there is one, else a copy.
  @inline(__always)
  mutating func payload(count n: Int) -> Payload {
    precondition(n >= 0 && n <= remaining)
    guard let owner else { return Payload(raw(count: n)) }
    defer { pos += n }
    return Payload(owner, pos..<(pos + n))
  }

  /// A byte string: varint length (within `maxBytesLength`), then the bytes.
  @inline(__always)
  mutating func bytes(_ what: StaticString) throws(CodecError) -> [UInt8] {
    let n = try count(what, limit: limits.maxBytesLength, limitName: "maxBytesLength", minElementSize: 1)
    return raw(count: n)
  }

  /// A varint whose presence flag was set: zero would have been left out by the encoder.
  @inline(__always)
  mutating func nonZeroVarint(_ what: StaticString) throws(CodecError) -> UInt64 {
    let start = pos
    let v = try varint(what)
    guard v != 0 else { throw codecError(.nonCanonical, at: start, "\(what) is flagged present but zero") }
    return v
  }

  /// The format version byte of a top-level encoding.
  mutating func version() throws(CodecError) {
    let start = pos
    let v = try byte("format version")
    guard v == RaftCodec.version else {
      throw codecError(.unknownVersion, at: start, "format version \(v), this decoder reads \(RaftCodec.version)")
    }
  }

  /// Whole-buffer decodes end here: nothing may follow the value.
  func expectEnd() throws(CodecError) {
    guard pos == buf.count else {
      let extra = buf.count - pos
      throw codecError(.trailingBytes, at: pos, "\(extra) bytes follow the encoded value")
    }
  }
}
