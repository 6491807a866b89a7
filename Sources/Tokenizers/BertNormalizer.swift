import Foundation

// BERT's text normalization and pre-tokenization (HF BertNormalizer and
// BertPreTokenizer), on Unicode scalars as the Rust implementation works on chars.

public struct BertNormalization: Sendable, Equatable {
    /// Drop NUL, U+FFFD and control characters; map whitespace to ' '.
    public var cleanText: Bool
    /// Put spaces around CJK ideographs so each becomes a word.
    public var handleChineseChars: Bool
    /// nil: follow `lowercase` (HF's default).
    public var stripAccents: Bool?
    public var lowercase: Bool

    public init(
        cleanText: Bool = true, handleChineseChars: Bool = true, stripAccents: Bool? = nil, lowercase: Bool = true
    ) {
        self.cleanText = cleanText
        self.handleChineseChars = handleChineseChars
        self.stripAccents = stripAccents
        self.lowercase = lowercase
    }

    func apply(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            if cleanText {
                if s.value == 0 || s.value == 0xFFFD || Self.isControl(s) { continue }
                if Self.isWhitespace(s) {
                    out.append(" ")
                    continue
                }
            }
            if handleChineseChars && Self.isChinese(s) {
                out += [" ", s, " "]
                continue
            }
            out.append(s)
        }
        if stripAccents ?? lowercase, out.contains(where: { $0.value >= 128 }) {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: out)
            out = String(view).decomposedStringWithCanonicalMapping.unicodeScalars
                .filter { $0.properties.generalCategory != .nonspacingMark }
        }
        if lowercase {
            // Per-scalar full mapping, as Rust's char::to_lowercase (no final-sigma rule).
            out = out.flatMap { s -> [Unicode.Scalar] in
                if s.value < 128 { return [s.value >= 65 && s.value <= 90 ? Unicode.Scalar(s.value + 32)! : s] }
                return Array(s.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == "\t" || s == "\n" || s == "\r" || s.properties.isWhitespace
    }

    /// General category C* except \t \n \r (which count as whitespace).
    static func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format, .unassigned, .privateUse, .surrogate: return true
        default: return false
        }
    }

    static func isChinese(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
            0x2B740...0x2B81F, 0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }

    /// ASCII punctuation (including $+<=>^`|~, which Unicode calls symbols) or category P*.
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 128 {
            return (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v)
        }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    /// BertPreTokenizer: split on whitespace (dropped) and around each punctuation character.
    static func words(_ scalars: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var start = 0
        for (i, s) in scalars.enumerated() {
            let space = s.properties.isWhitespace
            if space || isPunctuation(s) {
                if start < i { words.append(scalars[start..<i]) }
                if !space { words.append(scalars[i...i]) }
                start = i + 1
            }
        }
        if start < scalars.count { words.append(scalars[start...]) }
        return words
    }
}
