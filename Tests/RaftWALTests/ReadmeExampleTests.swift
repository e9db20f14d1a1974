import Raft
import RaftWAL
import XCTest

/// The WAL example of README.md, kept compiling and running.
final class WALReadmeExampleTests: XCTestCase {
  func testReadmeExample() throws {
    let directory = makeTemporaryDirectory("readme")
    defer { removeDirectory(directory) }

    // --- README ---
    var options = WALOptions()  // io_uring, fdatasync, 64 MiB segments, 8 batches in flight
    options.lingerMicroseconds = 100
    let wal = try WAL(directory: directory, options: options)
    let storage = try WALStorage(wal: wal)  // a Raft `Storage` holding what the WAL recovered
    // One MsgStorageAppend is one write; the writes queued meanwhile make one batch: one write, one fdatasync.
    let entries = [Entry(term: 1, index: try storage.lastIndex() + 1, data: Array("x".utf8))]
    let hs = HardState(term: 1, vote: 1, commit: 0)
    let seq = try wal.append(entries: entries, hardState: hs)
    try wal.submit()  // or wal.submitIfDue(nowNanoseconds:), which honours the linger time
    while try wal.poll() < seq { try wal.waitForCompletion() }
    try storage.applyDurable(entries: entries, hardState: hs)  // Raft may read them now; send the acks
    try wal.close()
    // --- end ---

    XCTAssertEqual(try storage.lastIndex(), 1)
    let again = try WAL(directory: directory, options: options)
    XCTAssertEqual(again.recovered.entries, entries)
    XCTAssertEqual(again.recovered.hardState, hs)
  }
}
