// Go's `%q` verb applied to a byte slice, reproduced byte for byte: the describe format quotes
// entry payloads this way, and the scenario scripts compare those quotes literally.
//
// The rules (Go's `strconv.Quote`): the bytes are read as UTF-8, one rune at a time; a byte
// that does not start a valid encoding becomes `\xNN`; `"` and `\` are backslash-escaped;
// printable runes (letters, marks, numbers, punctuation, symbols and the ASCII space) are kept
// as they are; the usual C escapes are used for BEL, BS, FF, LF, CR, TAB and VT; other control
// characters and DEL become `\xNN`; any other rune becomes `\uNNNN` or `\UNNNNNNNN`. Hex digits
// are lowercase.

/// Quotes `bytes` exactly as Go's `fmt.Sprintf("%q", bytes)` does.
public func goQuote(_ bytes: some Collection<UInt8>) -> String {
  let b = Array(bytes)
  var out: [UInt8] = [UInt8(ascii: "\"")]
  out.reserveCapacity(b.count + 2)
  var i = 0
  while i < b.count {
    let (rune, width) = decodeGoRune(b, at: i)
    defer { i += width }
    guard let rune else {
      // An invalid or truncated encoding: exactly one byte is consumed and shown in hex.
      appendHexEscape(&out, prefix: "x", value: UInt32(b[i]), digits: 2)
      continue
    }
    if rune == 0x22 || rune == 0x5C {
      out.append(UInt8(ascii: "\\"))
      out.append(UInt8(rune))
      continue
    }
    if isGoPrintable(rune) {
      out.append(contentsOf: b[i..<i + width])
      continue
    }
    switch rune {
    case 0x07: out.append(contentsOf: Array(#"\a"#.utf8))
    case 0x08: out.append(contentsOf: Array(#"\b"#.utf8))
    case 0x0C: out.append(contentsOf: Array(#"\f"#.utf8))
    case 0x0A: out.append(contentsOf: Array(#"\n"#.utf8))
    case 0x0D: out.append(contentsOf: Array(#"\r"#.utf8))
    case 0x09: out.append(contentsOf: Array(#"\t"#.utf8))
    case 0x0B: out.append(contentsOf: Array(#"\v"#.utf8))
    default:
      if rune < 0x20 || rune == 0x7F {
        appendHexEscape(&out, prefix: "x", value: rune, digits: 2)
      } else if rune < 0x10000 {
        appendHexEscape(&out, prefix: "u", value: rune, digits: 4)
      } else {
        appendHexEscape(&out, prefix: "U", value: rune, digits: 8)
      }
    }
  }
  out.append(UInt8(ascii: "\""))
  // Everything appended is either ASCII or a copy of a valid UTF-8 sequence.
  return String(decoding: out, as: UTF8.self)
}

private func appendHexEscape(_ out: inout [UInt8], prefix: Character, value: UInt32, digits: Int) {
  let hex = Array("0123456789abcdef".utf8)
  out.append(UInt8(ascii: "\\"))
  out.append(prefix.asciiValue!)
  for shift in stride(from: (digits - 1) * 4, through: 0, by: -4) {
    out.append(hex[Int((value >> UInt32(shift)) & 0xF)])
  }
}

/// Decodes one rune at `i` with Go's `utf8.DecodeRune` rules: returns the scalar and its length,
/// or nil and length 1 when the bytes at `i` are not a complete, valid, shortest-form encoding
/// of a non-surrogate scalar.
private func decodeGoRune(_ b: [UInt8], at i: Int) -> (UInt32?, Int) {
  let b0 = b[i]
  if b0 < 0x80 { return (UInt32(b0), 1) }
  let length: Int
  var lo: UInt8 = 0x80
  var hi: UInt8 = 0xBF
  switch b0 {
  case 0xC2...0xDF: length = 2
  case 0xE0: length = 3; lo = 0xA0
  case 0xE1...0xEC, 0xEE...0xEF: length = 3
  case 0xED: length = 3; hi = 0x9F  // excludes the surrogates
  case 0xF0: length = 4; lo = 0x90
  case 0xF1...0xF3: length = 4
  case 0xF4: length = 4; hi = 0x8F  // nothing above U+10FFFF
  default: return (nil, 1)  // continuation bytes, overlong leads C0/C1, F5...FF
  }
  guard i + length <= b.count else { return (nil, 1) }
  let b1 = b[i + 1]
  guard b1 >= lo && b1 <= hi else { return (nil, 1) }
  for k in 2..<length where b[i + k] & 0xC0 != 0x80 { return (nil, 1) }
  var rune: UInt32
  switch length {
  case 2: rune = UInt32(b0 & 0x1F)
  case 3: rune = UInt32(b0 & 0x0F)
  default: rune = UInt32(b0 & 0x07)
  }
  for k in 1..<length { rune = rune << 6 | UInt32(b[i + k] & 0x3F) }
  return (rune, length)
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
private func isGoPrintable(_ rune: UInt32) -> Bool {
  if rune == 0x20 { return true }
  guard let scalar = Unicode.Scalar(rune) else { return false }
  switch scalar.properties.generalCategory {
  case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
    .nonspacingMark, .spacingMark, .enclosingMark,
    .decimalNumber, .letterNumber, .otherNumber,
    .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
    .initialPunctuation, .finalPunctuation, .otherPunctuation,
    .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
    return true
  default:
    return false
  }
}
