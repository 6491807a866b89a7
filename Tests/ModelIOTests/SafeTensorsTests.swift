import Foundation
import ModelIO
import Tensor
import TestSupport
import XCTest

final class SafeTensorsTests: XCTestCase {
    var minilm: URL { Paths.minilmDir.appendingPathComponent("model.safetensors") }

    func skipIfMissing() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: minilm.path), "MiniLM asset missing")
    }

    func testRealMiniLM() throws {
        try skipIfMissing()
        let m = try openModel(Paths.minilmDir)
        XCTAssertEqual(m.format, "safetensors")
        XCTAssertEqual(m.naming, .huggingFace)
        XCTAssertEqual(m.tensors.count, 104)
        XCTAssertEqual(m.tensors.first?.name, "embeddings.position_ids")  // data order
        let c = m.config
        XCTAssertEqual(c.architecture, "bert")
        XCTAssertEqual(c.vocabSize, 30522)
        XCTAssertEqual(c.hiddenSize, 384)
        XCTAssertEqual(c.intermediateSize, 1536)
        XCTAssertEqual(c.layerCount, 6)
        XCTAssertEqual(c.headCount, 12)
        XCTAssertEqual(c.kvHeadCount, 12)
        XCTAssertEqual(c.contextLength, 512)
        XCTAssertEqual(c.typeVocabSize, 2)
        XCTAssertEqual(c.normEps, 1e-12)
        XCTAssertEqual(m.metadata["model_type"], .string("bert"))
        XCTAssertEqual(m.metadata["hidden_size"], .int64(384))
        XCTAssertEqual(m.metadata["architectures"], .array([.string("BertModel")]))
        XCTAssertEqual(m.metadata["safetensors.format"], .string("pt"))
        guard case let .tokenizerJSON(tok)? = m.tokenizer else { return XCTFail("tokenizer.json expected") }
        XCTAssertEqual(tok.lastPathComponent, "tokenizer.json")

        let info = try XCTUnwrap(m.info("embeddings.word_embeddings.weight"))
        XCTAssertEqual(info.shape, [30522, 384])
        XCTAssertEqual(info.dtype, .f32)
        XCTAssertEqual(info.byteCount, 30522 * 384 * 4)

        // Against an independent reader (TestSupport.FixtureTensors).
        let ref = try FixtureTensors(minilm)
        for name in ["encoder.layer.3.attention.self.query.weight", "embeddings.LayerNorm.bias", "pooler.dense.weight"]
        {
            let w = try m.load(name)
            XCTAssertEqual(w.data, ref.floats(name), name)
            XCTAssertEqual(w.shape, ref.shape(name).count == 1 ? [1, ref.shape(name)[0]] : ref.shape(name), name)
        }
        let ids = try m.load("embeddings.position_ids")  // I64 [1, 512]
        XCTAssertEqual(ids.shape, [1, 512])
        XCTAssertEqual(ids.data, (0..<512).map(Float.init))
    }

    func testSingleFileOpensWithConfigBeside() throws {
        try skipIfMissing()
        let m = try openModel(minilm)
        XCTAssertEqual(m.config.hiddenSize, 384)
        XCTAssertEqual(m.url, minilm)
    }

    func testDTypes() throws {
        let f32: [Float] = [1, -2.5, 3e-3, 1e30]
        let f16 = f32.map { Float16($0).bitPattern }
        let bf16 = f32.map { HalfConversionBF16($0) }
        let data = safetensorsBytes(
            [
                ("a", "F32", [2, 2], floatBytes(f32)),
                ("b", "F16", [4], f16.withUnsafeBytes { Data($0) }),
                ("c", "BF16", [1, 4], bf16.withUnsafeBytes { Data($0) }),
                ("d", "I32", [3], [Int32(-7), 0, 9].withUnsafeBytes { Data($0) }),
                ("e", "I64", [2], [Int64(1) << 40, -1].withUnsafeBytes { Data($0) }),
                ("s", "F32", [], floatBytes([42])),
            ], metadata: ["format": "pt"])
        let f = try SafeTensorsFile(try tempFile("t.safetensors", data))
        XCTAssertEqual(f.metadata, ["format": "pt"])
        XCTAssertEqual(try f.load("a"), Matrix(rows: 2, cols: 2, data: f32))
        XCTAssertEqual(try f.load("b").data, f32.map { Float(Float16($0)) })
        XCTAssertEqual(try f.load("c").data, bf16.map { Float(bitPattern: UInt32($0) << 16) })
        XCTAssertEqual(try f.load("d").data, [-7, 0, 9])
        XCTAssertEqual(try f.load("e").data, [Float(1 << 40), -1])
        XCTAssertEqual(try f.load("s").shape, [1, 1])
        XCTAssertEqual(try f.rawBytes("d"), [Int32(-7), 0, 9].withUnsafeBytes { Data($0) })
        XCTAssertEqual(f.tensors.map(\.name), ["a", "b", "c", "d", "e", "s"])
    }

    /// A 2-shard llama-style checkpoint with index.json, written here.
    func writeSharded() throws -> URL {
        let dir = Paths.tempDir("shards")
        let config = """
            {"model_type": "llama", "vocab_size": 8, "hidden_size": 4, "intermediate_size": 6,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
             "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 500000.0,
             "tie_word_embeddings": false, "rope_scaling": {"type": "linear", "factor": 2.0}, "bos_token_id": null}
            """
        try Data(config.utf8).write(to: dir.appendingPathComponent("config.json"))
        let embed = (0..<32).map { Float($0) }
        let q = (0..<16).map { Float($0) * 0.5 }
        let head = (0..<32).map { -Float($0) }
        try safetensorsBytes(
            [
                ("model.embed_tokens.weight", "F32", [8, 4], floatBytes(embed)),
                ("model.layers.0.self_attn.q_proj.weight", "F32", [4, 4], floatBytes(q)),
            ],
            metadata: ["format": "pt"]
        )
        .write(to: dir.appendingPathComponent("model-00001-of-00002.safetensors"))
        try safetensorsBytes([("lm_head.weight", "F32", [8, 4], floatBytes(head))])
            .write(to: dir.appendingPathComponent("model-00002-of-00002.safetensors"))
        let index = """
            {"metadata": {"total_size": 320}, "weight_map": {
              "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
              "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
              "lm_head.weight": "model-00002-of-00002.safetensors"}}
            """
        try Data(index.utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        return dir
    }

    func testSharded() throws {
        let dir = try writeSharded()
        for url in [dir, dir.appendingPathComponent("model.safetensors.index.json")] {
            let m = try openModel(url)
            XCTAssertEqual(
                m.tensors.map(\.name),
                ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"])
            XCTAssertEqual(m.info("lm_head.weight")?.file.lastPathComponent, "model-00002-of-00002.safetensors")
            XCTAssertEqual(try m.load("lm_head.weight").data, (0..<32).map { -Float($0) })
            XCTAssertEqual(
                try m.load("model.layers.0.self_attn.q_proj.weight"),
                Matrix(rows: 4, cols: 4, data: (0..<16).map { Float($0) * 0.5 }))
            let c = m.config
            XCTAssertEqual(
                c,
                ModelConfig(
                    architecture: "llama", vocabSize: 8, hiddenSize: 4, intermediateSize: 6, layerCount: 1,
                    headCount: 2, kvHeadCount: 1, contextLength: 64, normEps: 1e-6, ropeTheta: 500000,
                    tiedEmbeddings: false))
            XCTAssertEqual(m.metadata["rope_scaling.factor"]?.double, 2)  // JSON 2.0 may read as an integer
            XCTAssertNil(m.metadata["bos_token_id"])
            XCTAssertNil(m.tokenizer)
            assertModelIOError(["missing.weight", "not found"]) { try m.load("missing.weight") }
        }
    }

    func testShardedDamage() throws {
        let dir = try writeSharded()
        let index = dir.appendingPathComponent("model.safetensors.index.json")
        func rewrite(_ text: String) throws { try Data(text.utf8).write(to: index) }
        try rewrite(#"{"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}"#)
        assertModelIOError(["model.safetensors.index.json", "lm_head.weight", "not found in shard"]) {
            try openModel(dir)
        }
        try rewrite(#"{"weight_map": {"x": "../../etc/passwd"}}"#)
        assertModelIOError(["model.safetensors.index.json", "'x'", "plain file name"]) { try openModel(dir) }
        try rewrite(#"{"weight_map": {"x": "model-00009.safetensors"}}"#)
        assertModelIOError(["model-00009.safetensors", "cannot open"]) { try openModel(dir) }
        try rewrite(#"{"weight_map": 3}"#)
        assertModelIOError(["model.safetensors.index.json", "weight_map"]) { try openModel(dir) }
        try rewrite(#"{"weight_map": {"#)
        assertModelIOError(["model.safetensors.index.json", "not valid JSON"]) { try openModel(dir) }
        try FileManager.default.removeItem(at: index)
        // Without the index every shard is read; config.json must still be valid.
        XCTAssertEqual(try openModel(dir).tensors.count, 3)
        try Data(#"{"model_type": "llama", "hidden_size": 4}"#.utf8).write(
            to: dir.appendingPathComponent("config.json"))
        assertModelIOError(["config.json", "num_attention_heads", "missing"]) { try openModel(dir) }
        try Data(#"{"model_type": "llama", "num_attention_heads": 2.5}"#.utf8).write(
            to: dir.appendingPathComponent("config.json"))
        assertModelIOError(["config.json", "num_attention_heads"]) { try openModel(dir) }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("config.json"))
        assertModelIOError(["config.json", "missing"]) { try openModel(dir) }
    }
}

private func HalfConversionBF16(_ x: Float) -> UInt16 { UInt16(x.bitPattern >> 16) }
