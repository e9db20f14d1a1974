import ArgumentParser
import Foundation
import Raft
import RaftEngine

/// `raft-bench core`: the engine core alone, in memory, on one thread (`InMemoryEngine`): the
/// CPU cost of the engine's decisions and of Raft, without threads, disks or networks.
struct CoreBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "core",
    abstract: "The engine core alone, in memory: nanoseconds per entry from proposal to completion.",
    discussion: """
      A single voter proposes batches of --batch entries of --payload bytes (views into one \
      buffer) and runs each to its completion: the Ready, the write to an in-memory log, its \
      durable acknowledgement, the commit, the apply job, the completion. Prints the median of \
      --rounds rounds of --batches batches each. For instructions per entry, run it under \
      valgrind --tool=callgrind and divide the total by the entries it prints.
      """)

  @Option(help: "Ready handling: sync or async.")
  var readyHandling = NodeConfiguration.ReadyHandling.async
  @Option(help: "Entries per batch.")
  var batch = 256
  @Option(help: "Entry payload in bytes.")
  var payload = 128
  @Option(help: "Batches per round.")
  var batches = 2_000
  @Option(help: "Rounds (the median is printed).")
  var rounds = 5

  func validate() throws {
    guard (1...65_536).contains(batch) else { throw ValidationError("--batch must be between 1 and 65536") }
    guard (0...(1 << 20)).contains(payload) else { throw ValidationError("--payload must be between 0 and 1048576") }
    guard (1...10_000_000).contains(batches) else { throw ValidationError("--batches must be between 1 and 10000000") }
    guard (1...100).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 100") }
  }

  func run() throws {
    let engine = try InMemoryEngine(readyHandling: readyHandling)
    // Locals: the options' property wrappers cost more than the work to read in a loop.
    let (batch, payload, batches) = (self.batch, self.payload, self.batches)
    let buffer = [UInt8](repeating: 0x5A, count: batch * payload)
    var perEntry: [Double] = []
    var completed = 0
    for _ in 0..<rounds {
      let start = EngineClock.nanoseconds()
      for _ in 0..<batches {
        let payloads = (0..<batch).map { k in Payload(buffer, (k * payload)..<((k + 1) * payload)) }
        try engine.proposeBatch(payloads) { result in
          if case .failure(let e) = result { preconditionFailure("raft-bench core: a batch failed: \(e)") }
        }
        completed += batch
      }
      perEntry.append(Double(EngineClock.nanoseconds() - start) / Double(batches * batch))
    }
    print(
      "core \(readyHandling), \(batch) x \(payload) B per batch: \(fixed(median(perEntry), 1)) ns per entry "
        + "(median of \(rounds) rounds of \(batches) batches; \(completed) entries in all)")
  }
}
