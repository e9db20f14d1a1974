import Foundation
import XCTest

/// `tools/conformance` (the etcd-raft replay step of `tools/test`): a clone without
/// `../shared` skips it with one line, but under CI its absence fails the run.
final class ConformanceScriptTests: XCTestCase {
  func run(ci: Bool) throws -> (status: Int32, output: String) {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = [root.appendingPathComponent("tools/conformance").path]
    var env = ProcessInfo.processInfo.environment
    env["SWIFT_RAFT_SHARED"] = "/nonexistent-swift-raft-shared"
    env["CI"] = ci ? "true" : nil
    p.environment = env
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  func testAStandaloneCloneSkipsTheReplayWithOneLine() throws {
    let r = try run(ci: false)
    XCTAssertEqual(r.status, 0, r.output)
    XCTAssertTrue(r.output.contains("replay skipped"), r.output)
    XCTAssertEqual(r.output.split(separator: "\n").count, 1, r.output)
  }

  func testCIFailsWithoutTheScripts() throws {
    let r = try run(ci: true)
    XCTAssertEqual(r.status, 1, r.output)
    XCTAssertTrue(r.output.contains("CI must replay"), r.output)
  }
}
