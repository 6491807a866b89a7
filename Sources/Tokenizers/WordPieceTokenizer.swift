import Foundation

// BERT's WordPiece: greedy longest-match-first within each word; pieces after
// the first carry the "##" prefix; a word that cannot be covered, or is longer
// than maxInputCharsPerWord, becomes [UNK]. encodeForModel adds [CLS] ... [SEP].

public final class WordPieceTokenizer: Tokenizer {
    public let specialTokens: SpecialTokenIDs
    public var vocabularySize: Int { tokens.count }

    private let tokens: [String]
    private let tokenToID: [String: Int]
    private let normalization: BertNormalization?
    private let prefix: String
    private let maxInputCharsPerWord: Int
    private let unkID: Int?
    private let specials: SpecialTokenMatcher
    private let isSpecial: [Bool]
    private let templatePrefix: [Int], templateSuffix: [Int]

    /// - Parameters:
    ///   - vocabulary: tokens in id order (vocab.txt lines).
    ///   - normalization: nil for none (tokenizer.json without normalizer).
    ///   - specialTokenTexts: tokens matched verbatim in the input; default the
    ///     bracketed BERT specials present in the vocabulary.
    ///   - template: ids around a sequence for encodeForModel; default [CLS] / [SEP].
    public init(
        vocabulary: [String], normalization: BertNormalization? = BertNormalization(),
        unkToken: String = "[UNK]", continuingSubwordPrefix: String = "##",
        maxInputCharsPerWord: Int = 100, specialTokenTexts: [String]? = nil,
        template: (prefix: [Int], suffix: [Int])? = nil
    ) {
        tokens = vocabulary
        tokenToID = Dictionary(vocabulary.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        self.normalization = normalization
        prefix = continuingSubwordPrefix
        self.maxInputCharsPerWord = maxInputCharsPerWord
        let ids = tokenToID
        unkID = ids[unkToken]
        specialTokens = SpecialTokenIDs(
            unk: ids[unkToken], pad: ids["[PAD]"], cls: ids["[CLS]"],
            sep: ids["[SEP]"], mask: ids["[MASK]"])
        let texts = specialTokenTexts ?? ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].filter { ids[$0] != nil }
        let list = texts.compactMap { t in ids[t].map { (text: t, id: $0) } }
        specials = SpecialTokenMatcher(list)
        var flags = [Bool](repeating: false, count: vocabulary.count)
        for (_, id) in list { flags[id] = true }
        isSpecial = flags
        let t = template ?? (specialTokens.cls.map { [$0] } ?? [], specialTokens.sep.map { [$0] } ?? [])
        templatePrefix = t.prefix
        templateSuffix = t.suffix
    }

    /// From the text of a vocab.txt, with the default (uncased) settings.
    public convenience init(vocabTxt: String) {
        var lines = vocabTxt.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.hasSuffix("\r") ? $0.dropLast() : $0)
        }
        if lines.last == "" { lines.removeLast() }
        self.init(vocabulary: lines)
    }

    public convenience init(tokenizerJSON data: Data) throws {
        try self.init(TokenizerJSON(data))
    }

    convenience init(_ json: TokenizerJSON) throws {
        guard json.modelType == "WordPiece" else {
            throw TokenizerError.unsupported(key: "model.type", value: json.modelType)
        }
        var normalization: BertNormalization? = nil
        if let n = json.root["normalizer"] as? [String: Any] {
            let type = n["type"] as? String ?? "?"
            guard type == "BertNormalizer" else {
                throw TokenizerError.unsupported(key: "normalizer.type", value: type)
            }
            normalization = BertNormalization(
                cleanText: n["clean_text"] as? Bool ?? true,
                handleChineseChars: n["handle_chinese_chars"] as? Bool ?? true,
                stripAccents: n["strip_accents"] as? Bool, lowercase: n["lowercase"] as? Bool ?? true)
        }
        if let p = json.root["pre_tokenizer"] as? [String: Any], let type = p["type"] as? String,
            type != "BertPreTokenizer"
        {
            throw TokenizerError.unsupported(key: "pre_tokenizer.type", value: type)
        }
        var vocab = try json.vocabulary()
        let added = try json.addedTokens()
        for t in added {
            if t.id >= vocab.count { vocab += Array(repeating: "", count: t.id + 1 - vocab.count) }
            vocab[t.id] = t.content
        }
        let template = json.template()
        self.init(
            vocabulary: vocab, normalization: normalization,
            unkToken: json.model["unk_token"] as? String ?? "[UNK]",
            continuingSubwordPrefix: json.model["continuing_subword_prefix"] as? String ?? "##",
            maxInputCharsPerWord: json.model["max_input_chars_per_word"] as? Int ?? 100,
            specialTokenTexts: added.map(\.content),
            template: template.prefix.isEmpty && template.suffix.isEmpty ? nil : template)
    }

    public func token(_ id: Int) -> String? { tokens.indices.contains(id) ? tokens[id] : nil }
    public func id(of token: String) -> Int? { tokenToID[token] }

    public func encode(_ text: String) -> [Int] {
        let bytes = Array(text.utf8)
        var out: [Int] = []
        for segment in specials.segments(bytes) {
            switch segment {
            case let .special(id): out.append(id)
            case let .text(range):
                let piece = String(decoding: bytes[range], as: UTF8.self)
                let scalars = normalization?.apply(piece) ?? Array(piece.unicodeScalars)
                for word in BertNormalization.words(scalars) { wordPiece(word, &out) }
            }
        }
        return out
    }

    public func encodeForModel(_ text: String) -> [Int] { templatePrefix + encode(text) + templateSuffix }

    private func wordPiece(_ word: ArraySlice<Unicode.Scalar>, _ out: inout [Int]) {
        if word.count > maxInputCharsPerWord {
            if let unkID { out.append(unkID) }
            return
        }
        var pieces: [Int] = []
        var start = word.startIndex
        while start < word.endIndex {
            var end = word.endIndex
            var found: Int? = nil
            while start < end {
                var view = String.UnicodeScalarView()
                view.append(contentsOf: word[start..<end])
                let candidate = start == word.startIndex ? String(view) : prefix + String(view)
                if let id = tokenToID[candidate] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else {
                if let unkID { out.append(unkID) }
                return
            }
            pieces.append(id)
            start = end
        }
        out += pieces
    }

    /// Pieces joined with spaces, "##" pieces glued to the previous one, then
    /// the usual clean-up of spaces before punctuation and contractions.
    public func decode(_ ids: [Int]) -> String {
        var s = ""
        for id in ids where tokens.indices.contains(id) {
            let t = tokens[id]
            if !isSpecial[id] && t.hasPrefix(prefix) && !s.isEmpty {
                s += t.dropFirst(prefix.count)
            } else {
                if !s.isEmpty { s += " " }
                s += t
            }
        }
        for (a, b) in [
            (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
        ] {
            s = s.replacingOccurrences(of: a, with: b)
        }
        return s
    }
}
