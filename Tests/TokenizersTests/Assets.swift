import Foundation
import ModelIO
import TestSupport
import Tokenizers

// Tokenizers built once per test run from the real assets.

enum Assets {
    /// SmolLM2's tokenizer from its GGUF metadata.
    static let smollm2: Result<BPETokenizer, Error> = Result { try bpe(from: smollm2Metadata()) }

    static var minilmTokenizerJSON: URL { Paths.minilmDir.appendingPathComponent("tokenizer.json") }
    static var minilmVocabTxt: URL { Paths.minilmDir.appendingPathComponent("vocab.txt") }

    // TEMPORARY until branch modelio has a GGUF reader: metadata dumped by gguf-py.
    static func smollm2Metadata() throws -> [String: GGUFValue] {
        let url = URL(fileURLWithPath: "/tmp/smollm2_tok.json")
        let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        func value(_ v: Any) -> GGUFValue {
            if let s = v as? String { return .string(s) }
            if let i = v as? Int { return .int64(Int64(i)) }
            if let a = v as? [Any] { return .array(a.map(value)) }
            return .string("\(v)")
        }
        var md = obj.mapValues(value)
        for k in ["tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"] { md[k] = md[k].map { .bool($0.int == 1) } }
        return md
    }

    /// The same conversion Models/TokenizerLoading.swift does (tests cannot import Models).
    static func bpe(from md: [String: GGUFValue]) throws -> BPETokenizer {
        func strings(_ key: String) throws -> [String] {
            guard let a = md[key]?.array else { throw TokenizerError.missing(key: key) }
            return a.compactMap(\.string)
        }
        return try BPETokenizer(
            tokens: strings("tokenizer.ggml.tokens"), merges: strings("tokenizer.ggml.merges"),
            tokenTypes: md["tokenizer.ggml.token_type"]?.array?.compactMap(\.int),
            preTokenizer: md["tokenizer.ggml.pre"]?.string ?? "default",
            specialTokens: SpecialTokenIDs(bos: md["tokenizer.ggml.bos_token_id"]?.int,
                                           eos: md["tokenizer.ggml.eos_token_id"]?.int,
                                           unk: md["tokenizer.ggml.unknown_token_id"]?.int,
                                           pad: md["tokenizer.ggml.padding_token_id"]?.int),
            addBOS: md["tokenizer.ggml.add_bos_token"]?.bool ?? false,
            addEOS: md["tokenizer.ggml.add_eos_token"]?.bool ?? false)
    }

    /// (text, ids) pairs of a reference JSON's "tokens" list.
    static func referenceTokens(_ fixture: String) throws -> [(text: String, ids: [Int])] {
        let list = try fixtureJSON(fixture)["tokens"] as! [[String: Any]]
        return list.map { ($0["text"] as! String, $0["ids"] as! [Int]) }
    }
}
