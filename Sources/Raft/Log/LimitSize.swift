/// The "no size limit" value for every byte budget of the log layer (etcd-raft's `noLimit`).
public let noLimit: UInt64 = .max

/// How many leading entries of `ents` fit in `maxSize` bytes of `Entry.size`.
///
/// The first entry always counts, whatever its size, so that progress is possible with a small
/// budget; each further entry counts only while the running total stays within `maxSize`.
/// An empty collection gives 0. With `noLimit` nothing is measured.
@inlinable
func limitCount<C: Collection>(_ ents: C, maxSize: UInt64) -> Int where C.Element == Entry {
  if maxSize == noLimit { return ents.count }
  // In place: iterating copies of the entries would retain and release each one's payload.
  if let n = ents.withContiguousStorageIfAvailable({ buf -> Int in
    guard !buf.isEmpty else { return 0 }
    var total = buf[0].size
    var n = 1
    while n < buf.count {
      total += buf[n].size
      if total > maxSize { break }
      n += 1
    }
    return n
  }) {
    return n
  }
  var it = ents.makeIterator()
  guard let first = it.next() else { return 0 }
  var total = first.size
  var n = 1
  while let e = it.next() {
    total += e.size
    if total > maxSize { break }
    n += 1
  }
  return n
}

/// The longest prefix of `ents` whose total `Entry.size` stays within `maxSize`, but never less
/// than one entry when `ents` is not empty (etcd-raft's `limitSize`). Returns `ents` itself,
/// without copying, when everything fits.
@inlinable
func limitSize(_ ents: [Entry], maxSize: UInt64) -> [Entry] {
  let n = limitCount(ents, maxSize: maxSize)
  return n == ents.count ? ents : Array(ents[..<n])
}
