import Foundation
import ModelIO
import Models
import Quantization
import Tensor

/// Writes a Hugging Face GPTQ directory (AutoGPTQ / transformers layout) from the
/// quantized linears: HF tensor names, q/k rows moved from GGUF's interleaved RoPE
/// layout back to HF's halves layout (codes, scales and zeros rows alike), fp16
/// embeddings and norms, config.json with quantization_config, and the tokenizer
/// (copied from an HF input, or built from the GGUF vocabulary, best effort).
public enum GPTQOutput {
    /// The weights a GPTQ runtime reconstructs from the file: fp16(scale) * (code - zero),
    /// in the input file's row layout.
    public static func storedWeights(_ q: QuantizedLinear) -> Matrix {
        q.weight.dequantize(value: GPTQLinear.storedValue)
    }

    static func permuteRows<T>(_ a: [T], width: Int, order: [Int]) -> [T] {
        var out: [T] = []
        out.reserveCapacity(a.count)
        for r in order { out.append(contentsOf: a[(r * width)..<((r + 1) * width)]) }
        return out
    }

    /// Returns the checkpoint format written ("gptq", or "gptq_v2" when a zero point is 0).
    /// `linears` is read one tensor at a time, in the output's order.
    @discardableResult
    public static func write(
        spec: JobSpec, view: any ModelView, linears: any QuantizedLinearSource, to url: URL
    ) throws -> String {
        // The coordinator's OutputAssembly sends every non-GGUF, non-W8A8 format here.
        guard spec.format == .gptqSafetensors else {
            throw JobError("--format \(spec.format.rawValue) is not written as a GPTQ checkpoint")
        }
        let quantized = try linears.summaries()
        let folded = try quantized.foldedTensors()
        guard try quantized.migrations().isEmpty else {
            throw JobError("migrated scales (SmoothQuant of ffn_down) are written only to compressed-tensors-w8a8")
        }
        // v1 stores zero - 1, so a zero point of 0 needs v2 (the exact values are kept
        // rather than clamping, which would change weights GPTQ optimized).
        let checkpoint: GPTQConfig.CheckpointFormat =
            quantized.values.contains { $0.hasZeroPointZero } ? .gptqV2 : .gptq
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kiln-tok-\(getpid())-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let (modelConfig, tokenizerFiles) = try configAndTokenizer(view: view, tmp: tmp)
        let w = try GPTQSafetensorsWriter(
            directory: url, config: gptqConfig(spec.recipe, checkpoint), modelConfig: modelConfig,
            tokenizerFiles: tokenizerFiles, replace: spec.overwrite)
        do {
            let items = outputItems(view)
            for item in items {
                switch item {
                case let .plain(src, dst):
                    try w.declareTensor(dst, dtype: .f16, shape: view.info(src)!.shape)
                case let .linear(src, dst):
                    guard let q = quantized[src] else { throw JobError("no quantized result for \(src)") }
                    try w.declareLinear(dst, outFeatures: q.rows, inFeatures: q.columns, bias: view.has(biasName(src)))
                }
            }
            for item in items {
                switch item {
                case let .plain(src, dst):
                    if let values = folded[src] {
                        // AWQ's folded norm.
                        try w.writeTensor(dst, floats: values)
                    } else if view.info(src)?.dtype == .f16, let st = view as? SafeTensorsModel {
                        // Already F16 in a safetensors shard: copied a piece at a time, not held.
                        let (file, range) = try st.stored(src)
                        try w.writeTensor(dst, copying: range, of: file)
                    } else {
                        try w.writeTensor(dst, floats: try view.load(src).data)
                    }
                case let .linear(src, dst):
                    let q = try linears.linear(src)
                    try w.writeLinear(gptqLinear(q, source: src, prefix: dst, view: view, recipe: spec.recipe))
                }
            }
            try w.finish()
        } catch {
            w.abandon()
            throw error
        }
        return checkpoint.rawValue
    }

    static func gptqConfig(_ recipe: QuantRecipe, _ checkpoint: GPTQConfig.CheckpointFormat) -> GPTQConfig {
        GPTQConfig(
            bits: recipe.bits, groupSize: recipe.groupSize, descAct: recipe.actOrder,
            sym: recipe.symmetric,
            // All groups of a block are calibrated in one pass (collect), not
            // re-collected after each earlier group is quantized.
            trueSequential: false,
            dampPercent: recipe.percentDamp, staticGroups: recipe.staticGroups,
            checkpointFormat: checkpoint)
    }

    /// One output tensor: copied as fp16 (`plain`) or a quantized linear; (input name, HF name).
    enum OutputItem {
        case plain(String, String)
        case linear(String, String)
    }

    /// The output's tensors in HF order; plain tensors the input lacks are left out.
    static func outputItems(_ view: any ModelView) -> [OutputItem] {
        let naming = view.naming
        var items: [OutputItem] = []
        func plain(_ src: String, _ dst: String) { if view.has(src) { items.append(.plain(src, dst)) } }
        func linears(_ b: Int, attention: Bool) {
            for l in Linear.allCases where l.isAttention == attention {
                items.append(
                    .linear(
                        LlamaTensorNames.linear(l.rawValue, block: b, naming: naming),
                        "model.layers.\(b).\(l.huggingFaceName)"))
            }
        }
        plain(LlamaTensorNames.embedding(naming), "model.embed_tokens.weight")
        for b in 0..<view.config.layerCount {
            plain(
                naming == .gguf ? "blk.\(b).attn_norm.weight" : "model.layers.\(b).input_layernorm.weight",
                "model.layers.\(b).input_layernorm.weight")
            linears(b, attention: true)
            plain(
                naming == .gguf ? "blk.\(b).ffn_norm.weight" : "model.layers.\(b).post_attention_layernorm.weight",
                "model.layers.\(b).post_attention_layernorm.weight")
            linears(b, attention: false)
        }
        plain(LlamaTensorNames.outputNorm(naming), "model.norm.weight")
        plain(LlamaTensorNames.outputHead(naming), "lm_head.weight")
        return items
    }

    /// The compressed-tensors writers' items (W8A8, W4A16): the plain tensors in fp16, each
    /// linear as `linear` lays it out (its HF prefix, its summary, whether it has a bias);
    /// `source` maps each written name back to the model's tensor.
    static func compressedTensorsItems(
        view: any ModelView, quantized: [String: QuantizedLinearSummary],
        linear: (String, QuantizedLinearSummary, Bool) -> CompressedTensorsWriter.Item
    ) throws -> (items: [CompressedTensorsWriter.Item], source: [String: String]) {
        var source: [String: String] = [:]
        let items: [CompressedTensorsWriter.Item] = try outputItems(view).map { item in
            switch item {
            case let .plain(src, dst):
                source[dst] = src
                return .tensor(name: dst, dtype: .f16, shape: view.info(src)!.shape)
            case let .linear(src, dst):
                guard let q = quantized[src] else { throw JobError("no quantized result for \(src)") }
                source[dst] = src
                return linear(dst, q, view.has(biasName(src)))
            }
        }
        return (items, source)
    }

    static func biasName(_ weightName: String) -> String { String(weightName.dropLast("weight".count)) + "bias" }

    /// A quantized linear as the GPTQ writer takes it: q/k rows (codes, parameters, bias) moved
    /// from GGUF's interleaved RoPE layout to HF's halves layout when the input is interleaved.
    static func gptqLinear(
        _ q: QuantizedLinear, source src: String, prefix: String, view: any ModelView, recipe: QuantRecipe
    ) throws -> GPTQLinear {
        let c = view.config
        let w = q.weight
        var codes = w.codes
        var params = w.parameters
        var bias = view.has(biasName(src)) ? try view.load(biasName(src)).data : nil
        let interleaved = fileRopeLayout(architecture: c.architecture.lowercased(), naming: view.naming) == .interleaved
        if interleaved, let l = Linear(rawValue: q.linear), l == .attnQ || l == .attnK {
            let order = RopePermutation.halvesOrder(rows: w.rows, heads: l == .attnQ ? c.headCount : c.kvHeadCount)
            codes = permuteRows(codes, width: w.columns, order: order)
            params = permuteRows(params, width: w.groupCount, order: order)
            bias = bias.map { permuteRows($0, width: 1, order: order) }
        }
        return GPTQLinear(
            prefix: prefix, outFeatures: w.rows, inFeatures: w.columns, bits: recipe.bits,
            groupSize: recipe.groupSize, codes: codes, scales: params.map(\.scale),
            zeros: params.map { Int($0.zero) }, gIdx: w.groupIndex.map(Int.init), bias: bias)
    }

    /// config.json bytes and tokenizer files: the HF input's own, or built from GGUF metadata.
    static func configAndTokenizer(view: any ModelView, tmp: URL) throws -> (Data, [URL]) {
        let fm = FileManager.default
        if view.format != "gguf" {
            var dir = view.url
            var isDir: ObjCBool = false
            if !(fm.fileExists(atPath: dir.path, isDirectory: &isDir) && isDir.boolValue) {
                dir.deleteLastPathComponent()
            }
            let cfg = try Data(contentsOf: dir.appendingPathComponent("config.json"))
            let toks = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]
                .map { dir.appendingPathComponent($0) }.filter { fm.fileExists(atPath: $0.path) }
            return (cfg, toks)
        }
        let c = view.config
        let md = view.metadata
        let (cls, type) =
            switch Architecture(name: c.architecture) {
            case .qwen2: ("Qwen2ForCausalLM", "qwen2")
            case .mistral: ("MistralForCausalLM", "mistral")
            default: ("LlamaForCausalLM", "llama")
            }
        // Floats through their shortest decimal form, so 1e-05 stays 1e-05.
        func dec(_ f: Float) -> Double { Double("\(f)") ?? Double(f) }
        var cfg: [String: Any] = [
            "architectures": [cls], "model_type": type, "vocab_size": c.vocabSize, "hidden_size": c.hiddenSize,
            "intermediate_size": c.intermediateSize, "num_hidden_layers": c.layerCount,
            "num_attention_heads": c.headCount, "num_key_value_heads": c.kvHeadCount,
            "max_position_embeddings": c.contextLength, "rms_norm_eps": dec(c.normEps), "rope_theta": dec(c.ropeTheta),
            "tie_word_embeddings": c.tiedEmbeddings, "hidden_act": "silu", "torch_dtype": "float16",
            "attention_bias": c.attentionBias, "head_dim": c.headDim,
        ]
        if let b = md["tokenizer.ggml.bos_token_id"]?.int { cfg["bos_token_id"] = b }
        if let e = md["tokenizer.ggml.eos_token_id"]?.int { cfg["eos_token_id"] = e }
        let cfgData = try JSONSerialization.data(withJSONObject: cfg, options: [.sortedKeys])
        var files: [URL] = []
        if let (tok, _) = TokenizerJSONBuilder.build(metadata: md) {
            try fm.createDirectory(at: tmp, withIntermediateDirectories: true)
            let t = tmp.appendingPathComponent("tokenizer.json")
            try tok.write(to: t)
            files.append(t)
            if let tc = TokenizerJSONBuilder.config(metadata: md) {
                let u = tmp.appendingPathComponent("tokenizer_config.json")
                try tc.write(to: u)
                files.append(u)
            }
        }
        return (cfgData, files)
    }
}
