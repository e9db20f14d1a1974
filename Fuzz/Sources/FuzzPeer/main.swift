import RaftFuzz

/// libFuzzer's entry point (built with `swift build --sanitize=fuzzer`: libFuzzer has main).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  FuzzTargets.hostilePeer(Array(UnsafeBufferPointer(start: data, count: size)))
  return 0
}
