import Foundation
import Jobs
import ModelIO
import Tensor
import TestSupport
import XCTest

/// `--format compressed-tensors-w8a8` on the 2-block SmolLM2: int8 linears with per-channel
/// scales, SmoothQuant's folded norms in the file, the int8 forward's perplexity close to the
/// float model's, and (with the peer venv) transformers + compressed-tensors load it.
final class W8A8JobTests: XCTestCase {
    func w8a8Spec(_ name: String, method: QuantMethod) throws -> JobSpec {
        let model = try Assets.truncatedSmolLM2()
        var s = Assets.spec(
            model: model, out: Paths.tempDir("kiln-w8a8-\(name)").appendingPathComponent("out"), method: method,
            format: .compressedTensorsW8A8, samples: 8, seqlen: 128, shardSize: 4)
        s.evalFile = Paths.repoRoot.appendingPathComponent("Tests/Fixtures/text/fortunes_eval.txt").path
        s.evalWindows = 4
        return s
    }

    func testGPTQW8A8WritesInt8AndRunsTheInt8Path() throws {
        let s = try w8a8Spec("gptq", method: .gptq)
        let r = try Job.run(s, concurrency: 2)
        let ppl = try XCTUnwrap(r.perplexity)
        let before = try XCTUnwrap(ppl.before)
        print("W8A8 2-block SmolLM2 perplexity: float \(before), int8 W8A8 \(ppl.after)")
        XCTAssertEqual(ppl.afterSource, "int8 W8A8 (oneDNN)")
        // The 2-block model's perplexity is huge (~1e8): compared per token, in nats.
        XCTAssertLessThan(abs(log(ppl.after) - log(before)), 0.05, "float \(before), W8A8 \(ppl.after)")

        let dir = URL(fileURLWithPath: s.output)
        let st = try SafeTensorsFile(dir.appendingPathComponent("model.safetensors"))
        let input = try GGUFFile(URL(fileURLWithPath: s.model))
        for b in 0..<2 {
            for p in [
                "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
            ] {
                let name = "model.layers.\(b).\(p)"
                let w = try XCTUnwrap(st.tensor(name + ".weight"), name)
                XCTAssertEqual(w.info.dtype, .i8, name)
                let scale = try XCTUnwrap(st.tensor(name + ".weight_scale"), name)
                XCTAssertEqual(scale.info.dtype, .f16, name)
                XCTAssertEqual(scale.info.shape, [w.info.shape[0], 1], name)
                // Symmetric codes use the range: the row maximum is near 127 or -128.
                let codes = try st.withRawBytes(name + ".weight") { Array($0.bindMemory(to: Int8.self)) }
                XCTAssertGreaterThan(codes.map { abs(Int($0)) }.max()!, 100, name)
            }
            // SmoothQuant folded both norms before a smoothed group.
            for (hf, gguf) in [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm")] {
                let written = try st.load("model.layers.\(b).\(hf).weight").data
                let original = try input.load("blk.\(b).\(gguf).weight").data
                XCTAssertEqual(written.count, original.count)
                XCTAssertNotEqual(written, original.map { Float(Float16($0)) }, "\(hf) is folded")
            }
        }
        XCTAssertTrue(r.notes.contains { $0.contains("SmoothQuant alpha 0.8") }, "\(r.notes)")
        for b in 0..<2 { try checkDownMigratedIntoUp(st, input, block: b) }

        let report = try PythonCheck.runPeer(
            "Ops/check_compressed_tensors.py", [dir.path], skipping: "the transformers load")
        XCTAssertEqual(report["ok"] as? Bool, true)
        XCTAssertEqual((report["linears"] as? [String: Any])?.count, 14)
    }

    /// down's SmoothQuant scales s moved into up: the file's down column j is about the
    /// original's times s_j and up's row j (after the ffn_norm fold's column scales) about
    /// the original's divided by s_j, so their
    /// product per channel j (max|down_:,j| max|up_j,:|) is the original's within int8
    /// rounding, while down's column maxima themselves moved. Were up's rows left undivided,
    /// the products would be off by s_j.
    func checkDownMigratedIntoUp(_ st: SafeTensorsFile, _ input: GGUFFile, block b: Int) throws {
        func int8Matrix(_ name: String) throws -> Matrix {
            let codes = try st.withRawBytes(name + ".weight") { Array($0.bindMemory(to: Int8.self)) }
            let scales = try st.load(name + ".weight_scale").data
            let shape = try XCTUnwrap(st.tensor(name + ".weight")).info.shape
            var m = Matrix(rows: shape[0], cols: shape[1])
            for r in 0..<m.rows {
                for c in 0..<m.cols { m.data[r * m.cols + c] = Float(codes[r * m.cols + c]) * scales[r] }
            }
            return m
        }
        let down = try int8Matrix("model.layers.\(b).mlp.down_proj")
        let up = try int8Matrix("model.layers.\(b).mlp.up_proj")
        let down0 = try input.load("blk.\(b).ffn_down.weight")
        var up0 = try input.load("blk.\(b).ffn_up.weight")
        // up's columns carry the ffn_norm fold: s = gamma / the written gamma.
        let gamma = try input.load("blk.\(b).ffn_norm.weight").data
        let written = try st.load("model.layers.\(b).post_attention_layernorm.weight").data
        for r in 0..<up0.rows {
            for c in 0..<up0.cols { up0.data[r * up0.cols + c] *= gamma[c] / written[c] }
        }
        XCTAssertEqual(down.cols, up.rows)
        func colMax(_ m: Matrix, _ j: Int) -> Float { (0..<m.rows).map { abs(m.data[$0 * m.cols + j]) }.max()! }
        func rowMax(_ m: Matrix, _ j: Int) -> Float { m.data[j * m.cols..<(j + 1) * m.cols].map(abs).max()! }
        // Per channel j, |log| of the file's down x up maxima against the original's (with the
        // migration) and of down's alone (were up's rows not divided, the product would move so).
        var products: [Float] = []
        var moved: [Float] = []
        for j in 0..<down.cols {
            products.append(abs(log(colMax(down, j) * rowMax(up, j) / (colMax(down0, j) * rowMax(up0, j)))))
            moved.append(abs(log(colMax(down, j) / colMax(down0, j))))
        }
        // GPTQ moves weights beyond rounding, most for a column whose maximum is small in its
        // row: the medians, not every channel.
        let product = products.sorted()[products.count / 2]
        let scaled = moved.sorted()[moved.count / 2]
        XCTAssertLessThan(product, 0.03, "block \(b): median of down x up per channel, log ratio")
        XCTAssertGreaterThan(scaled, 10 * product, "block \(b): down's columns were scaled, median log ratio")
    }

    func testRTNW8A8IsCloseToFloat() throws {
        var s = try w8a8Spec("rtn", method: .rtn)
        s.smooth = 0.5
        let r = try Job.run(s, concurrency: 2)
        let ppl = try XCTUnwrap(r.perplexity)
        let before = try XCTUnwrap(ppl.before)
        print("W8A8 RTN smooth 0.5 2-block SmolLM2 perplexity: float \(before), int8 W8A8 \(ppl.after)")
        XCTAssertLessThan(abs(log(ppl.after) - log(before)), 0.08, "float \(before), W8A8 \(ppl.after)")
    }

    func testRecipeErrorsAreCaughtBeforeWork() throws {
        let model = try Assets.truncatedSmolLM2()
        let out = Paths.tempDir("kiln-w8a8-bad").appendingPathComponent("out")
        var s = Assets.spec(model: model, out: out, format: .compressedTensorsW8A8)
        for (change, words) in [
            ({ (s: inout JobSpec) in s.bits = 4 }, "--bits 4"),
            ({ (s: inout JobSpec) in s.groupSize = 128 }, "--group 128"),
            ({ (s: inout JobSpec) in s.smooth = 1.5 }, "--smooth 1.5"),
            ({ (s: inout JobSpec) in s.method = .awq }, "--method awq"),
            (
                { (s: inout JobSpec) in
                    s.format = .ggufQ4_0
                    s.smooth = 0.5
                }, "--smooth applies"
            ),
        ] {
            var bad = s
            change(&bad)
            XCTAssertThrowsError(try bad.validateOptions()) { XCTAssertTrue("\($0)".contains(words), "\($0)") }
        }
        s.smooth = 0.5
        XCTAssertNoThrow(try s.validateOptions())
        XCTAssertEqual(s.recipe.bits, 8)
        XCTAssertEqual(s.recipe.groupSize, -1)
        XCTAssertTrue(s.recipe.symmetric)
    }
}
