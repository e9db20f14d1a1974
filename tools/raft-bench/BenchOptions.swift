import ArgumentParser
import RaftEngine

/// `sync`, `async` or `both`.
enum ReadyHandlingChoice: String, ExpressibleByArgument, CaseIterable {
  case sync, async, both

  var modes: [NodeConfiguration.ReadyHandling] {
    switch self {
    case .sync: [.sync]
    case .async: [.async]
    case .both: [.sync, .async]
    }
  }
}

/// A comma-separated list of positive integers (`--nodes 1,3`).
struct IntList: ExpressibleByArgument, CustomStringConvertible {
  var values: [Int]

  init(_ values: [Int]) { self.values = values }

  init?(argument: String) {
    var values: [Int] = []
    for part in argument.split(separator: ",", omittingEmptySubsequences: false) {
      guard let v = Int(part.trimmingPrefix(" ")), v > 0 else { return nil }
      values.append(v)
    }
    guard !values.isEmpty else { return nil }
    self.values = values
  }

  var description: String { values.map(String.init).joined(separator: ",") }
}
