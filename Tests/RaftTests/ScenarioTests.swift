import Foundation
import RaftDataDriven
import XCTest

/// Replays the project's own scenario scripts (`testdata/<suite>/*.txt`, etcd-raft's datadriven
/// language) and requires every directive's output to match the script exactly, log lines
/// included. Regenerate a script after an intended change with
/// `raft-datadriven --suite SUITE --rewrite FILE`.
final class ScenarioTests: XCTestCase {
  static let testdata = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")

  func testInteractionScripts() throws { try replay(suite: "interaction") }

  func replay(suite: String) throws {
    let dir = Self.testdata.appendingPathComponent(suite)
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".txt") }.sorted()
    XCTAssertFalse(files.isEmpty, "no scripts in \(dir.path)")
    for file in files {
      let path = dir.appendingPathComponent(file).path
      let text = try String(contentsOfFile: path, encoding: .utf8)
      let pieces = try parseScript(text, path: path)
      let env = InteractionEnv()
      var mismatches = 0
      for piece in pieces {
        guard case .directive(let d) = piece else { continue }
        var got = env.handle(d)
        if got.isEmpty { got = "ok" }
        while got.hasSuffix("\n") { got.removeLast() }
        if got != d.expected {
          mismatches += 1
          XCTFail(
            "\(d.pos): \(d.header.split(separator: "\n").first ?? "")\n--- expected\n\(d.expected)\n--- got\n\(got)")
        }
      }
      XCTAssertEqual(mismatches, 0, "\(file): \(mismatches) directives differ")
    }
  }
}
