import Raft
import XCTest

/// The README's "Using the algorithm layer" example, kept compiling and checked: a single node
/// campaigns and becomes leader through the synchronous Ready loop.
final class ReadmeExampleTests: XCTestCase {
  func testReadmeExample() throws {
    let storage = MemoryStorage()
    try storage.applySnapshot(
      Snapshot(metadata: SnapshotMetadata(confState: ConfState(voters: [1]), index: 1, term: 1)))
    var config = Config(id: 1, storage: storage)
    config.asyncStorageWrites = false
    let node = try RawNode(config: config)
    try node.campaign()
    while node.hasReady() {
      let rd = node.ready()
      if !rd.hardState.isEmpty { try storage.setHardState(rd.hardState) }
      try storage.append(rd.entries)
      // send rd.messages, apply rd.committedEntries ...
      node.advance(rd)
    }
    XCTAssertEqual(node.basicStatus().softState.raftState, .leader)
    XCTAssertEqual(try storage.lastIndex(), 2, "the new leader's empty entry is persisted")
  }
}
