import Foundation
import ModelIO
import Tokenizers
import XCTest

/// The tokenizer.json path of byte-level BPE, on a tokenizer.json assembled in
/// memory from the GGUF's vocabulary with SmolLM2's Hugging Face pre-tokenizer
/// (Digits individually, then ByteLevel with its regex).
final class TokenizerJSONBPETests: XCTestCase {
    func makeJSON(preTokenizer: [String: Any]) throws -> Data {
        let md = try Assets.smollm2Metadata()
        let tokens = md["tokenizer.ggml.tokens"]!.array!.map { $0.string! }
        let types = md["tokenizer.ggml.token_type"]!.array!.map { $0.int! }
        var vocab: [String: Int] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        let added = tokens.indices.filter { types[$0] == 3 }.map {
            ["id": $0, "content": tokens[$0], "special": true] as [String: Any]
        }
        let json: [String: Any] = [
            "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": preTokenizer,
            "post_processor": [
                "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true,
            ],
            "decoder": ["type": "ByteLevel"],
            "model": [
                "type": "BPE", "vocab": vocab, "merges": md["tokenizer.ggml.merges"]!.array!.map { $0.string! },
                "unk_token": "<|endoftext|>", "ignore_merges": false,
            ],
        ]
        return try JSONSerialization.data(withJSONObject: json)
    }

    func testSmolLM2ReferenceStringsViaTokenizerJSON() throws {
        let pre: [String: Any] = [
            "type": "Sequence",
            "pretokenizers": [
                ["type": "Digits", "individual_digits": true],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            ],
        ]
        let t = try makeTokenizer(tokenizerJSON: makeJSON(preTokenizer: pre))
        XCTAssertTrue(t is BPETokenizer)
        XCTAssertEqual(t.vocabularySize, 49152)
        XCTAssertEqual(t.specialTokens.eos, 0)  // "<|endoftext|>" by name; tokenizer.json has no eos field
        for (text, ids) in try Assets.referenceTokens("smollm2/smollm2_reference.json") {
            XCTAssertEqual(t.encode(text), ids, text.debugDescription)
            XCTAssertEqual(t.decode(ids), text)
        }
    }

    func testSplitRegexAndMerges() throws {
        // The same vocabulary with a Llama-3 style Split + ByteLevel(use_regex false):
        // numbers go in groups of up to three instead of one by one.
        let regex =
            #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let pre: [String: Any] = [
            "type": "Sequence",
            "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": regex], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ],
        ]
        let t = try BPETokenizer(tokenizerJSON: makeJSON(preTokenizer: pre))
        XCTAssertEqual(t.words("x 1234567;\n"), ["x", " ", "123", "456", "7", ";\n"])
        XCTAssertEqual(t.decode(t.encode("Hello world 1234567")), "Hello world 1234567")
    }
}
