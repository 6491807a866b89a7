import Foundation
import TestSupport
import Tokenizers
import XCTest

final class MiniLMTokenizerTests: XCTestCase {
    func fromJSON() throws -> WordPieceTokenizer {
        try WordPieceTokenizer(tokenizerJSON: Data(contentsOf: Assets.minilmTokenizerJSON))
    }

    func fromVocabTxt() throws -> WordPieceTokenizer {
        try WordPieceTokenizer(vocabTxt: String(contentsOf: Assets.minilmVocabTxt, encoding: .utf8))
    }

    func check(_ t: WordPieceTokenizer, _ label: String) throws {
        let cases = try Assets.referenceTokens("minilm/minilm_reference.json")
        XCTAssertEqual(cases.count, 36)
        for (text, ids) in cases {
            XCTAssertEqual(t.encodeForModel(text), ids, "\(label): \(text.debugDescription)")
        }
        // The sentences the embeddings were computed for are among the cases.
        let sentences = try fixtureJSON("minilm/minilm_reference.json")["sentences"] as! [String]
        XCTAssertEqual(Set(sentences).subtracting(cases.map(\.text)), [])
    }

    func testTokenizerJSON() throws { try check(fromJSON(), "tokenizer.json") }

    func testVocabTxt() throws { try check(fromVocabTxt(), "vocab.txt") }

    func testSpecialTokens() throws {
        for t in [try fromJSON(), try fromVocabTxt()] {
            XCTAssertEqual(t.vocabularySize, 30522)
            XCTAssertEqual(t.specialTokens, SpecialTokenIDs(unk: 100, pad: 0, cls: 101, sep: 102, mask: 103))
            XCTAssertEqual(t.encode("Hello world"), [7592, 2088])
            // Special tokens written in the text are single tokens, not "[", "cl", ...
            XCTAssertEqual(t.encode("a [SEP] b[MASK]"), [1037, 102, 1038, 103])
        }
    }

    func testDecode() throws {
        let t = try fromJSON()
        XCTAssertEqual(t.decode(t.encode("The quick brown fox, it's lazy.")), "the quick brown fox, it's lazy.")
        XCTAssertEqual(t.decode(t.encode("Supercalifragilistic")), "supercalifragilistic")
        XCTAssertEqual(t.decode([101, 7592, 102]), "[CLS] hello [SEP]")
    }

    func testOverlongWordIsUnknown() throws {
        let t = try fromVocabTxt()
        XCTAssertEqual(t.encode(String(repeating: "a", count: 101)), [100])
        XCTAssertNotEqual(t.encode(String(repeating: "a", count: 100)), [100])
    }
}
