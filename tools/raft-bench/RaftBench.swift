import ArgumentParser

/// The write-path benchmark suite.
@main
struct RaftBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "raft-bench",
    abstract: "swift-raft write-path benchmarks: sync vs async Ready handling, batching, the disk floor.",
    subcommands: [RunBench.self, WALBench.self, HandoffBench.self, CoreBench.self, KVBench.self, LogBench.self],
    defaultSubcommand: RunBench.self)
}
