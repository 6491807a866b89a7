import Foundation
import ModelIO
import Tokenizers
import XCTest

/// Errors name the key at fault.
final class LoadingErrorTests: XCTestCase {
    func testUnsupportedGGUFPreTokenizer() throws {
        var md = try Assets.smollm2Metadata()
        md["tokenizer.ggml.pre"] = .string("nonesuch")
        XCTAssertThrowsError(try Assets.bpe(from: md)) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(key: "tokenizer.ggml.pre", value: "nonesuch"))
            XCTAssertEqual("\(e)", "tokenizer: unsupported tokenizer.ggml.pre = nonesuch")
        }
    }

    func testMalformedMerge() {
        XCTAssertThrowsError(try BPETokenizer(tokens: ["a", "b"], merges: ["ab"], preTokenizer: "gpt2")) { e in
            guard case .invalid(key: "tokenizer.ggml.merges", _)? = e as? TokenizerError else {
                return XCTFail("\(e)")
            }
        }
    }

    func testUnsupportedNormalizerAndPreTokenizerTypes() {
        let norm = #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "NFKC"}}"#
        XCTAssertThrowsError(try makeTokenizer(tokenizerJSON: Data(norm.utf8))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(key: "normalizer.type", value: "NFKC"))
        }
        let meta = #"{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}}"#
        XCTAssertThrowsError(try makeTokenizer(tokenizerJSON: Data(meta.utf8))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(key: "pre_tokenizer.type", value: "Metaspace"))
        }
        let wp = #"{"model": {"type": "WordPiece", "vocab": {}}, "pre_tokenizer": {"type": "Whitespace"}}"#
        XCTAssertThrowsError(try makeTokenizer(tokenizerJSON: Data(wp.utf8))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(key: "pre_tokenizer.type", value: "Whitespace"))
        }
    }
}
