// wal-dump DIR: lists a WAL's segments and records, the log's first and last index, the hard
// state and the snapshot, without changing anything. The last line is one JSON object:
//
//   {"segments":N,"entries":N,"first_index":N,"last_index":N,"term":N,"commit":N,"corrupt":null}
//
// where "corrupt" is "FILE:OFFSET: reason" when the WAL is corrupt (exit status 1). A torn tail
// is not corruption: it is reported, and cut when the WAL is next opened.
import ArgumentParser
import Raft
import RaftWAL

#if canImport(Glibc)
  import Glibc
#endif

@main
struct WALDump: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "wal-dump",
    abstract: "Inspect a swift-raft WAL directory without changing it.",
    discussion: "Exits 1 when the WAL is corrupt, 2 when it cannot be read.")

  @Argument(help: "The WAL directory.")
  var directory: String

  @Flag(help: "Print segments and totals only, not one line per record.")
  var summary = false

  @Option(help: "The largest record payload to accept, in bytes (as the WAL was configured).")
  var recordBytesMax = WALOptions().recordBytesMax

  func run() throws {
    var isDirectory = stat()
    guard stat(directory, &isDirectory) == 0, (isDirectory.st_mode & S_IFMT) == S_IFDIR else {
      throw ValidationError("\(directory) is not a directory")
    }
    let listRecords = !summary
    let inspection: WALInspection
    do {
      inspection = try WALInspection.scan(directory: directory, recordBytesMax: recordBytesMax) { r in
        if listRecords { print("  " + Self.describe(r)) }
      }
    } catch {
      print("wal-dump: \(error)")
      throw ExitCode(2)
    }
    for s in inspection.segments {
      let range = s.entries > 0 ? "\(s.minEntryIndex)...\(s.maxEntryIndex)" : "none"
      print(
        "segment \(s.name): sequence \(s.sequence), first index \(s.firstIndex), \(s.validBytes) of "
          + "\(s.capacityBytes) bytes used, \(s.records) records, \(s.entries) entries (\(range))")
    }
    let md = inspection.snapshot
    print(
      md.index == 0
        ? "snapshot: none"
        : "snapshot: index \(md.index), term \(md.term), \(md.confState)")
    let hs = inspection.hardState
    print("hard state: term \(hs.term), vote \(hs.vote), commit \(hs.commit)")
    print(
      inspection.entries.isEmpty
        ? "entries: none (last index \(inspection.lastIndex))"
        : "entries: \(inspection.firstIndex)...\(inspection.lastIndex) (\(inspection.entries.count))")
    if let t = inspection.tornTail {
      print("torn tail: \(t.file):\(t.offset) (\(t.bytes) bytes): \(t.reason); opening the WAL cuts it")
    }
    var corrupt = "null"
    if let c = inspection.corruption {
      print("CORRUPT: \(c)")
      if case .corrupt(let file, let offset, let reason) = c {
        corrupt = Self.json("\(file):\(offset): \(reason)")
      } else {
        corrupt = Self.json("\(c)")
      }
    }
    print(
      "{\"segments\":\(inspection.segments.count),\"entries\":\(inspection.entries.count),"
        + "\"first_index\":\(inspection.firstIndex),\"last_index\":\(inspection.lastIndex),"
        + "\"term\":\(hs.term),\"commit\":\(hs.commit),\"corrupt\":\(corrupt)}")
    if inspection.corruption != nil { throw ExitCode(1) }
  }

  static func describe(_ r: WALInspection.Record) -> String {
    let at = "\(r.segment)@\(r.offset) \(r.type) (\(r.bytes) bytes)"
    if let e = r.entry { return "\(at): index \(e.index), term \(e.term), \(e.type), \(e.data.count) data bytes" }
    if let hs = r.hardState { return "\(at): term \(hs.term), vote \(hs.vote), commit \(hs.commit)" }
    if let s = r.snapshot {
      return "\(at): index \(s.metadata.index), term \(s.metadata.term)\(s.replacesLog ? ", replaces the log" : "")"
    }
    return at
  }

  /// A JSON string literal.
  static func json(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
      switch u {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\t": out += "\\t"
      default:
        if u.value < 0x20 {
          let h = String(u.value, radix: 16)
          out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
        } else {
          out.unicodeScalars.append(u)
        }
      }
    }
    return out + "\""
  }
}
