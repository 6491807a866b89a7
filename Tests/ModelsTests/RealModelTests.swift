import Foundation
import ModelIO
import Models
import Tensor
import TestSupport
import XCTest

/// Whole-model checks against the reference fixtures (run with `swift test -c release`).
final class SmolLM2Tests: XCTestCase {
    nonisolated(unsafe) static var cached: LlamaModel?

    func model() throws -> LlamaModel {
        if let m = Self.cached { return m }
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: Paths.smollm2.path), "SmolLM2 asset missing: run Ops/fetch-assets.sh"
        )
        let m = try loadCausalLM(view: try openModel(Paths.smollm2))
        Self.cached = m
        return m
    }

    func reference() throws -> [String: Any] { try fixtureJSON("smollm2/smollm2_reference.json") }

    func testPromptLogitsHiddenRMSAndTop10() throws {
        let m = try model()
        XCTAssertEqual(m.hyper.ropeLayout, .interleaved)
        let ref = try reference()
        let ids = (ref["prompt_ids"] as! [Int]).map(Int32.init)
        var rms: [Float] = []
        let logits = try m.forward(ids: ids, observe: { rms.append(Kernels.rms($1)) })
        let expected = try FixtureTensors(Paths.fixture("smollm2/smollm2_prompt_logits.safetensors"))
        XCTAssertEqual(expected.shape("prompt_logits"), logits.shape)
        let logitDiff = maxRelDiff(logits.data, expected.floats("prompt_logits"))
        XCTAssertLessThan(logitDiff, 1e-3)

        let refRMS = (ref["hidden_rms"] as! [Double]).map(Float.init)
        XCTAssertEqual(rms.count, refRMS.count)
        let rmsDiff = zip(rms, refRMS).map { abs($0 - $1) / $1 }.max()!
        XCTAssertLessThan(rmsDiff, 1e-4)

        let last = logits.rows(ids.count - 1..<ids.count).data
        let top = last.indices.sorted { last[$0] > last[$1] }.prefix(10)
        let refTop = (ref["last_position_top10"] as! [[Double]])
        XCTAssertEqual(Array(top), refTop.map { Int($0[0]) })
        for (i, r) in zip(top, refTop) { XCTAssertEqual(Double(last[i]), r[1], accuracy: 2e-3 * abs(r[1])) }
        print("SmolLM2 prompt: logits max-abs-diff / max-abs = \(logitDiff); hidden_rms max rel diff = \(rmsDiff)")

        // The same model with q/k un-permuted to the Hugging Face layout (rotate_half RoPE).
        let hf = try loadCausalLM(
            view: try openModel(Paths.smollm2), options: ModelLoadOptions(lazyBlocks: true, ropeLayout: .halves))
        let hfLogits = try hf.forward(ids: ids)
        let layoutDiff = maxRelDiff(hfLogits.data, logits.data)
        XCTAssertLessThan(layoutDiff, 1e-5)
        print("SmolLM2 GGUF-layout vs HF-layout (lazy) logits rel diff = \(layoutDiff)")
    }

    func testPerplexityFirst8Windows() throws {
        let m = try model()
        let ref = try reference()
        let ids = try FixtureTensors(Paths.fixture("smollm2/fortunes_eval_ids.safetensors")).ints("ids")
        XCTAssertEqual(ids.count, ref["total_tokens_in_text"] as? Int)
        let start = Date()
        let r = try Perplexity.evaluate(model: m, ids: ids, contextLength: 512, windows: 8)
        let seconds = Date().timeIntervalSince(start)
        let expected = ref["ppl_first_8_windows"] as! Double
        XCTAssertEqual(r.perplexity, expected, accuracy: expected * 1e-3)
        let refSums = ref["window_nll_sums"] as! [Double]
        for (a, b) in zip(r.windowNLLSums, refSums) { XCTAssertEqual(a, b, accuracy: b * 1e-3) }
        print(
            String(
                format: "SmolLM2 ppl first 8 windows = %.4f (reference %.4f, rel diff %.2e), %.2f s",
                r.perplexity, expected, abs(r.perplexity - expected) / expected, seconds))
    }
}

final class MiniLMTests: XCTestCase {
    func testSentenceEmbeddingsAndLastHiddenState() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Paths.minilmDir.path), "MiniLM asset missing")
        let m = try loadBERT(view: try openModel(Paths.minilmDir))
        let ref = try fixtureJSON("minilm/minilm_reference.json")
        let sentences = ref["sentences"] as! [String]
        let tokens = ref["tokens"] as! [[String: Any]]
        func ids(_ s: String) -> [Int32] {
            (tokens.first { $0["text"] as? String == s }!["ids"] as! [Int]).map(Int32.init)
        }
        let fx = try FixtureTensors(Paths.fixture("minilm/minilm_reference.safetensors"))
        let emb = fx.floats("embeddings")
        let dim = fx.shape("embeddings")[1]
        var worst: Float = 1
        for (i, s) in sentences.enumerated() {
            let e = m.embed(ids(s))
            XCTAssertEqual(e.count, dim)
            let r = Array(emb[(i * dim)..<((i + 1) * dim)])
            var dot: Float = 0
            var nr: Float = 0
            for j in 0..<dim {
                dot += e[j] * r[j]
                nr += r[j] * r[j]
            }
            let cos = dot / nr.squareRoot()
            worst = min(worst, cos)
            XCTAssertGreaterThanOrEqual(cos, 0.9999, s)
        }
        // Sentence 0 was run in a padded batch: pad with [PAD] = 0 under a zero attention mask.
        let shape = fx.shape("last_hidden_state_sentence0")
        var padded = ids(sentences[0])
        let real = padded.count
        padded += [Int32](repeating: 0, count: shape[0] - real)
        let mask = (0..<shape[0]).map { Int32($0 < real ? 1 : 0) }
        let h = m.lastHiddenState(padded, attentionMask: mask)
        XCTAssertEqual(h.shape, shape)
        let refH = fx.floats("last_hidden_state_sentence0")
        let realDiff = maxRelDiff(Array(h.data[0..<(real * dim)]), Array(refH[0..<(real * dim)]))
        let allDiff = maxRelDiff(h.data, refH)
        XCTAssertLessThan(realDiff, 1e-4)
        XCTAssertLessThan(allDiff, 1e-4)
        // Without padding the real rows are the same.
        let unpadded = m.lastHiddenState(ids(sentences[0]))
        XCTAssertLessThan(maxRelDiff(unpadded.data, Array(refH[0..<(real * dim)])), 1e-4)
        print(
            "MiniLM: worst embedding cosine = \(worst); last_hidden_state rel diff real rows \(realDiff), all rows \(allDiff)"
        )
    }

    func testBertHooks() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Paths.minilmDir.path), "MiniLM asset missing")
        let m = try loadBERT(view: try openModel(Paths.minilmDir))
        var seen: [(Int, [String], [Int])] = []
        _ = m.lastHiddenState([101, 7592, 2088, 102], hook: { seen.append(($0.block, $0.linears, $0.input.shape)) })
        XCTAssertEqual(seen.count, 4 * m.blockCount)
        XCTAssertEqual(seen.prefix(4).map(\.1), BertBlock.linearGroups)
        XCTAssertEqual(seen[3].2, [4, 1536])
        XCTAssertThrowsError(try loadCausalLM(view: try openModel(Paths.minilmDir)))
    }
}

/// Text in, numbers out: ModelIO + Tokenizers + Models together.
final class EndToEndTests: XCTestCase {
    func testSmolLM2FromText() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Paths.smollm2.path), "SmolLM2 asset missing")
        let view = try openModel(Paths.smollm2)
        let tok = try loadTokenizer(try XCTUnwrap(view.tokenizer))
        let ref = try fixtureJSON("smollm2/smollm2_reference.json")
        let ids = tok.encodeForModel(ref["prompt"] as! String).map(Int32.init)
        XCTAssertEqual(ids.map(Int.init), ref["prompt_ids"] as! [Int])
        let m = try loadCausalLM(view: view, options: ModelLoadOptions(lazyBlocks: true))
        let logits = try m.forward(ids: ids)
        let last = logits.rows(ids.count - 1..<ids.count).data
        let best = last.indices.max { last[$0] < last[$1] }!
        XCTAssertEqual(tok.decode([best]), " Berlin")
    }

    func testMiniLMFromText() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Paths.minilmDir.path), "MiniLM asset missing")
        let view = try openModel(Paths.minilmDir)
        let tok = try loadTokenizer(try XCTUnwrap(view.tokenizer))
        let m = try loadBERT(view: view)
        let ref = try fixtureJSON("minilm/minilm_reference.json")
        let sentences = ref["sentences"] as! [String]
        let fx = try FixtureTensors(Paths.fixture("minilm/minilm_reference.safetensors"))
        let emb = fx.floats("embeddings")
        for i in [0, 6] {
            let e = m.embed(tok.encodeForModel(sentences[i]).map(Int32.init))
            var dot: Float = 0
            for j in 0..<e.count { dot += e[j] * emb[i * e.count + j] }
            XCTAssertGreaterThanOrEqual(dot, 0.9999, sentences[i])
        }
    }
}
