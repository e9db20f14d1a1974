import XCTest

@testable import RaftWAL

final class CRC32CTests: XCTestCase {
  func testKnownVectors() {
    XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    XCTAssertEqual(CRC32C.checksum([]), 0)
    XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
    XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
    XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
  }

  func testContinuingEqualsWhole() {
    let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
      let first = CRC32C.checksum(Array(bytes[..<split]))
      XCTAssertEqual(CRC32C.checksum(Array(bytes[split...]), continuing: first), CRC32C.checksum(bytes))
    }
  }

  func testSoftwareMatchesHardwareAtEveryLengthAndAlignment() throws {
    try XCTSkipUnless(CRC32C.usesHardware, "this CPU has no CRC32C instruction: only the table runs")
    var rng = SystemRandomNumberGenerator()
    let bytes = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
    bytes.withUnsafeBytes { raw in
      for start in 0..<9 {
        for length in [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 1000, 4000] {
          let p = raw.baseAddress! + start
          let hw = swiftHardware(p, length)
          let sw = ~CRC32C.software(~0, p, length)
          XCTAssertEqual(hw, sw, "start \(start) length \(length)")
        }
      }
    }
  }

  private func swiftHardware(_ p: UnsafeRawPointer, _ n: Int) -> UInt32 {
    CRC32C.checksum(UnsafeRawBufferPointer(start: p, count: n))
  }
}
