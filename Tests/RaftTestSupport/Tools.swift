import Foundation
import Raft
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// An executable of this package built next to the test bundle (the test target depends on
/// it, so it is always built; its absence is a failure, not a skip).
public func toolPath(_ name: String) throws -> String {
  var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
  candidates.append(Bundle.main.bundleURL)
  candidates += Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
  for dir in candidates {
    let p = dir.appendingPathComponent(name).path
    if FileManager.default.isExecutableFile(atPath: p) { return p }
  }
  struct ToolMissing: Error, CustomStringConvertible { var description: String }
  throw ToolMissing(description: "\(name) was not built next to the tests (looked in \(candidates.map(\.path)))")
}

/// The release build of the package's executable `name` (`swift build -c release --product
/// NAME`), beside the debug build the tests run from: for tests whose load a debug build
/// cannot carry. Throws, saying how to build it, when it is missing.
public func releaseToolPath(_ name: String) throws -> String {
  let debug = URL(fileURLWithPath: try toolPath(name)).deletingLastPathComponent()
  let release = debug.deletingLastPathComponent().appendingPathComponent("release").appendingPathComponent(name).path
  guard FileManager.default.isExecutableFile(atPath: release) else {
    struct ReleaseToolMissing: Error, CustomStringConvertible { var description: String }
    throw ReleaseToolMissing(
      description: "\(release) is missing: this test runs the release build (swift build -c release --product "
        + "\(name); tools/test builds it)")
  }
  return release
}

/// How a tool run ended.
public struct ToolRun: Sendable {
  public var status: Int32
  public var stdout: String
  public var stderr: String
}

/// Runs the package's executable `name` with `args` to its end (killed with SIGKILL after
/// `killAfterSeconds` when given: a run that should end but hangs fails its test instead).
public func runTool(_ name: String, _ args: [String], killAfterSeconds: Double? = nil) throws -> ToolRun {
  try runTool(atPath: try toolPath(name), args, killAfterSeconds: killAfterSeconds)
}

/// Runs the executable at `path` with `args` to its end (killed after `killAfterSeconds`).
public func runTool(atPath path: String, _ args: [String], killAfterSeconds: Double? = nil) throws -> ToolRun {
  let name = URL(fileURLWithPath: path).lastPathComponent
  let p = Process()
  p.executableURL = URL(fileURLWithPath: path)
  p.arguments = args
  // Output goes to files, read once the process is gone (a pipe could fill up and block it).
  let base = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-run-\(UUID().uuidString)")
  let outURL = base.appendingPathExtension("out")
  let errURL = base.appendingPathExtension("err")
  _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
  _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
  defer {
    try? FileManager.default.removeItem(at: outURL)
    try? FileManager.default.removeItem(at: errURL)
  }
  let out = try FileHandle(forWritingTo: outURL)
  let err = try FileHandle(forWritingTo: errURL)
  p.standardOutput = out
  p.standardError = err
  let exited = DispatchSemaphore(value: 0)
  p.terminationHandler = { _ in exited.signal() }
  try p.run()
  if let seconds = killAfterSeconds, exited.wait(timeout: .now() + seconds) == .timedOut {
    kill(p.processIdentifier, SIGKILL)
  }
  p.waitUntilExit()
  try out.close()
  try err.close()
  return ToolRun(
    status: p.terminationStatus, stdout: try String(contentsOf: outURL, encoding: .utf8),
    stderr: try String(contentsOf: errURL, encoding: .utf8))
}

/// A fresh scratch directory under the temporary directory.
public func makeTestDirectory(_ prefix: String) throws -> String {
  let d = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
  return d
}

/// The seeded generator of randomized tests that replay: Raft's own.
public typealias SeededRandom = SplitMix64

extension SplitMix64 {
  /// A number in `0..<n` (n > 0).
  public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Test certificates made by `tools/make-test-certs` in `dir`: a CA, one certificate per member
/// of `members` (naming it as URI SAN `raft://member/ID`), a client's, and a rogue CA's.
public func makeTestCertificates(in dir: String, members: [UInt64]) throws {
  let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("tools/make-test-certs").path
  let p = Process()
  p.executableURL = URL(fileURLWithPath: script)
  p.arguments = [dir] + members.map(String.init)
  p.standardOutput = FileHandle.nullDevice
  try p.run()
  p.waitUntilExit()
  struct CertificatesFailed: Error, CustomStringConvertible { var description: String }
  guard p.terminationStatus == 0 else {
    throw CertificatesFailed(description: "tools/make-test-certs exited with \(p.terminationStatus)")
  }
}

/// The ports `freePort` handed out in this process: the kernel may offer a released port again,
/// and a cluster whose members got the same port cannot start.
private let portsHandedOut = Mutex<Set<Int>>([])

/// A free TCP port on loopback (bound, read, released), never one this process was given before.
public func freePort() -> Int {
  while true {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    let port = Int(UInt16(bigEndian: addr.sin_port))
    if portsHandedOut.withLock({ $0.insert(port).inserted }) { return port }
  }
}

/// Runs a system program (not one of the package's: `mount`, `umount`) to its end, its stderr
/// discarded; returns its exit status.
public func runSystemCommand(_ path: String, _ args: [String]) throws -> Int32 {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: path)
  p.arguments = args
  p.standardError = FileHandle.nullDevice
  try p.run()
  p.waitUntilExit()
  return p.terminationStatus
}
