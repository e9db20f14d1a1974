// swift-tools-version: 6.1
// The libFuzzer targets: build and run them with tools/fuzz (they need -sanitize=fuzzer, so they
// live in their own package, over the main package's RaftFuzz entry points).
import PackageDescription

let package = Package(
  name: "swift-raft-fuzz",
  dependencies: [.package(name: "swift-raft", path: "..")],
  targets: [
    .executableTarget(name: "FuzzWAL", dependencies: [.product(name: "RaftFuzz", package: "swift-raft")]),
    .executableTarget(name: "FuzzTransport", dependencies: [.product(name: "RaftFuzz", package: "swift-raft")]),
    .executableTarget(name: "FuzzHTTP", dependencies: [.product(name: "RaftFuzz", package: "swift-raft")]),
    .executableTarget(name: "FuzzPeer", dependencies: [.product(name: "RaftFuzz", package: "swift-raft")]),
    .executableTarget(name: "FuzzSeedWriter", dependencies: [.product(name: "RaftFuzz", package: "swift-raft")]),
  ]
)
