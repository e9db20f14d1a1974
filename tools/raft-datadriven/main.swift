// raft-datadriven: replays a datadriven scenario script (etcd-raft's format) against this
// project and prints the script back with every directive's output regenerated.
//
//     raft-datadriven --suite interaction|confchange|quorum FILE [--rewrite]

import ArgumentParser
import Foundation
import RaftDataDriven

/// The script families, each with its own directive handler.
enum Suite: String, ExpressibleByArgument, CaseIterable {
  case interaction
  case confchange
  case quorum
}

@main
struct RaftDataDrivenCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "raft-datadriven",
    abstract: "Run a datadriven Raft scenario script and print it with regenerated outputs.")

  @Option(help: "The directive handler: interaction, confchange or quorum.")
  var suite: Suite

  @Argument(help: "The script to run.")
  var file: String

  @Flag(help: "Write the regenerated script back to FILE instead of printing it.")
  var rewrite = false

  func run() throws {
    let text: String
    do {
      text = try String(contentsOfFile: file, encoding: .utf8)
    } catch {
      fail("cannot read \(file): \(error.localizedDescription)")
    }
    let pieces: [ScriptPiece]
    do {
      pieces = try parseScript(text, path: file)
    } catch {
      fail("\(error)")
    }

    let result: String
    switch suite {
    case .interaction:
      let env = InteractionEnv()
      result = rewriteScript(pieces) { env.handle($0) }
    case .confchange:
      let s = ConfChangeSuite()
      result = rewriteScript(pieces) { s.run($0) }
    case .quorum:
      result = rewriteScript(pieces) { runQuorumDirective($0) }
    }

    if rewrite {
      do {
        try result.write(toFile: file, atomically: true, encoding: .utf8)
      } catch {
        fail("cannot write \(file): \(error.localizedDescription)")
      }
    } else {
      FileHandle.standardOutput.write(Data(result.utf8))
    }
  }

  /// Prints `message` to stderr and exits with status 1.
  private func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("raft-datadriven: \(message)\n".utf8))
    Foundation.exit(1)
  }
}
