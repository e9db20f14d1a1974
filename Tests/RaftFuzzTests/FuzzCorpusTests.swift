import Foundation
import RaftFuzz
import XCTest

/// Every decoder of untrusted bytes, fed its fuzz corpus (the cases the fuzzers kept, found ones
/// included) and seeded random mutations of well-formed inputs: none may trap or hang.
final class FuzzCorpusTests: XCTestCase {
  /// `Fuzz/Corpus/TARGET` in the package.
  func corpus(_ target: String) throws -> [[UInt8]] {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let dir = root.appendingPathComponent("Fuzz/Corpus/\(target)")
    let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    return try names.map { [UInt8](try Data(contentsOf: dir.appendingPathComponent($0))) }
  }

  func testTheCorpusOfEveryTargetReplaysCleanly() throws {
    for (target, run) in FuzzTargets.all.sorted(by: { $0.key < $1.key }) {
      let inputs = try corpus(target)
      XCTAssertGreaterThan(inputs.count, 0, "no corpus for \(target)")
      for input in inputs + FuzzSeeds.make(target) { run(input) }
    }
  }

  func testSeededMutationsOfWellFormedInputs() {
    for (target, run) in FuzzTargets.all.sorted(by: { $0.key < $1.key }) {
      var rng = SystemRandomNumberGenerator()
      var seed = UInt64.random(in: 0...UInt64.max, using: &rng) | 1
      func next() -> UInt64 {
        seed ^= seed << 13
        seed ^= seed >> 7
        seed ^= seed << 17
        return seed
      }
      let seeds = FuzzSeeds.make(target)
      // Printed first: a trap ends the process, and this line says how to replay it.
      // A hostile-peer input runs a whole simulated cluster: fewer of them.
      let mutations = target == "peer" ? 40 : 1_500
      print("\(target): \(mutations) mutations from xorshift seed \(seed)")
      for _ in 0..<mutations {
        var input = seeds[Int(next() % UInt64(seeds.count))]
        for _ in 0..<(1 + next() % 4) {
          guard !input.isEmpty else { break }
          let at = Int(next() % UInt64(input.count))
          switch next() % 4 {
          case 0: input[at] ^= UInt8(truncatingIfNeeded: 1 << (next() % 8))
          case 1: input[at] = UInt8(truncatingIfNeeded: next())
          case 2: input = Array(input.prefix(at))
          default: input.insert(UInt8(truncatingIfNeeded: next()), at: at)
          }
        }
        run(input)
      }
    }
  }
}
