import Foundation
import TestSupport
import Tokenizers
import XCTest

final class SmolLM2TokenizerTests: XCTestCase {
    func tokenizer() throws -> BPETokenizer { try Assets.smollm2.get() }

    func testVocabularyAndSpecialIDs() throws {
        let t = try tokenizer()
        XCTAssertEqual(t.vocabularySize, 49152)
        XCTAssertEqual(t.specialTokens.bos, 1)
        XCTAssertEqual(t.specialTokens.eos, 2)
        XCTAssertEqual(t.token(1), "<|im_start|>")
        XCTAssertEqual(t.id(of: "<|im_end|>"), 2)
        // add_bos_token is false in this GGUF: nothing is added.
        XCTAssertEqual(t.encodeForModel("Hello world"), [19556, 905])
    }

    func testReferenceStrings() throws {
        let t = try tokenizer()
        let cases = try Assets.referenceTokens("smollm2/smollm2_reference.json")
        XCTAssertEqual(cases.count, 26)
        for (text, ids) in cases {
            XCTAssertEqual(t.encode(text), ids, "\(text.debugDescription): words \(t.words(text))")
        }
    }

    func testPromptIDs() throws {
        let json = try fixtureJSON("smollm2/smollm2_reference.json")
        let prompt = json["prompt"] as! String
        XCTAssertEqual(try tokenizer().encode(prompt), json["prompt_ids"] as! [Int])
    }

    func testFortunesEvalExactIDs() throws {
        let t = try tokenizer()
        let text = try String(contentsOf: Paths.fixture("text/fortunes_eval.txt"), encoding: .utf8)
        let expected = try FixtureTensors(Paths.fixture("smollm2/fortunes_eval_ids.safetensors")).ints("ids").map(
            Int.init)
        XCTAssertEqual(expected.count, 345_931)
        // Informational, not asserted: wall and CPU time (the machine may be shared).
        let start = Date()
        let cpu0 = clock()
        let ids = t.encode(text)
        let cpu = Double(clock() - cpu0) / Double(CLOCKS_PER_SEC)
        print(
            String(
                format: "fortunes_eval.txt: %d tokens in %.3f s wall, %.3f s CPU", ids.count,
                Date().timeIntervalSince(start), cpu))
        if let i = firstMismatch(ids, expected) {
            let lo = max(0, i - 8)
            XCTFail(
                """
                first mismatch at index \(i) of \(expected.count) (got \(ids.count) ids)
                expected \(Array(expected[lo..<min(expected.count, i + 8)])) = \(t.decode(Array(expected[lo..<min(expected.count, i + 8)])).debugDescription)
                got      \(Array(ids[lo..<min(ids.count, i + 8)])) = \(t.decode(Array(ids[lo..<min(ids.count, i + 8)])).debugDescription)
                """)
        }
        XCTAssertEqual(t.decode(ids), text, "decode(encode(fortunes_eval.txt)) differs")
    }

    func testFortunesCalibExactIDs() throws {
        let t = try tokenizer()
        let text = try String(contentsOf: Paths.fixture("text/fortunes_calib.txt"), encoding: .utf8)
        let expected = try FixtureTensors(Paths.fixture("smollm2/fortunes_calib_ids.safetensors")).ints("ids").map(
            Int.init)
        XCTAssertEqual(expected.count, 367_503)
        let ids = t.encode(text)
        XCTAssertNil(firstMismatch(ids, expected), "fortunes_calib.txt ids differ")
    }

    func testDecodeRoundTrip() throws {
        let t = try tokenizer()
        for (text, ids) in try Assets.referenceTokens("smollm2/smollm2_reference.json") {
            XCTAssertEqual(t.decode(ids), text)
            XCTAssertEqual(t.decode(t.encode(text)), text)
        }
        // A token may end inside a UTF-8 sequence; only whole sequences decode to text.
        XCTAssertEqual(t.decode([]), "")
    }

    private func firstMismatch(_ a: [Int], _ b: [Int]) -> Int? {
        for i in 0..<min(a.count, b.count) where a[i] != b[i] { return i }
        return a.count == b.count ? nil : min(a.count, b.count)
    }
}
