import Foundation
import ModelIO
import Tokenizers

/// Builds a Hugging Face tokenizer.json from a GGUF byte-level BPE vocabulary (best
/// effort): model BPE with the GGUF vocab and merges, a pre-tokenizer Sequence of the
/// Split regexes llama.cpp uses for the GGUF pre name followed by ByteLevel (without
/// its own regex), decoder ByteLevel, and control / user-defined tokens as added
/// tokens. Unknown pre names fall back to GPT-2's regex (noted by the caller).
public enum TokenizerJSONBuilder {
    /// The tokenizer.json bytes (sorted keys), or nil when the GGUF has no gpt2-style BPE.
    public static func build(metadata md: [String: GGUFValue]) -> (json: Data, exactPre: Bool)? {
        guard md["tokenizer.ggml.model"]?.string == "gpt2",
            let tokens = md["tokenizer.ggml.tokens"]?.array?.compactMap(\.string),
            let merges = md["tokenizer.ggml.merges"]?.array?.compactMap(\.string)
        else { return nil }
        let types = md["tokenizer.ggml.token_type"]?.array?.compactMap(\.int) ?? []
        let pre = md["tokenizer.ggml.pre"]?.string ?? "default"
        let regexes = PreTokenizerNames.splitRegexes(ggufName: pre)
        var vocab: [String: Int] = [:]
        for (i, t) in tokens.enumerated() where vocab[t] == nil { vocab[t] = i }
        var added: [[String: Any]] = []
        for (i, t) in tokens.enumerated() where i < types.count && (types[i] == 3 || types[i] == 4) {
            added.append([
                "id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": types[i] == 4, "special": types[i] == 3,
            ])
        }
        var pretok: [[String: Any]] = (regexes ?? [PreTokenizerNames.gpt2Regex]).map {
            ["type": "Split", "pattern": ["Regex": $0], "behavior": "Isolated", "invert": false]
        }
        pretok.append(["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false])
        let obj: [String: Any] = [
            "version": "1.0",
            "truncation": NSNull(), "padding": NSNull(),
            "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": pretok],
            "post_processor": NSNull(),
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": PreTokenizerNames.ignoresMerges(ggufName: pre),
                "vocab": vocab, "merges": merges,
            ] as [String: Any],
        ]
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
        else {
            return nil
        }
        return (data, regexes != nil)
    }

    /// tokenizer_config.json with the special tokens the GGUF names.
    public static func config(metadata md: [String: GGUFValue]) -> Data? {
        guard let tokens = md["tokenizer.ggml.tokens"]?.array?.compactMap(\.string) else { return nil }
        func tok(_ key: String) -> Any {
            guard let i = md["tokenizer.ggml.\(key)_token_id"]?.int, i >= 0, i < tokens.count else { return NSNull() }
            return tokens[i]
        }
        var obj: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tok("bos"), "eos_token": tok("eos"),
            "unk_token": tok("unknown"), "pad_token": tok("padding"),
            "add_bos_token": md["tokenizer.ggml.add_bos_token"]?.bool ?? false,
            "add_eos_token": md["tokenizer.ggml.add_eos_token"]?.bool ?? false,
            "clean_up_tokenization_spaces": false, "model_max_length": 1_000_000_000,
        ]
        if let t = md["tokenizer.chat_template"]?.string { obj["chat_template"] = t }
        return try? JSONSerialization.data(
            withJSONObject: obj, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
