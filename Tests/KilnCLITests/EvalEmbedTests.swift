import Foundation
import TestSupport
import XCTest

final class EvalEmbedTests: XCTestCase {
    /// `kiln eval` end to end (tokenizer + model + protocol) against transformers'
    /// per-window NLL sums for the first windows of fortunes_eval.txt.
    func testEvalReproducesReferenceWindows() throws {
        let r = try ProcessRun.kiln([
            "eval", Paths.smollm2.path, "--text", Paths.fixture("text/fortunes_eval.txt").path,
            "--ctx", "512", "--windows", "2", "--json",
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try r.json()
        let ref = try fixtureJSON("smollm2/smollm2_reference.json")
        let sums = (ref["window_nll_sums"] as! [Double]).prefix(2)
        let expected = Foundation.exp(sums.reduce(0, +) / Double(511 * 2))
        let ppl = obj["perplexity"] as! Double
        XCTAssertEqual(ppl, expected, accuracy: expected * 1e-3)
        XCTAssertEqual(obj["tokens"] as? Int, ref["total_tokens_in_text"] as? Int)
        XCTAssertEqual(obj["windows"] as? Int, 2)
    }

    func testEvalRejectsBadArguments() throws {
        let text = Paths.fixture("text/fortunes_eval.txt").path
        var r = try ProcessRun.kiln(["eval", Paths.smollm2.path, "--text", text, "--windows", "100000"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("lower --windows"), r.stderr)
        r = try ProcessRun.kiln(["eval", Paths.smollm2.path, "--text", "/nonexistent/file.txt"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("/nonexistent/file.txt"), r.stderr)
        r = try ProcessRun.kiln(["eval", Paths.minilmDir.path, "--text", text, "--windows", "1"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("bert"), r.stderr)
    }

    /// `kiln embed` on the reference sentences: tokenizer.json + BERT + pooling
    /// must agree with sentence-transformers' embeddings.
    func testEmbedMatchesSentenceTransformers() throws {
        let ref = try fixtureJSON("minilm/minilm_reference.json")
        let sentences = ref["sentences"] as! [String]
        let dir = Paths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("sentences.txt")
        try sentences.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
        let r = try ProcessRun.kiln(["embed", Paths.minilmDir.path, "--text", input.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = (try r.json()["embeddings"] as! [[Double]])
        let expected = try FixtureTensors(Paths.fixture("minilm/minilm_reference.safetensors")).floats("embeddings")
        XCTAssertEqual(got.count, sentences.count)
        for (i, e) in got.enumerated() {
            let refRow = expected[(i * 384)..<((i + 1) * 384)].map(Double.init)
            let dot = zip(e, refRow).reduce(0) { $0 + $1.0 * $1.1 }
            let na = e.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let nb = refRow.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertGreaterThanOrEqual(dot / (na * nb), 0.9999, "sentence \(i): \(sentences[i])")
        }
    }

    func testEmbedRejectsCausalModel() throws {
        let dir = Paths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("s.txt")
        try "hello".write(to: input, atomically: true, encoding: .utf8)
        let r = try ProcessRun.kiln(["embed", Paths.smollm2.path, "--text", input.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), r.stderr)
    }
}
