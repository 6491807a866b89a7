import Foundation

// Byte-level BPE from a Hugging Face tokenizer.json: the pre_tokenizer
// (ByteLevel, Split with a known regex, Digits, Sequence) becomes split rules.

extension BPETokenizer {
    public convenience init(tokenizerJSON data: Data) throws {
        try self.init(TokenizerJSON(data))
    }

    convenience init(_ json: TokenizerJSON) throws {
        guard json.modelType == "BPE" else {
            throw TokenizerError.unsupported(key: "model.type", value: json.modelType)
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = json.model[key] as? String, !v.isEmpty {
                throw TokenizerError.unsupported(key: "model.\(key)", value: v)
            }
        }
        var nfc = false
        if let n = json.root["normalizer"] as? [String: Any] {
            let type = n["type"] as? String ?? "?"
            if type == "NFC" {
                nfc = true
            } else if !(type == "Sequence" && (n["normalizers"] as? [Any] ?? []).isEmpty) {
                throw TokenizerError.unsupported(key: "normalizer.type", value: type)
            }
        }
        var rules: [SplitRule] = []
        var prefixSpace = false
        try Self.parsePreTokenizer(json.root["pre_tokenizer"] as? [String: Any], &rules, &prefixSpace)
        if rules.isEmpty { throw TokenizerError.unsupported(key: "pre_tokenizer", value: "none") }

        var tokens = try json.vocabulary()
        var types = [TokenType](repeating: .normal, count: tokens.count)
        for t in try json.addedTokens() {
            if t.id >= tokens.count {
                tokens += Array(repeating: "", count: t.id + 1 - tokens.count)
                types += Array(repeating: .unused, count: t.id + 1 - types.count)
            }
            tokens[t.id] = t.content
            types[t.id] = t.special ? .control : .userDefined
        }

        let merges: [(String, String)] = try (json.model["merges"] as? [Any] ?? []).map { m in
            if let s = m as? String, let sp = s.dropFirst().firstIndex(of: " ") {
                return (String(s[..<sp]), String(s[s.index(after: sp)...]))
            }
            if let pair = m as? [String], pair.count == 2 { return (pair[0], pair[1]) }
            throw TokenizerError.invalid(key: "model.merges", reason: "entry \(m)")
        }

        // tokenizer.json has no bos/eos fields: take the template's first token
        // as BOS, and otherwise the usual names.
        let (prefix, suffix) = json.template()
        func find(_ names: [String]) -> Int? {
            for n in names { if let i = tokens.firstIndex(of: n) { return i } }
            return nil
        }
        let unk = (json.model["unk_token"] as? String).flatMap { u in tokens.firstIndex(of: u) }
        let special = SpecialTokenIDs(
            bos: prefix.first ?? find(["<|begin_of_text|>", "<s>", "<|startoftext|>", "<bos>"]),
            eos: find(["<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>"]),
            unk: unk, pad: find(["<pad>", "<|pad|>", "[PAD]"]))
        self.init(
            tokens: tokens, types: types, merges: merges, preTokenizer: PreTokenizer(rules: rules),
            specialTokens: special, addPrefixSpace: prefixSpace,
            ignoreMerges: json.model["ignore_merges"] as? Bool ?? false,
            templatePrefix: prefix, templateSuffix: suffix, nfc: nfc)
    }

    private static func parsePreTokenizer(
        _ p: [String: Any]?, _ rules: inout [SplitRule], _ prefixSpace: inout Bool
    ) throws {
        guard let p else { return }
        let type = p["type"] as? String ?? "?"
        switch type {
        case "Sequence":
            for sub in p["pretokenizers"] as? [[String: Any]] ?? [] { try parsePreTokenizer(sub, &rules, &prefixSpace) }
        case "ByteLevel":
            if p["add_prefix_space"] as? Bool == true { prefixSpace = true }
            if p["use_regex"] as? Bool ?? true { rules.append(.gpt2) }
        case "Digits":
            guard p["individual_digits"] as? Bool == true else {
                throw TokenizerError.unsupported(key: "pre_tokenizer.individual_digits", value: "false")
            }
            rules.append(.individualDigits)
        case "Split":
            let pattern = p["pattern"] as? [String: Any]
            let regex = pattern?["Regex"] as? String ?? pattern?["String"] as? String ?? "?"
            guard let rule = PreTokenizer.rule(forRegex: regex) else {
                throw TokenizerError.unsupported(key: "pre_tokenizer.pattern", value: regex)
            }
            let behavior = p["behavior"] as? String ?? "?"
            guard behavior == "Isolated", p["invert"] as? Bool != true else {
                throw TokenizerError.unsupported(key: "pre_tokenizer.behavior", value: behavior)
            }
            rules.append(rule)
        default:
            throw TokenizerError.unsupported(key: "pre_tokenizer.type", value: type)
        }
    }
}
