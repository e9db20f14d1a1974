/// One argument of a directive: `key`, `key=value` or `key=(v1,v2,...)`.
public struct CmdArg: Equatable, Sendable {
  public var key: String
  public var vals: [String]

  public init(key: String, vals: [String] = []) {
    self.key = key
    self.vals = vals
  }
}

/// One directive of a datadriven script: the command line, its input block and its expected
/// output.
public struct TestData: Sendable {
  /// Where the directive starts (for error messages): "FILE:LINE".
  public var pos: String
  public var cmd: String
  public var cmdArgs: [CmdArg]
  /// The lines between the command line and `----`, joined with newlines.
  public var input: String
  /// The expected output as written in the script.
  public var expected: String
  /// The command line and input exactly as written.
  public var header: String

  /// Whether an argument with this key is present.
  public func hasArg(_ key: String) -> Bool { cmdArgs.contains { $0.key == key } }

  /// The values of the argument `key`, or nil when it is absent.
  public func vals(_ key: String) -> [String]? { cmdArgs.first { $0.key == key }?.vals }
}

/// An error in a datadriven script (bad syntax or a bad argument).
public struct DataDrivenError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// One piece of a script: a run of comment / blank lines kept verbatim, or a directive.
public enum ScriptPiece: Sendable {
  case verbatim(String)
  case directive(TestData)
}

/// Parses a datadriven script (the cockroachdb/datadriven format that etcd-raft's tests use).
public func parseScript(_ text: String, path: String = "<input>") throws -> [ScriptPiece] {
  var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
  if lines.last == "" { lines.removeLast() }
  var pieces: [ScriptPiece] = []
  var i = 0
  while i < lines.count {
    let line = lines[i]
    let trimmed = line.trimmingCharacters(in: " \t")
    if trimmed.isEmpty || trimmed.hasPrefix("#") {
      pieces.append(.verbatim(line))
      i += 1
      continue
    }
    let start = i
    var head: [String] = []
    while i < lines.count && lines[i] != "----" {
      head.append(lines[i])
      i += 1
    }
    guard i < lines.count else {
      throw DataDrivenError("\(path):\(start + 1): directive without ---- separator")
    }
    i += 1
    var out: [String] = []
    while i < lines.count && lines[i] != "" {
      out.append(lines[i])
      i += 1
    }
    guard let first = head.first else {
      throw DataDrivenError("\(path):\(start + 1): ---- separator without a directive before it")
    }
    let (cmd, args) = try parseCommandLine(first, pos: "\(path):\(start + 1)")
    pieces.append(
      .directive(
        TestData(
          pos: "\(path):\(start + 1)", cmd: cmd, cmdArgs: args,
          input: head.dropFirst().joined(separator: "\n"),
          expected: out.joined(separator: "\n"), header: head.joined(separator: "\n"))))
  }
  return pieces
}

/// Splits `cmd a b=1 c=(1,2)` into the command and its arguments.
public func parseCommandLine(_ line: String, pos: String = "") throws -> (String, [CmdArg]) {
  var tokens: [String] = []
  var cur = ""
  var depth = 0
  for ch in line {
    if ch == "(" { depth += 1 }
    if ch == ")" { depth -= 1 }
    if (ch == " " || ch == "\t") && depth == 0 {
      if !cur.isEmpty { tokens.append(cur) }
      cur = ""
    } else {
      cur.append(ch)
    }
  }
  if !cur.isEmpty { tokens.append(cur) }
  guard depth == 0 else { throw DataDrivenError("\(pos): unbalanced parentheses in '\(line)'") }
  guard let cmd = tokens.first else { throw DataDrivenError("\(pos): empty directive") }
  var args: [CmdArg] = []
  for tok in tokens.dropFirst() {
    guard let eq = tok.firstIndex(of: "=") else {
      args.append(CmdArg(key: tok))
      continue
    }
    let key = String(tok[..<eq])
    var value = String(tok[tok.index(after: eq)...])
    if value.hasPrefix("(") && value.hasSuffix(")") {
      value = String(value.dropFirst().dropLast())
      let vals = value.split(separator: ",", omittingEmptySubsequences: false).map {
        $0.trimmingCharacters(in: " ")
      }
      args.append(CmdArg(key: key, vals: value.isEmpty ? [] : vals))
    } else {
      args.append(CmdArg(key: key, vals: [value]))
    }
  }
  return (cmd, args)
}

/// Runs every directive of a script through `handler` and returns the script with each
/// output replaced by what the handler printed (the datadriven rewrite convention).
public func rewriteScript(_ pieces: [ScriptPiece], handler: (TestData) -> String) -> String {
  var out = ""
  for piece in pieces {
    switch piece {
    case .verbatim(let line):
      out += line + "\n"
    case .directive(let d):
      out += d.header + "\n----\n"
      var result = handler(d)
      if result.isEmpty { result = "ok" }
      if !result.hasSuffix("\n") { result += "\n" }
      out += result
    // The blank line that ends the block is part of the verbatim lines that follow, except
    // at the end of the file.
    }
  }
  return out
}

extension String {
  func trimmingCharacters(in set: String) -> String {
    var s = Substring(self)
    while let f = s.first, set.contains(f) { s = s.dropFirst() }
    while let l = s.last, set.contains(l) { s = s.dropLast() }
    return String(s)
  }
}

extension Substring {
  func trimmingCharacters(in set: String) -> String { String(self).trimmingCharacters(in: set) }
}
