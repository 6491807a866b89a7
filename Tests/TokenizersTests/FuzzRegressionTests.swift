import Foundation
import TestSupport
import Tokenizers
import XCTest

/// tokenizer.json inputs Fuzz/tokenizer.swift once crashed on, replayed through the
/// same entry point (makeTokenizer): each must now be refused with a TokenizerError.
final class TokenizerFuzzRegressionTests: XCTestCase {
    func testRecordedInputsAreRefused() throws {
        let inputs = Paths.fuzzInputs("tokenizer")
        XCTAssertFalse(inputs.isEmpty, "no inputs under Tests/Fixtures/fuzz/tokenizer")
        for url in inputs {
            XCTAssertThrowsError(try makeTokenizer(tokenizerJSON: Data(contentsOf: url)), url.lastPathComponent) {
                error in
                XCTAssertTrue(error is TokenizerError, "\(url.lastPathComponent): \(error)")
            }
        }
    }

    func wordPiece(vocab: String, added: String = "[]") -> Data {
        Data(#"{"model": {"type": "WordPiece", "vocab": \#(vocab)}, "added_tokens": \#(added)}"#.utf8)
    }

    func bpe(vocab: String, added: String = "[]") -> Data {
        let model = #"{"type": "BPE", "vocab": \#(vocab), "merges": []}"#
        return Data(#"{"model": \#(model), "added_tokens": \#(added), "pre_tokenizer": {"type": "ByteLevel"}}"#.utf8)
    }

    func assertInvalid(_ data: Data, key: String, _ fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try makeTokenizer(tokenizerJSON: data), line: line) { error in
            guard case let .invalid(k, reason)? = error as? TokenizerError else {
                return XCTFail("\(error)", line: line)
            }
            XCTAssertEqual(k, key, line: line)
            XCTAssertTrue(reason.contains(fragment), "'\(reason)' does not mention '\(fragment)'", line: line)
        }
    }

    /// An id far beyond the entries sized the vocabulary array by it (16 GB for 1e9).
    func testHugeVocabularyIDIsRefused() {
        assertInvalid(wordPiece(vocab: #"{"a": 0, "b": 1000000000}"#), key: "model.vocab", "id 1000000000 of b")
        assertInvalid(bpe(vocab: #"{"a": 0, "b": 1000000000}"#), key: "model.vocab", "id 1000000000 of b")
    }

    /// A negative added-token id indexed the vocabulary (a trap); a huge one grew it.
    func testAddedTokenIDsAreChecked() {
        for make in [wordPiece, bpe] {
            assertInvalid(make(#"{"a": 0}"#, #"[{"id": -1, "content": "[X]"}]"#), key: "added_tokens", "id -1 of [X]")
            assertInvalid(
                make(#"{"a": 0}"#, #"[{"id": 5000000000, "content": "[X]"}]"#), key: "added_tokens", "id 5000000000")
        }
    }

    /// Gaps stay allowed: ids need not be dense.
    func testSparseIDsStillLoad() throws {
        let json = wordPiece(vocab: #"{"[UNK]": 0, "a": 3, "b": 7}"#, added: #"[{"id": 9, "content": "[X]"}]"#)
        let tok = try makeTokenizer(tokenizerJSON: json)
        XCTAssertEqual(tok.vocabularySize, 10)
        XCTAssertEqual(tok.encode("a b [X]"), [3, 7, 9])
    }
}
