// Pre-tokenization of byte-level BPE: the text is cut into words by a chain of
// regex-like rules, each applied to every piece the previous one produced
// (llama.cpp's unicode_regex_split; HF's Sequence of Split / Digits /
// ByteLevel). Each regex is a hand-written scanner, not a Regex.

/// One splitting rule; pieces between matches are kept as pieces too.
enum SplitRule: Equatable {
    /// "\p{N}": every number scalar is its own piece (HF Digits(individual_digits)).
    case individualDigits
    /// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    case gpt2
    /// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}|
    ///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    /// (llama3: maxDigits 3; qwen2: 1).
    case llama3(maxDigits: Int)
}

struct PreTokenizer: Equatable {
    var rules: [SplitRule]
    /// llama.cpp sets ignore_merges for the Llama 3 names only.
    var ignoreMerges = false

    /// The pre-tokenizer named by GGUF's tokenizer.ggml.pre (llama.cpp's names).
    init?(ggufName name: String) {
        guard let regexes = PreTokenizerNames.splitRegexes(ggufName: name) else { return nil }
        // Every regex of the table has a scanner (PreTokenizerTests checks the whole table).
        rules = regexes.compactMap(Self.rule(forRegex:))
        ignoreMerges = PreTokenizerNames.ignoresMerges(ggufName: name)
    }

    init(rules: [SplitRule]) { self.rules = rules }

    /// Hugging Face regex strings of Split pre-tokenizers, and ByteLevel's own.
    static func rule(forRegex pattern: String) -> SplitRule? {
        switch pattern {
        case PreTokenizerNames.gpt2Regex, String(PreTokenizerNames.gpt2Regex.dropLast(4)):
            return .gpt2
        case PreTokenizerNames.llama3Regex(digits: 3):
            return .llama3(maxDigits: 3)
        case PreTokenizerNames.llama3Regex(digits: 1):
            return .llama3(maxDigits: 1)
        case PreTokenizerNames.individualDigitsRegex:
            return .individualDigits
        default:
            return nil
        }
    }

    /// Calls `emit` with the scalar range of every word of `text`, in order.
    func split(_ text: ScalarText, _ emit: (Range<Int>) -> Void) {
        apply(rules[...], text, 0..<text.count, emit)
    }

    private func apply(
        _ rules: ArraySlice<SplitRule>, _ text: ScalarText, _ range: Range<Int>,
        _ emit: (Range<Int>) -> Void
    ) {
        guard let rule = rules.first else {
            emit(range)
            return
        }
        let rest = rules.dropFirst()
        let next = { (r: Range<Int>) in self.apply(rest, text, r, emit) }
        switch rule {
        case .individualDigits: Self.splitDigits(text, range, next)
        case .gpt2: Self.scan(text, range, next, Self.gpt2Match)
        case let .llama3(maxDigits):
            Self.scan(text, range, next) { t, p, e in Self.llama3Match(t, p, e, maxDigits) }
        }
    }

    private static func splitDigits(_ t: ScalarText, _ range: Range<Int>, _ emit: (Range<Int>) -> Void) {
        var start = range.lowerBound
        for i in range where t.classes[i].contains(.number) {
            if start < i { emit(start..<i) }
            emit(i..<(i + 1))
            start = i + 1
        }
        if start < range.upperBound { emit(start..<range.upperBound) }
    }

    /// Runs a matcher from left to right; every position is covered by some piece.
    private static func scan(
        _ t: ScalarText, _ range: Range<Int>, _ emit: (Range<Int>) -> Void,
        _ match: (ScalarText, Int, Int) -> Int
    ) {
        var pos = range.lowerBound
        let end = range.upperBound
        while pos < end {
            let stop = max(match(t, pos, end), pos + 1)
            emit(pos..<stop)
            pos = stop
        }
    }

    // MARK: scanners (return the end of the match starting at pos)

    private static let apostrophe = UInt32(UInt8(ascii: "'"))
    private static let space = UInt32(UInt8(ascii: " "))

    /// Length of 's 't 're 've 'm 'll 'd at pos (0 if none).
    private static func contraction(_ t: ScalarText, _ pos: Int, _ end: Int, caseInsensitive: Bool) -> Int {
        guard t.scalars[pos] == apostrophe, pos + 1 < end else { return 0 }
        func lower(_ i: Int) -> UInt32 {
            let c = t.scalars[i]
            return caseInsensitive && c >= 65 && c <= 90 ? c + 32 : c
        }
        let a = lower(pos + 1)
        switch a {
        case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
        case 0x72, 0x76:  // r v -> re ve
            return pos + 2 < end && lower(pos + 2) == 0x65 ? 3 : 0
        case 0x6C:  // l -> ll
            return pos + 2 < end && lower(pos + 2) == 0x6C ? 3 : 0
        default: return 0
        }
    }

    /// End of the run of scalars of class `c` starting at pos.
    @inline(__always)
    private static func run(_ t: ScalarText, _ pos: Int, _ end: Int, _ test: (ScalarClass) -> Bool) -> Int {
        var i = pos
        while i < end && test(t.classes[i]) { i += 1 }
        return i
    }

    /// \s+(?!\S)|\s+ at a whitespace position: all of it at the end of the text,
    /// else all but the last whitespace (which then leads the next word), but
    /// at least one.
    @inline(__always)
    private static func whitespace(_ t: ScalarText, _ pos: Int, _ end: Int) -> Int {
        let q = run(t, pos, end) { $0.contains(.space) }
        if q == end { return q }
        return q - pos > 1 ? q - 1 : q
    }

    private static func gpt2Match(_ t: ScalarText, _ pos: Int, _ end: Int) -> Int {
        let n = contraction(t, pos, end, caseInsensitive: false)
        if n > 0 { return pos + n }
        let c = t.classes[pos]
        // " ?X+" for X in letter, number, other: an optional leading ' '.
        var start = pos
        var cls = c
        if t.scalars[pos] == space && pos + 1 < end {
            let c1 = t.classes[pos + 1]
            if !c1.contains(.space) {
                start = pos + 1
                cls = c1
            }
        }
        if cls.contains(.letter) { return run(t, start, end) { $0.contains(.letter) } }
        if cls.contains(.number) { return run(t, start, end) { $0.contains(.number) } }
        if cls.isOther { return run(t, start, end) { $0.isOther } }
        return whitespace(t, pos, end)
    }

    private static func llama3Match(_ t: ScalarText, _ pos: Int, _ end: Int, _ maxDigits: Int) -> Int {
        let n = contraction(t, pos, end, caseInsensitive: true)
        if n > 0 { return pos + n }
        let c = t.classes[pos]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if c.contains(.letter) { return run(t, pos, end) { $0.contains(.letter) } }
        if !c.contains(.newline) && !c.contains(.number) && pos + 1 < end && t.classes[pos + 1].contains(.letter) {
            return run(t, pos + 1, end) { $0.contains(.letter) }
        }
        // \p{N}{1,maxDigits}
        if c.contains(.number) {
            var i = pos
            while i < end && i - pos < maxDigits && t.classes[i].contains(.number) { i += 1 }
            return i
        }
        // " ?[^\s\p{L}\p{N}]+[\r\n]*"
        var start = -1
        if c.isOther {
            start = pos
        } else if t.scalars[pos] == space && pos + 1 < end && t.classes[pos + 1].isOther {
            start = pos + 1
        }
        if start >= 0 {
            let i = run(t, start, end) { $0.isOther }
            return run(t, i, end) { $0.contains(.newline) }
        }
        // \s*[\r\n]+ : whitespace up to and including the last newline of the run.
        let q = run(t, pos, end) { $0.contains(.space) }
        var j = q - 1
        while j >= pos && !t.classes[j].contains(.newline) { j -= 1 }
        if j >= pos { return j + 1 }
        return whitespace(t, pos, end)
    }
}
