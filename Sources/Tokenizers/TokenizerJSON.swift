import Foundation

// Reading a Hugging Face tokenizer.json: the parts both models share (added
// tokens, post-processor template) and the dispatch on model.type.

/// A tokenizer from the bytes of a tokenizer.json (model.type BPE or WordPiece).
public func makeTokenizer(tokenizerJSON data: Data) throws -> any Tokenizer {
    let json = try TokenizerJSON(data)
    switch json.modelType {
    case "BPE": return try BPETokenizer(json)
    case "WordPiece": return try WordPieceTokenizer(json)
    default: throw TokenizerError.unsupported(key: "model.type", value: json.modelType)
    }
}

struct TokenizerJSON {
    let root: [String: Any]
    let model: [String: Any]

    init(_ data: Data) throws {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TokenizerError.invalid(key: "tokenizer.json", reason: "not a JSON object")
        }
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.missing(key: "model") }
        self.root = root
        self.model = model
    }

    var modelType: String { model["type"] as? String ?? "(none)" }

    /// Ids may leave gaps, but fewer than there are entries (model.vocab plus
    /// added_tokens): the vocabulary array is sized by the largest id, and a lying
    /// id must not allocate beyond what the file holds.
    var idLimit: Int {
        let entries = ((model["vocab"] as? [String: Any])?.count ?? 0) + ((root["added_tokens"] as? [Any])?.count ?? 0)
        return 2 * entries + 1024
    }

    /// model.vocab (token -> id) as an id-ordered array; gaps are empty strings.
    func vocabulary() throws -> [String] {
        guard let vocab = model["vocab"] as? [String: Any] else { throw TokenizerError.missing(key: "model.vocab") }
        let limit = idLimit
        var pairs: [(String, Int)] = []
        pairs.reserveCapacity(vocab.count)
        for (k, v) in vocab {
            guard let id = v as? Int, id >= 0 else {
                throw TokenizerError.invalid(key: "model.vocab", reason: "id of \(k)")
            }
            guard id < limit else {
                throw TokenizerError.invalid(
                    key: "model.vocab", reason: "id \(id) of \(k) is far beyond the \(vocab.count) entries")
            }
            pairs.append((k, id))
        }
        var tokens = [String](repeating: "", count: (pairs.map(\.1).max() ?? -1) + 1)
        for (k, id) in pairs { tokens[id] = k }
        return tokens
    }

    struct AddedToken {
        var id: Int
        var content: String
        var special: Bool
    }

    /// added_tokens entries with an id and a content; ids checked like the vocabulary's.
    func addedTokens() throws -> [AddedToken] {
        let limit = idLimit
        return try (root["added_tokens"] as? [[String: Any]] ?? []).compactMap { t in
            guard let id = t["id"] as? Int, let content = t["content"] as? String else { return nil }
            guard id >= 0, id < limit else {
                throw TokenizerError.invalid(key: "added_tokens", reason: "id \(id) of \(content) is out of range")
            }
            return AddedToken(id: id, content: content, special: t["special"] as? Bool ?? false)
        }
    }

    /// Ids the post-processor puts before and after a single sequence.
    func template() -> (prefix: [Int], suffix: [Int]) {
        template(root["post_processor"] as? [String: Any])
    }

    private func template(_ p: [String: Any]?) -> (prefix: [Int], suffix: [Int]) {
        guard let p else { return ([], []) }
        switch p["type"] as? String {
        case "TemplateProcessing":
            let specials = p["special_tokens"] as? [String: Any] ?? [:]
            var prefix: [Int] = []
            var suffix: [Int] = []
            var seenA = false
            for item in p["single"] as? [[String: Any]] ?? [] {
                if item["Sequence"] != nil {
                    seenA = true
                    continue
                }
                guard let st = item["SpecialToken"] as? [String: Any], let name = st["id"] as? String,
                    let ids = (specials[name] as? [String: Any])?["ids"] as? [Int]
                else { continue }
                if seenA { suffix += ids } else { prefix += ids }
            }
            return (prefix, suffix)
        case "BertProcessing", "RobertaProcessing":
            let cls = (p["cls"] as? [Any])?.last as? Int
            let sep = (p["sep"] as? [Any])?.last as? Int
            return (cls.map { [$0] } ?? [], sep.map { [$0] } ?? [])
        case "Sequence":
            for sub in p["processors"] as? [[String: Any]] ?? [] {
                let t = template(sub)
                if !t.prefix.isEmpty || !t.suffix.isEmpty { return t }
            }
            return ([], [])
        default:
            return ([], [])
        }
    }
}
