import Foundation
import Jobs
import ModelIO
import Models
import Synchronization
import TestSupport
import XCTest

/// Validation judges a model by its header alone (a coordinator validates every submit):
/// each tensor the loader needs present, of the loader's shape and a type Kiln decodes,
/// for GGUF and sharded Hugging Face inputs, with the file and the tensor named.
final class HeaderValidationTests: XCTestCase {
    func expectRefused(_ spec: JobSpec, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try spec.validate(), file: file, line: line) { e in
            for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' lacks '\(f)'", file: file, line: line) }
        }
    }

    func testGGUFEmbeddingOfTheWrongShape() throws {
        let src = try Assets.truncatedSmolLM2()
        let dir = Paths.tempDir("kiln-header")
        let g = try GGUFFile(src)
        let embd = try XCTUnwrap(g.tensor("token_embd.weight")).info
        let (vocab, hidden) = (embd.shape[0], embd.shape[1])
        // One row fewer than the vocabulary: the stored rows, cut.
        let bytes = try g.rawBytes("token_embd.weight")
        let cut = dir.appendingPathComponent("cut-embedding.gguf")
        try GGUFVariants.write(
            from: src, to: cut,
            replacing: ["token_embd.weight": ([vocab - 1, hidden], bytes.prefix(bytes.count / vocab * (vocab - 1)))])
        XCTAssertNoThrow(try Assets.spec(model: src, out: dir.appendingPathComponent("ok.gguf")).validate())
        expectRefused(
            Assets.spec(model: cut, out: dir.appendingPathComponent("o.gguf")),
            [
                "model cut-embedding.gguf cannot be run", "cut-embedding.gguf: tensor 'token_embd.weight'",
                "has shape [\(vocab - 1), \(hidden)], expected [\(vocab), \(hidden)]",
            ])
    }

    func testShardedCheckpointMissingALinear() throws {
        let dir = Paths.tempDir("kiln-header")
        let out = dir.appendingPathComponent("gptq-out")
        XCTAssertNoThrow(try Assets.spec(model: try Self.checkpoint(), out: out, format: .gptqSafetensors).validate())

        let gone = "model.layers.1.mlp.down_proj.weight"
        let missing = try copyCheckpoint(to: dir.appendingPathComponent("missing"), dropping: gone)
        expectRefused(
            Assets.spec(model: missing, out: out, format: .gptqSafetensors),
            ["model missing cannot be run", "missing tensor '\(gone)'"])
    }

    func testTensorOfAnUnsupportedType() throws {
        let dir = Paths.tempDir("kiln-header")
        let ckpt = try copyCheckpoint(to: dir.appendingPathComponent("fp8"))
        // An FP8 checkpoint's dtype, which Kiln does not decode, on one linear of the blocks' shard.
        let name = "model.layers.0.self_attn.q_proj.weight"
        try retype(ckpt.appendingPathComponent(Self.blockShard), name, to: "F8_E4M3")
        expectRefused(
            Assets.spec(model: ckpt, out: dir.appendingPathComponent("o"), format: .gptqSafetensors),
            ["cannot open model", "\(Self.blockShard)", "tensor '\(name)'", "F8_E4M3"])
    }

    static let globalShard = "model-00001-of-00002.safetensors"
    static let blockShard = "model-00002-of-00002.safetensors"
    static let made = Mutex<URL?>(nil)

    /// The truncated SmolLM2 as a Hugging Face checkpoint: config.json, tokenizer.json, F16
    /// weights (q/k rows in Hugging Face order), the embedding and final norm in one shard and
    /// the blocks in another, listed by model.safetensors.index.json. Written once per run.
    static func checkpoint() throws -> URL {
        try made.withLock { made in
            if let u = made { return u }
            let view = try GGUFModel(Assets.truncatedSmolLM2())
            let dir = Paths.tempDir("kiln-header-hf").appendingPathComponent("smollm2-hf")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let c = view.config
            let config: [String: Any] = [
                "model_type": "llama", "vocab_size": c.vocabSize, "hidden_size": c.hiddenSize,
                "intermediate_size": c.intermediateSize, "num_hidden_layers": c.layerCount,
                "num_attention_heads": c.headCount, "num_key_value_heads": c.kvHeadCount,
                "max_position_embeddings": c.contextLength, "rms_norm_eps": c.normEps, "rope_theta": c.ropeTheta,
                "tie_word_embeddings": c.tiedEmbeddings,
            ]
            try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
            let tokenizer = try XCTUnwrap(TokenizerJSONBuilder.build(metadata: view.metadata)).json
            try tokenizer.write(to: dir.appendingPathComponent("tokenizer.json"))

            let hf = LlamaTensors(config: c, naming: .huggingFace)
            let gguf = LlamaTensors(config: c, naming: .gguf)
            var globals = [(hf.embedding, gguf.embedding), (hf.outputNorm, gguf.outputNorm)]
            if !c.tiedEmbeddings { globals.append((hf.outputHead, gguf.outputHead)) }
            var blocks: [(TensorRequirement, TensorRequirement)] = []
            for i in 0..<c.layerCount {
                blocks += zip(hf.block(i).all, gguf.block(i).all).filter { view.has($0.1.name) }
            }
            for (shard, pairs) in [(globalShard, globals), (blockShard, blocks)] {
                let w = SafetensorsWriter(url: dir.appendingPathComponent(shard))
                for (to, from) in pairs {
                    try w.declare(to.name, dtype: .f16, shape: try XCTUnwrap(view.info(from.name)).shape)
                }
                for (to, from) in pairs {
                    var m = try view.load(from.name)
                    if from.name.contains("attn_q.") { m = RopePermutation.interleavedToHalves(m, heads: c.headCount) }
                    if from.name.contains("attn_k.") {
                        m = RopePermutation.interleavedToHalves(m, heads: c.kvHeadCount)
                    }
                    try w.write(to.name, floats: m.data)
                }
                try w.finish()
            }
            try writeIndex(dir)
            made = dir
            return dir
        }
    }

    /// A copy of `checkpoint()`, without the tensor `dropping` (its shard and the index rewritten).
    func copyCheckpoint(to dir: URL, dropping: String? = nil) throws -> URL {
        try FileManager.default.copyItem(at: Self.checkpoint(), to: dir)
        guard let dropping else { return dir }
        let url = dir.appendingPathComponent(Self.blockShard)
        let src = try SafeTensorsFile(url)
        let w = SafetensorsWriter(url: dir.appendingPathComponent("rewritten"))
        let kept = src.tensors.filter { $0.name != dropping }
        for t in kept { try w.declare(t.name, dtype: t.dtype, shape: t.shape) }
        for t in kept { try w.write(t.name, bytes: src.rawBytes(t.name)) }
        try w.finish()
        try FileManager.default.removeItem(at: url)
        try FileManager.default.moveItem(at: dir.appendingPathComponent("rewritten"), to: url)
        try Self.writeIndex(dir)
        return dir
    }

    /// model.safetensors.index.json for the shards in `dir`.
    static func writeIndex(_ dir: URL) throws {
        var weightMap: [String: String] = [:]
        for shard in [globalShard, blockShard] {
            for t in try SafeTensorsFile(dir.appendingPathComponent(shard)).tensors { weightMap[t.name] = shard }
        }
        try JSONSerialization.data(withJSONObject: ["metadata": [:] as [String: Any], "weight_map": weightMap])
            .write(to: dir.appendingPathComponent("model.safetensors.index.json"))
    }

    /// Rewrites one tensor's dtype in a safetensors header (the data stays as it was).
    func retype(_ url: URL, _ name: String, to dtype: String) throws {
        let data = try Data(contentsOf: url)
        let n = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        var header = try XCTUnwrap(JSONSerialization.jsonObject(with: data[8..<(8 + n)]) as? [String: Any])
        var entry = try XCTUnwrap(header[name] as? [String: Any])
        entry["dtype"] = dtype
        header[name] = entry
        let json = try JSONSerialization.data(withJSONObject: header)
        var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Data($0) }
        out += json
        out += data[(8 + n)...]
        try out.write(to: url)
    }
}
