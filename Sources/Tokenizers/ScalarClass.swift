// Character classes the pre-tokenizer regexes use (\p{L}, \p{N}, \s, [\r\n]),
// computed from Unicode.Scalar.Properties. ASCII goes through a table because
// it is almost all of the text and property look-ups are comparatively slow.

struct ScalarClass: OptionSet {
    let rawValue: UInt8
    static let letter = ScalarClass(rawValue: 1)  // \p{L}
    static let number = ScalarClass(rawValue: 2)  // \p{N}
    static let space = ScalarClass(rawValue: 4)  // \s (Unicode White_Space)
    static let newline = ScalarClass(rawValue: 8)  // [\r\n]
    /// Matched by [^\s\p{L}\p{N}].
    var isOther: Bool { rawValue & 7 == 0 }

    static func of(_ s: Unicode.Scalar) -> ScalarClass {
        if s.value < 128 { return asciiTable[Int(s.value)] }
        return slow(s)
    }

    private static func slow(_ s: Unicode.Scalar) -> ScalarClass {
        let p = s.properties
        if p.isWhitespace { return .space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return []
        }
    }

    private static let asciiTable: [ScalarClass] = (0..<128).map { v in
        let s = Unicode.Scalar(UInt8(v))
        if s == "\r" || s == "\n" { return [.space, .newline] }
        return slow(s)
    }
}

/// A piece of text decoded once into scalars, their classes and UTF-8 offsets,
/// so that the scanners index arrays and pieces map back to byte ranges.
struct ScalarText {
    var scalars: [UInt32] = []
    var classes: [ScalarClass] = []
    /// offsets[i] = byte offset of scalar i in the UTF-8 input; offsets[count] = end.
    var offsets: [Int] = []

    init<C: Collection>(utf8 bytes: C) where C.Element == UInt8, C.Index == Int {
        scalars.reserveCapacity(bytes.count)
        classes.reserveCapacity(bytes.count)
        offsets.reserveCapacity(bytes.count + 1)
        var i = bytes.startIndex
        let end = bytes.endIndex
        // Input comes from a Swift String, so it is valid UTF-8.
        while i < end {
            let b0 = UInt32(bytes[i])
            var v: UInt32
            var n: Int
            if b0 < 0x80 {
                v = b0
                n = 1
            } else if b0 < 0xE0 {
                v = b0 & 0x1F
                n = 2
            } else if b0 < 0xF0 {
                v = b0 & 0x0F
                n = 3
            } else {
                v = b0 & 0x07
                n = 4
            }
            var k = 1
            while k < n && i + k < end {
                v = (v << 6) | (UInt32(bytes[i + k]) & 0x3F)
                k += 1
            }
            scalars.append(v)
            classes.append(ScalarClass.of(Unicode.Scalar(v) ?? "\u{FFFD}"))
            offsets.append(i)
            i += n
        }
        offsets.append(end)
    }

    var count: Int { scalars.count }
}
