import ArgumentParser
import Dispatch
import RaftEngine
import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

/// `raft-bench handoff`: the round trip of one element between two threads through two
/// `BatchQueue`s, for several spin times before parking.
struct HandoffBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "handoff",
    abstract: "Thread hand-off round trip through BatchQueue: spin, then park.",
    discussion: """
      Thread A pushes to queue 1 and waits on queue 2; thread B takes from queue 1 and pushes to \
      queue 2. With a spin time of 0 every hand-off parks and wakes a thread; with a spin time \
      longer than the round trip neither thread parks while the other is busy.
      """)

  @Option(help: "Spin times before parking, in microseconds, comma-separated.")
  var spinUs = "0,2,5,20,50"
  @Option(help: "Round trips per spin time.")
  var roundTrips = 20_000
  @Option(help: "Pause between round trips, in microseconds (0: back to back).")
  var gapUs = 0

  func validate() throws {
    guard roundTrips >= 100 else { throw ValidationError("--round-trips must be at least 100") }
    for s in spinUs.split(separator: ",") {
      guard let v = Int(s), v >= 0, v <= 10_000 else { throw ValidationError("--spin-us: bad value '\(s)'") }
    }
  }

  func run() throws {
    print("raft-bench handoff: \(roundTrips) round trips per case, gap \(gapUs) us")
    print(pad("spin us", 8) + pad("p50 us", 9) + pad("p90 us", 9) + pad("p99 us", 9) + pad("max us", 10))
    for spin in spinUs.split(separator: ",").map({ UInt64($0)! }) {
      let there = BatchQueue<UInt64>(spinNanoseconds: spin * 1000)
      let back = BatchQueue<UInt64>(spinNanoseconds: spin * 1000)
      let done = DispatchSemaphore(value: 0)
      let trips = roundTrips
      Thread.detach {
        var inbox: [UInt64] = []
        var seen = 0
        while seen < trips {
          inbox.removeAll(keepingCapacity: true)
          seen += there.take(into: &inbox, timeoutNanoseconds: 1_000_000_000)
          back.push(contentsOf: inbox)
        }
        done.signal()
      }
      var samples = Samples()
      var inbox: [UInt64] = []
      for _ in 0..<roundTrips {
        let t0 = monotonicNanoseconds()
        there.push(t0)
        inbox.removeAll(keepingCapacity: true)
        while inbox.isEmpty { back.take(into: &inbox, timeoutNanoseconds: 1_000_000_000) }
        samples.add(monotonicNanoseconds() - t0)
        if gapUs > 0 { usleep(UInt32(gapUs)) }
      }
      done.wait()
      let us = { (p: Double) in fixed(Double(samples.percentile(p)) / 1000, 1) }
      print(pad(String(spin), 8) + pad(us(50), 9) + pad(us(90), 9) + pad(us(99), 9) + pad(us(100), 10))
    }
  }
}

/// A detached OS thread (not Swift's cooperative pool).
enum Thread {
  static func detach(_ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
      let body: @Sendable () -> Void
      init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var tid = pthread_t()
    let rc = pthread_create(
      &tid, nil,
      { arg in
        let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
        b.body()
        return nil
      }, box)
    precondition(rc == 0, "pthread_create failed (\(rc))")
    pthread_detach(tid)
  }
}
