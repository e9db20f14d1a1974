import ArgumentParser

/// The write-path benchmark suite.
@main
struct RaftBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "raft-bench",
    abstract: "swift-raft write-path benchmarks.",
    subcommands: [WALBench.self, HandoffBench.self, EngineBench.self])
}
