import CLibURing

/// CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected as 0x82F63B78), the checksum of every
/// WAL record and snapshot file.
///
/// Uses the SSE4.2 `crc32` instruction when the CPU has it and a slicing-by-8 table otherwise;
/// both give the same value (`CRC32C.checksum("123456789") == 0xE306_9283`).
public enum CRC32C {
  /// True when the hardware instruction is used (decided once per process).
  public static let usesHardware: Bool = swift_raft_crc32c_hardware_available() != 0

  /// The CRC-32C of `bytes`, continuing from `crc` (the checksum of the bytes before them, or 0).
  @inlinable
  public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
    return ~update(~crc, base, bytes.count)
  }

  /// The CRC-32C of `bytes`.
  public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { checksum($0, continuing: crc) }
  }

  /// Advances the raw (pre-inverted) state over `count` bytes at `base`.
  @usableFromInline
  static func update(_ state: UInt32, _ base: UnsafeRawPointer, _ count: Int) -> UInt32 {
    if usesHardware {
      return swift_raft_crc32c_hardware(state, base, count)
    }
    return software(state, base, count)
  }

  /// The table-driven form, public to the module so that tests compare it with the hardware.
  static func software(_ state: UInt32, _ base: UnsafeRawPointer, _ count: Int) -> UInt32 {
    let t = tables
    var crc = state
    var p = base
    var n = count
    return t.withUnsafeBufferPointer { t in
      while n >= 8 {
        let lo = p.loadUnaligned(as: UInt32.self).littleEndian ^ crc
        let hi = (p + 4).loadUnaligned(as: UInt32.self).littleEndian
        crc =
          t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
          ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
          ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
          ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
        p += 8
        n -= 8
      }
      while n > 0 {
        crc = t[Int((crc ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
        p += 1
        n -= 1
      }
      return crc
    }
  }

  /// Eight 256-entry tables for slicing-by-8; table 0 is the classic byte-at-a-time table.
  static let tables: [UInt32] = {
    let polynomial: UInt32 = 0x82F6_3B78
    var t = [UInt32](repeating: 0, count: 8 * 256)
    for i in 0..<256 {
      var c = UInt32(i)
      for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ polynomial : c >> 1 }
      t[i] = c
    }
    for k in 1..<8 {
      for i in 0..<256 {
        let prev = t[(k - 1) * 256 + i]
        t[k * 256 + i] = t[Int(prev & 0xFF)] ^ (prev >> 8)
      }
    }
    return t
  }()
}
