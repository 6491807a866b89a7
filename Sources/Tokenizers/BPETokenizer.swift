import Foundation
import Synchronization

// Byte-level BPE (GPT-2 family: SmolLM, Llama 3, Qwen2): special tokens are cut
// out first, the rest is pre-tokenized into words, each word's UTF-8 bytes
// start as one symbol per byte and adjacent symbols are merged by merge rank.

public final class BPETokenizer: Tokenizer, Sendable {
    /// GGUF's tokenizer.ggml.token_type values.
    public enum TokenType: Int, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public let specialTokens: SpecialTokenIDs
    public var vocabularySize: Int { tokens.count }

    private let tokens: [String]
    private let tokenToID: [String: Int]
    /// Bytes each id decodes to.
    private let tokenBytes: [[UInt8]]
    /// Id of the single-byte token of each byte; -1 if the vocabulary lacks it.
    private let byteTokens: [Int]
    /// (left, right) -> (rank << 32 | merged id).
    private let merges: PairTable
    private let preTokenizer: PreTokenizer
    private let specials: SpecialTokenMatcher
    private let addPrefixSpace: Bool
    /// Llama 3: a word that is itself a token is not merged (llama.cpp ignore_merges).
    private let ignoreMerges: Bool
    private let templatePrefix: [Int], templateSuffix: [Int]
    /// Qwen2's tokenizer.json normalizes to NFC first.
    private let nfc: Bool

    // Words recur constantly in real text; their ids are cached. One encode
    // call holds the shared cache; a concurrent call uses a private one.
    private let sharedCache = Mutex(WordCache())

    /// From GGUF metadata values: tokenizer.ggml.tokens, .merges ("a b"),
    /// .token_type and .pre (llama.cpp's pre-tokenizer name).
    public convenience init(
        tokens: [String], merges: [String], tokenTypes: [Int]? = nil,
        preTokenizer name: String, specialTokens: SpecialTokenIDs = SpecialTokenIDs(),
        addBOS: Bool = false, addEOS: Bool = false
    ) throws {
        guard let pre = PreTokenizer(ggufName: name) else {
            throw TokenizerError.unsupported(key: "tokenizer.ggml.pre", value: name)
        }
        let pairs = try merges.map { m -> (String, String) in
            // Byte-level tokens never contain ' ', so the first space separates.
            guard let sp = m.dropFirst().firstIndex(of: " ") else {
                throw TokenizerError.invalid(key: "tokenizer.ggml.merges", reason: "no space in \"\(m)\"")
            }
            return (String(m[..<sp]), String(m[m.index(after: sp)...]))
        }
        let types = tokenTypes.map { $0.map { TokenType(rawValue: $0) ?? .normal } }
        var prefix: [Int] = []
        var suffix: [Int] = []
        if addBOS, let b = specialTokens.bos { prefix = [b] }
        if addEOS, let e = specialTokens.eos { suffix = [e] }
        self.init(
            tokens: tokens, types: types, merges: pairs, preTokenizer: pre,
            specialTokens: specialTokens, addPrefixSpace: false,
            ignoreMerges: pre.ignoreMerges,
            templatePrefix: prefix, templateSuffix: suffix)
    }

    init(
        tokens: [String], types: [TokenType]?, merges: [(String, String)], preTokenizer: PreTokenizer,
        specialTokens: SpecialTokenIDs, addPrefixSpace: Bool, ignoreMerges: Bool,
        templatePrefix: [Int], templateSuffix: [Int], nfc: Bool = false
    ) {
        self.tokens = tokens
        self.nfc = nfc
        self.specialTokens = specialTokens
        self.preTokenizer = preTokenizer
        self.addPrefixSpace = addPrefixSpace
        self.ignoreMerges = ignoreMerges
        self.templatePrefix = templatePrefix
        self.templateSuffix = templateSuffix

        let types = types ?? Array(repeating: .normal, count: tokens.count)
        tokenToID = Dictionary(tokens.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })

        // Control and user-defined tokens are literal text: matched in the input
        // and decoded as written; the others are spelled in the byte alphabet.
        var specialList: [(text: String, id: Int)] = []
        var bytes: [[UInt8]] = []
        bytes.reserveCapacity(tokens.count)
        for (id, t) in tokens.enumerated() {
            let type = id < types.count ? types[id] : .normal
            if type == .control || type == .userDefined || type == .unknown {
                specialList.append((t, id))
                bytes.append(Array(t.utf8))
            } else {
                bytes.append(ByteLevel.bytes(of: t) ?? Array(t.utf8))
            }
        }
        tokenBytes = bytes
        specials = SpecialTokenMatcher(specialList)

        var byteIDs = [Int](repeating: -1, count: 256)
        for b in 0..<256 {
            byteIDs[b] = tokenToID[String(Character(ByteLevel.byteToScalar[b]))] ?? -1
        }
        byteTokens = byteIDs

        var table = PairTable(capacity: merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let l = tokenToID[a], let r = tokenToID[b], let m = tokenToID[a + b] else { continue }
            table.insertIfAbsent(UInt64(l) << 32 | UInt64(r), UInt64(rank) << 32 | UInt64(m))
        }
        self.merges = table
    }

    public func token(_ id: Int) -> String? { tokens.indices.contains(id) ? tokens[id] : nil }
    public func id(of token: String) -> Int? { tokenToID[token] }

    public func encode(_ text: String) -> [Int] {
        var bytes = Array((nfc ? text.precomposedStringWithCanonicalMapping : text).utf8)
        if addPrefixSpace, bytes.first != UInt8(ascii: " ") { bytes.insert(UInt8(ascii: " "), at: 0) }
        if let ids = sharedCache.withLockIfAvailable({ encode(bytes, &$0) }) { return ids }
        var cache = WordCache()
        return encode(bytes, &cache)
    }

    private func encode(_ bytes: [UInt8], _ cache: inout WordCache) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(bytes.count / 3)
        for segment in specials.segments(bytes) {
            switch segment {
            case let .special(id): out.append(id)
            case let .text(range):
                let text = ScalarText(utf8: bytes[range])
                preTokenizer.split(text) { r in
                    appendWord(bytes[text.offsets[r.lowerBound]..<text.offsets[r.upperBound]], &out, &cache)
                }
            }
        }
        return out
    }

    public func encodeForModel(_ text: String) -> [Int] { templatePrefix + encode(text) + templateSuffix }

    public func decode(_ ids: [Int]) -> String {
        var bytes: [UInt8] = []
        for id in ids where tokenBytes.indices.contains(id) { bytes += tokenBytes[id] }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The pre-tokenizer's words of `text` (special tokens cut out first), as text.
    public func words(_ text: String) -> [String] {
        let bytes = Array(text.utf8)
        var out: [String] = []
        for case let .text(range) in specials.segments(bytes) {
            let t = ScalarText(utf8: bytes[range])
            preTokenizer.split(t) { r in
                out.append(String(decoding: bytes[t.offsets[r.lowerBound]..<t.offsets[r.upperBound]], as: UTF8.self))
            }
        }
        return out
    }

    private func appendWord(_ word: ArraySlice<UInt8>, _ out: inout [Int], _ cache: inout WordCache) {
        if word.count == 1, byteTokens[Int(word.first!)] >= 0 {
            out.append(byteTokens[Int(word.first!)])
            return
        }
        let hash = WordCache.hash(word)
        if cache.append(word, hash: hash, to: &out) { return }
        let ids = bpe(word)
        cache.insert(word, hash: hash, ids: ids)
        out += ids
    }

    /// Merges the word's byte symbols, lowest rank first; all occurrences of the
    /// best pair are merged left to right in one pass (the same result as a
    /// priority queue ordered by rank then position).
    private func bpe(_ word: ArraySlice<UInt8>) -> [Int] {
        if ignoreMerges, let id = tokenToID[ByteLevel.encode(word)] { return [id] }
        var syms = word.map { byteTokens[Int($0)] }
        while syms.count > 1 {
            var best = UInt64.max
            var at = 0
            for i in 0..<(syms.count - 1) where syms[i] >= 0 && syms[i + 1] >= 0 {
                if let v = merges.get(syms[i], syms[i + 1]), v < best {
                    best = v
                    at = i
                }
            }
            if best == .max { break }
            let merged = Int(best & 0xFFFF_FFFF)
            let left = syms[at]
            let right = syms[at + 1]
            var next: [Int] = []
            next.reserveCapacity(syms.count - 1)
            var i = 0
            while i < syms.count {
                if i + 1 < syms.count && syms[i] == left && syms[i + 1] == right {
                    next.append(merged)
                    i += 2
                } else {
                    next.append(syms[i])
                    i += 1
                }
            }
            syms = next
        }
        // A byte missing from the vocabulary becomes <unk> if there is one.
        return syms.compactMap { $0 >= 0 ? $0 : specialTokens.unk }
    }
}
