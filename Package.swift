// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [
  .swiftLanguageMode(.v6)
]

let package = Package(
  name: "swift-raft",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "Raft", targets: ["Raft"]),
    .library(name: "RaftWAL", targets: ["RaftWAL"]),
    .library(name: "RaftEngine", targets: ["RaftEngine"]),
    .executable(name: "raft-datadriven", targets: ["raft-datadriven"]),
    .executable(name: "wal-dump", targets: ["wal-dump"]),
    .executable(name: "raft-bench", targets: ["raft-bench"]),
    .library(name: "RaftTransport", targets: ["RaftTransport"]),
    .library(name: "RaftKV", targets: ["RaftKV"]),
    .library(name: "RaftFuzz", targets: ["RaftFuzz"]),
    .executable(name: "raftkv", targets: ["raftkv"]),
    .executable(name: "raft-sim", targets: ["raft-sim"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
    .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    // `swift package generate-documentation` (the DocC catalogs); no code of it is linked.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
  ],
  targets: [
    .target(name: "Raft", swiftSettings: strict),
    .systemLibrary(name: "CLibURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
    .target(name: "RaftWAL", dependencies: ["Raft", "CLibURing"], swiftSettings: strict),
    .target(
      name: "RaftEngine",
      dependencies: [
        "Raft", "RaftWAL", .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "DequeModule", package: "swift-collections"),
      ],
      swiftSettings: strict),
    .testTarget(
      name: "RaftEngineTests",
      dependencies: ["RaftEngine", "RaftTestSupport", .product(name: "MetricsTestKit", package: "swift-metrics")],
      swiftSettings: strict),
    .executableTarget(
      name: "wal-dump",
      dependencies: ["RaftWAL", .product(name: "ArgumentParser", package: "swift-argument-parser")],
      path: "tools/wal-dump",
      swiftSettings: strict),
    .target(
      name: "RaftEngineOptions",
      dependencies: ["RaftEngine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
      swiftSettings: strict),
    .target(
      name: "RaftTransport",
      dependencies: [
        "Raft", "RaftEngine", .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "NIOTLS", package: "swift-nio"),
      ],
      swiftSettings: strict),
    .testTarget(
      name: "RaftTransportTests",
      dependencies: ["RaftTransport", "RaftTestSupport", .product(name: "NIOSSL", package: "swift-nio-ssl")],
      swiftSettings: strict),
    .target(
      name: "RaftKV",
      dependencies: [
        "Raft", "RaftEngine", "RaftTransport", .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
      ],
      swiftSettings: strict),
    .target(
      name: "RaftFuzz",
      dependencies: [
        "Raft", "RaftWAL", "RaftTransport", "RaftKV", "RaftSim", .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ],
      swiftSettings: strict),
    .testTarget(name: "RaftFuzzTests", dependencies: ["RaftFuzz"], swiftSettings: strict),
    .executableTarget(
      name: "raftkv",
      dependencies: [
        "RaftKV", "RaftEngineOptions", "RaftWAL", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      path: "tools/raftkv",
      swiftSettings: strict),
    .testTarget(name: "RaftKVTests", dependencies: ["Raft", "RaftKV", "RaftTestSupport", "raftkv"], swiftSettings: strict),
    .executableTarget(
      name: "raft-bench",
      dependencies: [
        "RaftWAL", "RaftEngine", "RaftEngineOptions", "RaftKV",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
        .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ],
      path: "tools/raft-bench",
      swiftSettings: strict),
    .target(name: "RaftTestSupport", dependencies: ["Raft"], path: "Tests/RaftTestSupport", swiftSettings: strict),
    .testTarget(name: "RaftBenchTests", dependencies: ["raft-bench", "raftkv", "RaftTestSupport"], swiftSettings: strict),
    .executableTarget(
      name: "wal-crash-writer", dependencies: ["RaftWAL"], path: "tools/wal-crash-writer", swiftSettings: strict),
    .testTarget(name: "RaftWALTests", dependencies: ["RaftWAL", "RaftTestSupport", "wal-crash-writer", "wal-dump"], swiftSettings: strict),
    .target(name: "RaftSim", dependencies: ["Raft", "RaftEngine", "RaftWAL"], swiftSettings: strict),
    .executableTarget(
      name: "raft-sim",
      dependencies: ["RaftSim", .product(name: "ArgumentParser", package: "swift-argument-parser")],
      path: "tools/raft-sim", swiftSettings: strict),
    .testTarget(name: "RaftSimTests", dependencies: ["RaftSim", "RaftTestSupport", "raft-sim"], swiftSettings: strict),
    .target(name: "RaftDataDriven", dependencies: ["Raft"], swiftSettings: strict),
    .executableTarget(
      name: "raft-datadriven",
      dependencies: ["RaftDataDriven", .product(name: "ArgumentParser", package: "swift-argument-parser")],
      path: "tools/raft-datadriven",
      swiftSettings: strict),
    .testTarget(
      name: "RaftTests", dependencies: ["Raft", "RaftDataDriven"], exclude: ["testdata"], swiftSettings: strict),
    .executableTarget(
      name: "RaftBenchmarks",
      dependencies: ["Raft", "RaftWAL", "RaftEngine", .product(name: "Benchmark", package: "benchmark")],
      path: "Benchmarks/RaftBenchmarks",
      swiftSettings: strict,
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
  ]
)
