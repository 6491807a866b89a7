import Foundation
import ModelIO
import Tokenizers

// Glue from ModelIO's TokenizerSource to the Tokenizers layer: GGUF metadata
// values become plain Swift arrays; files are read here, parsed there.

/// The tokenizer a model file describes. Errors name the key that is missing
/// or holds an unsupported value (tokenizer model, pre-tokenizer, ...).
public func loadTokenizer(_ source: TokenizerSource) throws -> any Tokenizer {
    switch source {
    case let .ggufMetadata(md):
        return try ggufTokenizer(md)
    case let .tokenizerJSON(url):
        return try makeTokenizer(tokenizerJSON: Data(contentsOf: url))
    case let .vocabTxt(url):
        return WordPieceTokenizer(vocabTxt: try String(contentsOf: url, encoding: .utf8))
    }
}

private func ggufTokenizer(_ md: [String: GGUFValue]) throws -> any Tokenizer {
    let modelKey = "tokenizer.ggml.model"
    guard let model = md[modelKey]?.string else { throw TokenizerError.missing(key: modelKey) }
    // "gpt2" is llama.cpp's name for byte-level BPE (SmolLM, Llama 3, Qwen2);
    // SentencePiece ("llama") and others are not implemented.
    guard model == "gpt2" else { throw TokenizerError.unsupported(key: modelKey, value: model) }

    func strings(_ key: String) throws -> [String] {
        guard let array = md[key]?.array else { throw TokenizerError.missing(key: key) }
        return try array.map {
            guard let s = $0.string else { throw TokenizerError.invalid(key: key, reason: "not an array of strings") }
            return s
        }
    }
    let preKey = "tokenizer.ggml.pre"
    guard let pre = md[preKey]?.string else { throw TokenizerError.missing(key: preKey) }
    let tokens = try strings("tokenizer.ggml.tokens")
    // Special ids are copied into outputs and used at inference: one outside the
    // vocabulary is a damaged header, not something to carry along.
    func id(_ name: String) throws -> Int? {
        let key = "tokenizer.ggml.\(name)_token_id"
        guard let v = md[key] else { return nil }
        guard let i = v.int, (0..<tokens.count).contains(i) else {
            throw TokenizerError.invalid(
                key: key, reason: "\(v) is not a token id of the \(tokens.count)-token vocabulary")
        }
        return i
    }
    return try BPETokenizer(
        tokens: tokens,
        merges: strings("tokenizer.ggml.merges"),
        tokenTypes: md["tokenizer.ggml.token_type"]?.array?.compactMap(\.int),
        preTokenizer: pre,
        specialTokens: SpecialTokenIDs(
            bos: try id("bos"), eos: try id("eos"), unk: try id("unknown"),
            pad: try id("padding"), cls: try id("cls"),
            sep: try id("seperator") ?? id("separator"), mask: try id("mask")),
        addBOS: md["tokenizer.ggml.add_bos_token"]?.bool ?? false,
        addEOS: md["tokenizer.ggml.add_eos_token"]?.bool ?? false)
}
