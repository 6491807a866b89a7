import Foundation
import ModelIO
import Models
import Tensor
import XCTest

/// Fast tests on a tiny generated model: against an independent Double reference,
/// GGUF vs HF layout, hooks, replaced weights, lazy loading, errors, perplexity.
final class SyntheticLlamaTests: XCTestCase {
    let ids: [Int32] = [3, 17, 42, 5, 60, 0, 9, 33, 33, 12, 1, 58, 7, 21, 44, 2, 19]

    func testMatchesReferenceInBothLayouts() throws {
        for (bias, arch) in [(false, "llama"), (true, "qwen2"), (true, "llama")] {
            let tiny = TinyLlama(seed: 7, tied: !bias, bias: bias, architecture: arch)
            let ref = tiny.referenceLogits(ids.map(Int.init)).flatMap { $0.map(Float.init) }
            let hf = try loadCausalLM(view: tiny.hfView())
            let gguf = try loadCausalLM(view: tiny.ggufView())
            let ggufAsHF = try loadCausalLM(view: tiny.ggufView(), options: ModelLoadOptions(ropeLayout: .halves))
            let hfAsGGUF = try loadCausalLM(view: tiny.hfView(), options: ModelLoadOptions(ropeLayout: .interleaved))
            XCTAssertEqual(hf.hyper.ropeLayout, .halves)
            XCTAssertEqual(gguf.hyper.ropeLayout, arch == "qwen2" ? .halves : .interleaved)
            for (name, m) in [("hf", hf), ("gguf", gguf), ("gguf->hf", ggufAsHF), ("hf->gguf", hfAsGGUF)] {
                let logits = try m.forward(ids: ids)
                XCTAssertEqual(logits.shape, [ids.count, tiny.config.vocabSize])
                XCTAssertLessThan(maxRelDiff(logits.data, ref), 2e-5, "\(arch) bias \(bias) \(name)")
            }
            // Un-permuting the GGUF q/k rows gives back the HF weights exactly.
            XCTAssertEqual(try ggufAsHF.blockWeights(1), try hf.blockWeights(1))
        }
    }

    func testLongSequenceCrossesAttentionRowBlocks() throws {
        // More tokens than the attention row block (128) exercises the causal chunking.
        let tiny = TinyLlama(seed: 3, layers: 1)
        let long = (0..<300).map { Int32(($0 * 37 + 11) % 61) }
        let ref = tiny.referenceLogits(long.map(Int.init)).flatMap { $0.map(Float.init) }
        let m = try loadCausalLM(view: tiny.ggufView())
        XCTAssertLessThan(maxRelDiff(try m.forward(ids: long).data, ref), 2e-5)
    }

    func testHooksSeeEveryLinearInput() throws {
        let tiny = TinyLlama(seed: 2, layers: 3)
        let m = try loadCausalLM(view: tiny.ggufView())
        var seen: [(Int, [String], [Int])] = []
        _ = try m.forward(ids: ids, hook: { seen.append(($0.block, $0.linears, $0.input.shape)) })
        let c = tiny.config
        let t = ids.count
        var expected: [(Int, [String], [Int])] = []
        for b in 0..<3 {
            expected += [
                (b, ["attn_q", "attn_k", "attn_v"], [t, c.hiddenSize]),
                (b, ["attn_output"], [t, c.headCount * c.headDim]),
                (b, ["ffn_gate", "ffn_up"], [t, c.hiddenSize]), (b, ["ffn_down"], [t, c.intermediateSize]),
            ]
        }
        XCTAssertEqual(seen.count, expected.count)
        for (s, e) in zip(seen, expected) {
            XCTAssertEqual(s.0, e.0)
            XCTAssertEqual(s.1, e.1)
            XCTAssertEqual(s.2, e.2)
        }
        XCTAssertEqual(Set(LlamaBlock.linearGroups.flatMap { $0 }), Set(LlamaBlock.linearNames))
        let generic: any TransformerModel = m
        let b1 = try generic.anyBlock(1)
        XCTAssertEqual(b1.index, 1)
        XCTAssertEqual(b1.weight("ffn_up")?.shape, [c.intermediateSize, c.hiddenSize])
        XCTAssertEqual(seen.prefix(4).map(\.1), LlamaBlock.linearGroups)

        // The hooked inputs are what the linears multiply: x W^T reproduces the block's q and MLP.
        let block = try m.block(0)
        var inputs: [String: Matrix] = [:]
        let h0 = m.embed(ids)
        let out = block.forward(hidden: h0, context: ForwardContext(hook: { inputs[$0.linears[0]] = $0.input }))
        var expectOut = h0
        expectOut = zip(expectOut.data, BLAS.linear(inputs["attn_output"]!, block.weights.o).data).map(+)
            .withMatrix(rows: h0.rows, cols: h0.cols)
        let down = BLAS.linear(inputs["ffn_down"]!, block.weights.down)
        XCTAssertLessThan(maxRelDiff(zip(expectOut.data, down.data).map(+), out.data), 1e-5)
    }

    func testBlocksRunWithReplacedWeights() throws {
        let tiny = TinyLlama(seed: 4)
        let m = try loadCausalLM(view: tiny.hfView())
        let base = try m.forward(ids: ids)
        var w = try m.blockWeights(1)
        var block = try m.block(1)
        let zero = Matrix(rows: w.down.rows, cols: w.down.cols)
        try block.setWeight("ffn_down", zero)
        XCTAssertThrowsError(try block.setWeight("ffn_down", Matrix(rows: 2, cols: 2)))
        XCTAssertThrowsError(try block.setWeight("nope", zero))
        w[linear: "ffn_down"] = zero
        XCTAssertEqual(block.weights, w)
        let replaced = m.replacingBlocks([1: w])
        let changed = try replaced.forward(ids: ids)
        XCTAssertGreaterThan(maxRelDiff(changed.data, base.data), 1e-3)
        // Same as running the replaced block by hand.
        var h = m.embed(ids)
        h = try m.runBlock(0, hidden: h, context: ForwardContext())
        h = block.forward(hidden: h, context: ForwardContext())
        XCTAssertEqual(m.logits(m.normalize(h)).data, changed.data)
        // The original model is unchanged.
        XCTAssertEqual(try m.forward(ids: ids).data, base.data)
    }

    func testLazyBlocksMatchEagerAndReadOnDemand() throws {
        let tiny = TinyLlama(seed: 5, layers: 3)
        let view = tiny.ggufView()
        let lazy = try loadCausalLM(view: view, options: ModelLoadOptions(lazyBlocks: true))
        XCTAssertTrue(lazy.isLazy)
        let before = view.loadCount
        XCTAssertEqual(before, 2)  // embedding and output norm only
        _ = try lazy.block(2)
        XCTAssertEqual(view.loadCount, before + 9)
        let eager = try loadCausalLM(view: tiny.ggufView())
        XCTAssertEqual(try lazy.forward(ids: ids).data, try eager.forward(ids: ids).data)
    }

    func testUntiedHeadAndIncrementalPositions() throws {
        let tiny = TinyLlama(seed: 6, tied: false)
        let m = try loadCausalLM(view: tiny.ggufView())
        XCTAssertNotNil(m.outputHead)
        XCTAssertLessThan(
            maxRelDiff(
                try m.forward(ids: ids).data,
                tiny.referenceLogits(ids.map(Int.init)).flatMap { $0.map(Float.init) }), 2e-5)
    }

    func testUnsupportedArchitecture() {
        var tiny = TinyLlama()
        tiny.config.architecture = "mamba"
        XCTAssertThrowsError(try loadCausalLM(view: tiny.ggufView())) { e in
            XCTAssertEqual(
                "\(e)", "model.gguf: architecture 'mamba' is not supported (supported: llama, mistral, qwen2, bert)")
        }
        XCTAssertThrowsError(try loadBERT(view: tiny.ggufView())) { e in
            XCTAssertEqual(
                "\(e)", "model.gguf: architecture 'mamba' is not supported (supported: llama, mistral, qwen2, bert)")
        }
        tiny.config.architecture = "bert"
        XCTAssertThrowsError(try loadCausalLM(view: tiny.ggufView())) { e in
            XCTAssertTrue("\(e)".contains("architecture 'bert'"), "\(e)")
        }
    }

    func testNonFiniteAndMissingTensorsAreNamed() {
        let tiny = TinyLlama()
        let nanView = tiny.ggufView { ts in
            let i = ts.firstIndex { $0.0 == "blk.1.ffn_up.weight" }!
            ts[i].2.data[5] = .nan
        }
        XCTAssertThrowsError(try loadCausalLM(view: nanView)) { e in
            XCTAssertTrue("\(e)".hasPrefix("model.gguf: tensor 'blk.1.ffn_up.weight' has a non-finite value"), "\(e)")
        }
        let infView = tiny.ggufView { ts in
            let i = ts.firstIndex { $0.0 == "token_embd.weight" }!
            ts[i].2.data[ts[i].2.count - 1] = -.infinity
        }
        XCTAssertThrowsError(try loadCausalLM(view: infView)) { e in
            XCTAssertTrue("\(e)".contains("'token_embd.weight'"), "\(e)")
        }
        let missing = tiny.ggufView { ts in ts.removeAll { $0.0 == "blk.0.attn_v.weight" } }
        for lazy in [false, true] {
            XCTAssertThrowsError(try loadCausalLM(view: missing, options: ModelLoadOptions(lazyBlocks: lazy))) { e in
                XCTAssertEqual("\(e)", "model.gguf: missing tensor 'blk.0.attn_v.weight'")
            }
        }
        let badShape = tiny.ggufView { ts in
            let i = ts.firstIndex { $0.0 == "blk.1.ffn_down.weight" }!
            ts[i].2 = ts[i].2.transposed()
        }
        XCTAssertThrowsError(try loadCausalLM(view: badShape)) { e in
            XCTAssertTrue("\(e)".contains("'blk.1.ffn_down.weight' has shape [48, 32], expected [32, 48]"), "\(e)")
        }
    }

    func testHeaderCheckReadsNoTensorAndAgreesWithTheLoader() throws {
        for tiny in [TinyLlama(seed: 9), TinyLlama(seed: 9, tied: false, bias: true, architecture: "qwen2")] {
            for view in [tiny.ggufView(), tiny.hfView()] {
                let tensors = try checkCausalLM(view: view)
                XCTAssertEqual(view.loadCount, 0, "the header check read a tensor")
                // The list checked is the list loaded: every tensor of the file, once.
                XCTAssertEqual(Set(tensors.all.map(\.name).filter(view.has)), Set(view.tensors.map(\.name)))
            }
        }
        // A block tensor whose header shape is wrong is refused before any read, lazy blocks too.
        let tiny = TinyLlama()
        let badHeader = tiny.ggufView { ts in
            let i = ts.firstIndex { $0.0 == "blk.1.ffn_down.weight" }!
            ts[i].1 = [ts[i].1[1], ts[i].1[0]]
            ts[i].2 = ts[i].2.transposed()
        }
        let c = tiny.config
        let expected =
            "model.gguf: tensor 'blk.1.ffn_down.weight' has shape [\(c.intermediateSize), \(c.hiddenSize)], "
            + "expected [\(c.hiddenSize), \(c.intermediateSize)]"
        XCTAssertThrowsError(try checkCausalLM(view: badHeader)) { XCTAssertEqual("\($0)", expected) }
        XCTAssertThrowsError(try loadCausalLM(view: badHeader, options: ModelLoadOptions(lazyBlocks: true))) {
            XCTAssertEqual("\($0)", expected)
        }
        XCTAssertEqual(badHeader.loadCount, 0)
    }

    func testPerplexityMatchesDirectComputation() throws {
        let tiny = TinyLlama(seed: 8)
        let m = try loadCausalLM(view: tiny.hfView())
        let stream = (0..<70).map { Int32(($0 * 13 + 5) % 61) }
        var progress: [Int] = []
        let r = try Perplexity.evaluate(model: m, ids: stream, contextLength: 16, windows: 4, headChunk: 5) {
            progress.append($0.window)
        }
        XCTAssertEqual(progress, [0, 1, 2, 3])
        XCTAssertEqual(r.scoredTokensPerWindow, 15)
        var total = 0.0
        for w in 0..<4 {
            let win = Array(stream[(w * 16)..<((w + 1) * 16)])
            let logits = tiny.referenceLogits(win.map(Int.init))
            var s = 0.0
            for t in 0..<15 {
                let row = logits[t]
                let mx = row.max()!
                s += log(row.reduce(0) { $0 + exp($1 - mx) }) + mx - row[Int(win[t + 1])]
            }
            XCTAssertEqual(r.windowNLLSums[w], s, accuracy: 1e-4 * s)
            total += s
        }
        XCTAssertEqual(r.perplexity, exp(total / 60), accuracy: 1e-4 * r.perplexity)
        XCTAssertEqual(try Perplexity.evaluate(model: m, ids: stream, contextLength: 16).windowNLLSums.count, 4)
        XCTAssertThrowsError(try Perplexity.evaluate(model: m, ids: stream, contextLength: 16, windows: 5))
    }

    func testKernels() {
        var x = (0..<37).map { Float($0) * 3.3 - 60 }
        let expected = x.map { Foundation.exp($0) }
        x.withUnsafeMutableBufferPointer { Kernels.expInPlace($0.baseAddress!, count: 37) }
        for i in 0..<37 { XCTAssertEqual(x[i], expected[i], accuracy: expected[i] * 3e-7) }
        XCTAssertEqual(Kernels.exp1(0), 1)
        XCTAssertEqual(Kernels.exp1(-.infinity), 0, accuracy: 1e-37)
        var row: [Float] = (0..<21).map { Float($0 % 7) - 3 }
        let lse = row.withUnsafeBufferPointer { Kernels.logSumExp($0.baseAddress!, count: 21) }
        XCTAssertEqual(lse, log(row.reduce(0.0) { $0 + exp(Double($1)) }), accuracy: 1e-6)
        row.withUnsafeMutableBufferPointer { Kernels.softmaxRow($0.baseAddress!, count: 20, zeroTo: 21) }
        XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-6)
        XCTAssertEqual(row[20], 0)
        XCTAssertEqual(row.withUnsafeBufferPointer { Kernels.max($0.baseAddress!, count: 21) }, row.max()!)
        XCTAssertEqual(Kernels.firstNonFinite([Float](repeating: 1, count: 40)), nil)
        var v = [Float](repeating: 1, count: 40)
        v[33] = .infinity
        XCTAssertEqual(Kernels.firstNonFinite(v), 33)
    }
}

extension Array where Element == Float {
    func withMatrix(rows: Int, cols: Int) -> Matrix { Matrix(rows: rows, cols: cols, data: self) }
}
