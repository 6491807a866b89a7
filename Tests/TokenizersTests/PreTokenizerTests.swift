import Foundation
import Tokenizers
import XCTest

final class PreTokenizerTests: XCTestCase {
    /// A vocabulary of the 256 byte tokens only: enough to run the pre-tokenizer.
    func byteVocabulary() -> [String] {
        var tokens: [String] = []
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            let v =
                printable
                ? UInt32(b)
                : {
                    defer { next += 1 }
                    return next
                }()
            tokens.append(String(Character(Unicode.Scalar(v)!)))
        }
        return tokens
    }

    func testSplitsMatchReferenceRegexes() throws {
        for (name, ggufName) in [("gpt2", "gpt2"), ("llama3", "llama-bpe"), ("qwen2", "qwen2")] {
            let t = try BPETokenizer(tokens: byteVocabulary(), merges: [], preTokenizer: ggufName)
            for (text, expected) in zip(preTokenizerTexts, expectedWords[name]!) {
                XCTAssertEqual(t.words(text), expected, "\(name): \(text.debugDescription)")
                // Without merges every byte is its own token.
                XCTAssertEqual(t.encode(text).count, text.utf8.count)
                XCTAssertEqual(t.decode(t.encode(text)), text)
            }
        }
    }

    func testSmolLMSplitsDigitsOneByOne() throws {
        let t = try BPETokenizer(tokens: byteVocabulary(), merges: [], preTokenizer: "smollm")
        XCTAssertEqual(t.words("abc 1234 x٣٤"), ["abc", " ", "1", "2", "3", "4", " x", "٣", "٤"])
    }

    func testUnsupportedNamesTheKey() {
        XCTAssertThrowsError(try BPETokenizer(tokens: byteVocabulary(), merges: [], preTokenizer: "nonesuch")) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(key: "tokenizer.ggml.pre", value: "nonesuch"))
        }
        let json = #"{"model": {"type": "Unigram", "vocab": []}}"#
        XCTAssertThrowsError(try makeTokenizer(tokenizerJSON: Data(json.utf8))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(key: "model.type", value: "Unigram"))
        }
        let split =
            #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}}"#
        XCTAssertThrowsError(try makeTokenizer(tokenizerJSON: Data(split.utf8))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(key: "pre_tokenizer.pattern", value: #"\w+"#))
        }
    }
}
