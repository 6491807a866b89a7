import Foundation
import Tokenizers
import XCTest

/// The one pre-tokenizer table: every GGUF name splits the same whether the tokenizer comes
/// from GGUF metadata or from a tokenizer.json carrying the table's regexes.
final class PreTokenizerTableTests: XCTestCase {
    func testEveryNameSplitsAlikeFromGGUFAndTokenizerJSON() throws {
        let vocabulary = byteTokens()
        let texts = preTokenizerTexts + ["x 1234567;\n", "It's 2024-12-31, he'LL pay $5.99\r\n  ok"]
        for name in PreTokenizerNames.all {
            let regexes = try XCTUnwrap(PreTokenizerNames.splitRegexes(ggufName: name))
            let gguf = try BPETokenizer(tokens: vocabulary, merges: [], preTokenizer: name)
            var vocab: [String: Int] = [:]
            for (i, t) in vocabulary.enumerated() { vocab[t] = i }
            let splits: [[String: Any]] = regexes.map {
                ["type": "Split", "pattern": ["Regex": $0], "behavior": "Isolated", "invert": false]
            }
            let json: [String: Any] = [
                "added_tokens": [[String: Any]](),
                "pre_tokenizer": [
                    "type": "Sequence",
                    "pretokenizers": splits + [["type": "ByteLevel", "add_prefix_space": false, "use_regex": false]],
                ],
                "decoder": ["type": "ByteLevel"],
                "model": [
                    "type": "BPE", "vocab": vocab, "merges": [String](),
                    "ignore_merges": PreTokenizerNames.ignoresMerges(ggufName: name),
                ],
            ]
            let hf = try BPETokenizer(tokenizerJSON: JSONSerialization.data(withJSONObject: json))
            for text in texts { XCTAssertEqual(gguf.words(text), hf.words(text), "\(name): \(text.debugDescription)") }
        }
    }

    func testFamilies() throws {
        let vocabulary = byteTokens()
        func words(_ name: String) throws -> [String] {
            try BPETokenizer(tokens: vocabulary, merges: [], preTokenizer: name).words("ab 1234567")
        }
        for name in ["smollm", "exaone", "minerva-7b", "starcoder"] {
            XCTAssertEqual(try words(name), ["ab", " ", "1", "2", "3", "4", "5", "6", "7"], name)
        }
        for name in ["gpt2", "jina-v2-es", "olmo"] { XCTAssertEqual(try words(name), ["ab", " 1234567"], name) }
        for name in ["llama-bpe", "falcon3"] { XCTAssertEqual(try words(name), ["ab", " ", "123", "456", "7"], name) }
        for name in ["qwen2", "deepseek-r1-qwen"] {
            XCTAssertEqual(try words(name), ["ab", " ", "1", "2", "3", "4", "5", "6", "7"], name)
        }
        XCTAssertTrue(PreTokenizerNames.ignoresMerges(ggufName: "llama-bpe"))
        XCTAssertFalse(PreTokenizerNames.ignoresMerges(ggufName: "qwen2"))
        XCTAssertNil(PreTokenizerNames.splitRegexes(ggufName: "no-such-pre"))
        XCTAssertThrowsError(try BPETokenizer(tokens: vocabulary, merges: [], preTokenizer: "no-such-pre"))
    }
}

/// The 256 byte tokens of GPT-2's byte-level alphabet: enough to run a pre-tokenizer.
private func byteTokens() -> [String] {
    var next: UInt32 = 256
    return (0..<256).map { b in
        let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
        if printable { return String(Character(Unicode.Scalar(UInt32(b))!)) }
        defer { next += 1 }
        return String(Character(Unicode.Scalar(next)!))
    }
}
