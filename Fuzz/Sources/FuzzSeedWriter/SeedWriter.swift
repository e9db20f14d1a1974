import Foundation
import RaftFuzz

/// Writes each target's well-formed seed inputs into `Fuzz/Corpus/TARGET/seed-N` (tools/fuzz runs
/// it before fuzzing; built without the fuzzer flags).
@main
struct SeedWriter {
  static func main() throws {
    let root = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Corpus"
    for target in FuzzTargets.all.keys.sorted() {
      let dir = "\(root)/\(target)"
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      for (k, seed) in FuzzSeeds.make(target).enumerated() {
        try Data(seed).write(to: URL(fileURLWithPath: "\(dir)/seed-\(k)"))
      }
      print("\(target): \(FuzzSeeds.make(target).count) seeds in \(dir)")
    }
  }
}
