import Dispatch
import Synchronization
import XCTest

@testable import RaftEngine

final class BatchQueueTests: XCTestCase {
  func testManyProducersLoseNothingAndKeepTheirOrder() {
    let queue = BatchQueue<(producer: Int, seq: Int)>(spinNanoseconds: 5_000)
    let producers = 4
    let perProducer = 20_000
    let group = DispatchGroup()
    for p in 0..<producers {
      DispatchQueue.global().async(group: group) {
        for i in 0..<perProducer {
          if i % 7 == 0 {
            queue.push(contentsOf: [(p, i)])
          } else {
            queue.push((p, i))
          }
        }
      }
    }
    var next = [Int](repeating: 0, count: producers)
    var received = 0
    var batch: [(producer: Int, seq: Int)] = []
    var takes = 0
    while received < producers * perProducer {
      batch.removeAll(keepingCapacity: true)
      let n = queue.take(into: &batch, timeoutNanoseconds: 1_000_000_000)
      XCTAssertEqual(n, batch.count)
      takes += 1
      for item in batch {
        XCTAssertEqual(item.seq, next[item.producer], "producer \(item.producer) out of order")
        next[item.producer] = item.seq + 1
      }
      received += n
    }
    group.wait()
    XCTAssertEqual(next, [Int](repeating: perProducer, count: producers))
    XCTAssertEqual(queue.count, 0)
    XCTAssertLessThan(takes, producers * perProducer, "elements are handed over in batches")
  }

  func testTakeTimesOutWhenNothingArrives() {
    let queue = BatchQueue<Int>(spinNanoseconds: 1_000)
    var out: [Int] = []
    let start = DispatchTime.now().uptimeNanoseconds
    XCTAssertEqual(queue.take(into: &out, timeoutNanoseconds: 20_000_000), 0)
    let waited = DispatchTime.now().uptimeNanoseconds - start
    XCTAssertGreaterThanOrEqual(waited, 20_000_000)
    XCTAssertEqual(out, [])
  }

  func testAParkedConsumerWakesForAPushAndForClose() {
    let queue = BatchQueue<Int>(spinNanoseconds: 0)
    let taken = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var got: [Int] = []
    DispatchQueue.global().async {
      var out: [Int] = []
      queue.take(into: &out, timeoutNanoseconds: 10_000_000_000)
      got = out
      taken.signal()
      var rest: [Int] = []
      // Parks again until close wakes it with nothing.
      queue.take(into: &rest, timeoutNanoseconds: 10_000_000_000)
      taken.signal()
    }
    usleep(20_000)
    queue.push(42)
    XCTAssertEqual(taken.wait(timeout: .now() + 5), .success)
    XCTAssertEqual(got, [42])
    usleep(20_000)
    queue.close()
    XCTAssertEqual(taken.wait(timeout: .now() + 5), .success, "close wakes a parked consumer")
    XCTAssertFalse(queue.push(1))
    XCTAssertEqual(queue.tryPush(1), .closed)
  }

  func testTryPushAppliesTheCapacityAndTakeAppends() {
    let queue = BatchQueue<Int>(capacity: 2, spinNanoseconds: 0)
    XCTAssertEqual(queue.tryPush(1), .enqueued)
    XCTAssertEqual(queue.tryPush(2), .enqueued)
    XCTAssertEqual(queue.tryPush(3), .full)
    XCTAssertTrue(queue.push(3), "push ignores the capacity")
    var out = [0]
    XCTAssertEqual(queue.take(into: &out, timeoutNanoseconds: 0), 3)
    XCTAssertEqual(out, [0, 1, 2, 3])
    XCTAssertEqual(queue.tryPush(4), .enqueued)
  }

  func testAnExternalWaiterIsWokenOnceAndOnlyWhenItWaits() {
    let wakes = Atomic<Int>(0)
    let queue = BatchQueue<Int>(spinNanoseconds: 0, wake: { wakes.add(1, ordering: .relaxed) })
    queue.push(1)
    XCTAssertEqual(wakes.load(ordering: .relaxed), 0, "nobody waits: no wake")
    XCTAssertFalse(queue.beginExternalWait(parks: false), "something is queued: take it first")
    var out: [Int] = []
    XCTAssertEqual(queue.takeNow(into: &out), 1)
    XCTAssertTrue(queue.beginExternalWait(parks: false))
    queue.push(2)
    queue.push(3)
    XCTAssertEqual(wakes.load(ordering: .relaxed), 1, "the first push wakes the waiter, once")
    queue.endExternalWait()
    XCTAssertEqual(queue.takeNow(into: &out), 2)
    XCTAssertEqual(out, [1, 2, 3])
    XCTAssertTrue(queue.beginExternalWait(parks: false))
    queue.close()
    XCTAssertEqual(wakes.load(ordering: .relaxed), 2, "close wakes a waiter")
    XCTAssertEqual(queue.wakeupCount, 2)
  }
}
