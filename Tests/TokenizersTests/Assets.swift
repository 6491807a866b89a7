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

    /// tokenizer.* metadata of the SmolLM2 GGUF, read by ModelIO.
    static func smollm2Metadata() throws -> [String: GGUFValue] {
        guard case let .ggufMetadata(md)? = try openModel(Paths.smollm2).tokenizer else {
            throw TokenizerError.missing(key: "tokenizer.ggml.*")
        }
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
            specialTokens: SpecialTokenIDs(
                bos: md["tokenizer.ggml.bos_token_id"]?.int,
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
