import Raft

/// Runs etcd-raft's conf change scripts (`confchange/testdata/*.txt`) against `Changer`. One
/// instance per script: the configuration carries over from one directive to the next, and the
/// last index starts at 0 and grows by one per directive (so new peers show when they were
/// added through their `next`).
///
/// Directives: `simple`, `enter-joint [autoleave=true|false]` and `leave-joint`, the first two
/// with changes in compact notation (`v1 l2 r3 u4`) as input. The output is the new
/// configuration and progress map, or the error.
public final class ConfChangeSuite {
  private let tracker = ProgressTracker(maxInflight: 10, maxInflightBytes: 0)
  private var lastIndex: UInt64 = 0

  /// A suite starting from the empty configuration.
  public init() {}

  /// Runs one directive and returns its output.
  public func run(_ d: TestData) -> String {
    defer { lastIndex += 1 }
    let ccs: [ConfChangeSingle]
    do {
      ccs = try ConfChangeSingle.parse(d.input)
    } catch {
      return "\(error)\n"
    }
    let changer = Changer(tracker: tracker, lastIndex: lastIndex)
    let result: (TrackerConfig, ProgressMap)
    do {
      switch d.cmd {
      case "simple":
        result = try changer.simple(ccs)
      case "enter-joint":
        var autoLeave = false
        if let v = d.vals("autoleave") {
          guard v.count == 1, let b = Bool(v[0]) else { return "invalid autoleave argument\n" }
          autoLeave = b
        }
        result = try changer.enterJoint(autoLeave: autoLeave, ccs)
      case "leave-joint":
        guard ccs.isEmpty else { return "this command takes no input\n" }
        result = try changer.leaveJoint()
      default:
        return "unknown command\n"
      }
    } catch {
      return "\(error)\n"
    }
    tracker.config = result.0
    tracker.progress = result.1
    return "\(tracker.config)\n\(describeProgressMap(tracker.progress))"
  }
}
