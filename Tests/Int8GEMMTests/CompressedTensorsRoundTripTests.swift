import Foundation
import Int8GEMM
import ModelIO
import Tensor
import TestSupport
import XCTest

/// A tiny random Llama quantized W8A8 by Kiln's quantizer, written by CompressedTensorsWriter,
/// read back by Kiln's safetensors reader and (when the peer venv exists) loaded by
/// transformers + compressed-tensors through Ops/check_compressed_tensors.py.
final class CompressedTensorsRoundTripTests: XCTestCase {
    let (hidden, inter, layers, vocab, heads, kvHeads) = (64, 128, 2, 128, 4, 2)

    func modelConfig(dtype: String) throws -> Data {
        let cfg: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden,
            "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kvHeads, "head_dim": hidden / heads, "max_position_embeddings": 128,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false, "hidden_act": "silu",
            "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": dtype,
        ]
        return try JSONSerialization.data(withJSONObject: cfg, options: [.sortedKeys])
    }

    /// HF names and shapes: (name, [rows, cols], quantized).
    func tensors() -> [(String, [Int], Bool)] {
        let kv = hidden / heads * kvHeads
        var t: [(String, [Int], Bool)] = [("model.embed_tokens.weight", [vocab, hidden], false)]
        for b in 0..<layers {
            let p = "model.layers.\(b)."
            t.append((p + "input_layernorm.weight", [hidden], false))
            for (n, o, i) in [
                ("self_attn.q_proj", hidden, hidden), ("self_attn.k_proj", kv, hidden),
                ("self_attn.v_proj", kv, hidden), ("self_attn.o_proj", hidden, hidden),
            ] { t.append((p + n, [o, i], true)) }
            t.append((p + "post_attention_layernorm.weight", [hidden], false))
            for (n, o, i) in [
                ("mlp.gate_proj", inter, hidden), ("mlp.up_proj", inter, hidden), ("mlp.down_proj", hidden, inter),
            ] { t.append((p + n, [o, i], true)) }
        }
        t.append(("model.norm.weight", [hidden], false))
        t.append(("lm_head.weight", [vocab, hidden], false))
        return t
    }

    /// Writes the model; returns the directory and the quantized linears by prefix.
    func writeModel(scales: W8A8.ScaleStorage, dtype: DType) throws -> (URL, [String: Int8Rows]) {
        var g = SplitMix(state: 11)
        var quantized: [String: Int8Rows] = [:]
        var dense: [String: [Float]] = [:]
        var items: [CompressedTensorsWriter.Item] = []
        for (name, shape, q) in tensors() {
            if q {
                let w = Matrix(
                    rows: shape[0], cols: shape[1], data: (0..<(shape[0] * shape[1])).map { _ in g.gaussian() * 0.05 })
                quantized[name] = W8A8.quantizeRows(w, scales: scales)
                items.append(.linear(prefix: name, outFeatures: shape[0], inFeatures: shape[1], bias: false))
            } else {
                let isNorm = shape.count == 1
                dense[name] = (0..<shape.reduce(1, *)).map { _ in isNorm ? 1 + 0.1 * g.gaussian() : 0.05 * g.gaussian()
                }
                items.append(.tensor(name: name, dtype: dtype, shape: shape))
            }
        }
        let dir = Paths.tempDir("kiln-ct").appendingPathComponent("w8a8")
        try CompressedTensorsWriter.write(
            to: dir, items: items, scaleDType: dtype,
            modelConfig: try modelConfig(dtype: CompressedTensorsWriter.torchName(dtype))
        ) { item in
            switch item {
            case let .linear(p, _, _, _):
                let q = quantized[p]!
                return .linear(codes: q.codes, scales: q.scales, bias: nil)
            case let .tensor(name, _, _):
                return .floats(dense[name]!)
            case .packedLinear:
                XCTFail("no packed linear was declared")
                return .floats([])
            }
        }
        return (dir, quantized)
    }

    func testLayoutReadsBack() throws {
        let (dir, quantized) = try writeModel(scales: .bf16, dtype: .bf16)
        let st = try SafeTensorsFile(dir.appendingPathComponent("model.safetensors"))
        for (p, q) in quantized {
            XCTAssertEqual(st.tensor(p + ".weight")?.info.dtype, .i8)
            XCTAssertEqual(st.tensor(p + ".weight")?.info.shape, [q.rows, q.cols])
            XCTAssertEqual(st.tensor(p + ".weight_scale")?.info.dtype, .bf16)
            XCTAssertEqual(st.tensor(p + ".weight_scale")?.info.shape, [q.rows, 1])
            let codes = try st.withRawBytes(p + ".weight") { Array($0.bindMemory(to: Int8.self)) }
            XCTAssertEqual(codes, q.codes, p)
            // Scales were rounded to BF16 before the codes were made: stored exactly.
            XCTAssertEqual(try st.load(p + ".weight_scale").data, q.scales, p)
        }
        XCTAssertEqual(st.tensor("lm_head.weight")?.info.dtype, .bf16)
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json")))
        let qc = try XCTUnwrap((cfg as? [String: Any])?["quantization_config"] as? [String: Any])
        XCTAssertEqual(qc["quant_method"] as? String, "compressed-tensors")
        XCTAssertEqual(qc["format"] as? String, "int-quantized")
        XCTAssertEqual(qc["ignore"] as? [String], ["lm_head"])
        let group = try XCTUnwrap((qc["config_groups"] as? [String: Any])?["group_0"] as? [String: Any])
        XCTAssertEqual((group["weights"] as? [String: Any])?["strategy"] as? String, "channel")
        XCTAssertEqual((group["input_activations"] as? [String: Any])?["strategy"] as? String, "token")
        XCTAssertEqual((group["input_activations"] as? [String: Any])?["dynamic"] as? Bool, true)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("kiln-manifest.json").path))
    }

    func testMismatchedContentsLeaveNoDirectory() throws {
        let dir = Paths.tempDir("kiln-ct").appendingPathComponent("bad")
        XCTAssertThrowsError(
            try CompressedTensorsWriter.write(
                to: dir, items: [.linear(prefix: "l", outFeatures: 2, inFeatures: 3, bias: false)],
                modelConfig: Data("{}".utf8)
            ) { _ in .linear(codes: [1, 2, 3], scales: [1, 1], bias: nil) })
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path))
    }

    /// transformers + compressed-tensors load Kiln's directory; each decompressed linear equals
    /// int8 * scale exactly, the rest bit for bit (BF16 scales and model; F32 scales and model).
    func testTransformersLoadsItThroughCompressedTensors() throws {
        let what = "transformers round trip"
        try PythonCheck.requirePeer(what)
        for (scales, dtype) in [(W8A8.ScaleStorage.bf16, DType.bf16), (.f32, .f32)] {
            let (dir, quantized) = try writeModel(scales: scales, dtype: dtype)
            let report = try PythonCheck.runPeer("Ops/check_compressed_tensors.py", [dir.path], skipping: what)
            XCTAssertEqual(report["ok"] as? Bool, true, "\(dtype)")
            XCTAssertEqual(report["scheme"] as? Bool, true)
            let linears = try XCTUnwrap(report["linears"] as? [String: [String: Any]])
            XCTAssertEqual(Set(linears.keys), Set(quantized.keys))
            for (p, r) in linears { XCTAssertEqual(r["ok"] as? Bool, true, "\(dtype) \(p): \(r)") }
            // The loaded weight is code * scale rounded once to the model's dtype: the same
            // whether computed in the scale's dtype (one multiply) or exactly.
            for (p, r) in linears {
                XCTAssertEqual(r["equal_in_scale_dtype"] as? Bool, true, p)
                XCTAssertEqual(r["equal_exact_rounded"] as? Bool, true, p)
            }
            let dense = try XCTUnwrap(report["dense"] as? [String: [String: Any]])
            XCTAssertEqual(dense.count, 2 + 2 * layers + 1)
        }
    }
}
