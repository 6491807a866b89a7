import Foundation
import ModelIO
import Tensor

/// How to build a model from a file.
public struct ModelLoadOptions: Sendable {
    /// Read each block's weights from the file when the block is used, not at load time.
    public var lazyBlocks: Bool
    /// RoPE layout of the q/k rows held in memory. nil: keep the file's layout (GGUF
    /// Llama/Mistral: interleaved; Hugging Face and GGUF Qwen2: halves), so that
    /// weights map one-to-one onto the file's tensors. Otherwise q/k rows are permuted.
    public var ropeLayout: RopeLayout?

    public init(lazyBlocks: Bool = false, ropeLayout: RopeLayout? = nil) {
        self.lazyBlocks = lazyBlocks
        self.ropeLayout = ropeLayout
    }
}

/// Tensor names of the Llama family in both namings.
public enum LlamaTensorNames {
    /// File name of a linear's weight ("attn_q" of block 3 -> "blk.3.attn_q.weight" or
    /// "model.layers.3.self_attn.q_proj.weight").
    public static func linear(_ linear: String, block: Int, naming: TensorNaming, suffix: String = "weight") -> String {
        switch naming {
        case .gguf: return "blk.\(block).\(linear).\(suffix)"
        case .huggingFace:
            return "model.layers.\(block).\(Linear(rawValue: linear)?.huggingFaceName ?? linear).\(suffix)"
        }
    }

    static func attnNorm(_ b: Int, _ n: TensorNaming) -> String {
        n == .gguf ? "blk.\(b).attn_norm.weight" : "model.layers.\(b).input_layernorm.weight"
    }
    static func ffnNorm(_ b: Int, _ n: TensorNaming) -> String {
        n == .gguf ? "blk.\(b).ffn_norm.weight" : "model.layers.\(b).post_attention_layernorm.weight"
    }
    public static func embedding(_ n: TensorNaming) -> String {
        n == .gguf ? "token_embd.weight" : "model.embed_tokens.weight"
    }
    public static func outputNorm(_ n: TensorNaming) -> String {
        n == .gguf ? "output_norm.weight" : "model.norm.weight"
    }
    public static func outputHead(_ n: TensorNaming) -> String { n == .gguf ? "output.weight" : "lm_head.weight" }
}

/// The RoPE layout of q/k rows as stored in a file.
public func fileRopeLayout(architecture: String, naming: TensorNaming) -> RopeLayout {
    // llama.cpp's converter permutes q/k for Llama-architecture models (ggml "normal"
    // RoPE) but not for Qwen2 (NeoX RoPE). Hugging Face checkpoints use rotate_half.
    (naming == .gguf && Architecture(name: architecture) != .qwen2) ? .interleaved : .halves
}

/// Builds a Llama-family model from a model file.
public func loadCausalLM(view: any ModelView, options: ModelLoadOptions = ModelLoadOptions()) throws -> LlamaModel {
    let c = view.config
    let file = view.url.lastPathComponent
    let arch = c.architecture.lowercased()
    guard Architecture(name: arch)?.isCausal == true else {
        throw ModelError.unsupported(
            file, c.architecture,
            hint: Architecture(name: arch) == .bert ? "; 'bert' is an encoder: use loadBERT" : "")
    }
    try checkConfig(c, file: file)
    let naming = view.naming
    let stored = fileRopeLayout(architecture: arch, naming: naming)
    let layout = options.ropeLayout ?? stored
    let hyper = LlamaHyper(config: c, ropeLayout: layout)
    let reader = TensorReader(view)

    let embedding = try reader.matrix(LlamaTensorNames.embedding(naming), c.vocabSize, c.hiddenSize)
    let outputNorm = try reader.vector(LlamaTensorNames.outputNorm(naming), c.hiddenSize)
    let headName = LlamaTensorNames.outputHead(naming)
    // GGUF files of tied models simply omit the head; fall back to the embedding.
    let head = reader.has(headName) ? try reader.matrix(headName, c.vocabSize, c.hiddenSize) : nil

    let loadBlock: @Sendable (Int) throws -> LlamaBlockWeights = { i in
        try loadLlamaBlock(
            reader: TensorReader(view), config: c, block: i, naming: naming, stored: stored, wanted: layout)
    }
    // Fail early on a missing tensor, without reading any data (the block count is
    // bounded by checkConfig, so this loop and the block array below are too).
    for i in 0..<c.layerCount {
        let names =
            LlamaBlock.linearNames.map { LlamaTensorNames.linear($0, block: i, naming: naming) }
            + [LlamaTensorNames.attnNorm(i, naming), LlamaTensorNames.ffnNorm(i, naming)]
        for n in names where !view.has(n) { throw ModelError(file: file, "missing tensor '\(n)'") }
    }
    if options.lazyBlocks {
        return LlamaModel(
            config: c, hyper: hyper, naming: naming, embedding: embedding, outputNorm: outputNorm,
            outputHead: head, lazyBlocks: loadBlock)
    }
    let blocks = try (0..<c.layerCount).map(loadBlock)
    return LlamaModel(
        config: c, hyper: hyper, naming: naming, embedding: embedding, outputNorm: outputNorm,
        outputHead: head, blocks: blocks)
}

/// Bounds on a model's header fields, checked before anything is sized by them. Far
/// above any published model (Llama 3 405B: 126 blocks, hidden 16384, ffn 53248).
public enum ModelLimits {
    public static let maxBlocks = 4096
    public static let maxWidth = 1 << 18
    public static let maxVocab = 1 << 24
    public static let maxContext = 1 << 24
}

func checkConfig(_ c: ModelConfig, file: String) throws {
    func bad(_ s: String) -> ModelError { ModelError(file: file, "invalid config: \(s)") }
    guard c.hiddenSize > 0, c.headCount > 0, c.layerCount >= 0, c.vocabSize > 0, c.intermediateSize > 0 else {
        throw bad("sizes must be positive (hidden \(c.hiddenSize), heads \(c.headCount), vocab \(c.vocabSize))")
    }
    guard c.layerCount <= ModelLimits.maxBlocks else {
        throw bad("block count \(c.layerCount) exceeds \(ModelLimits.maxBlocks); the header is damaged")
    }
    for (name, v) in [
        ("hidden size", c.hiddenSize), ("feed-forward size", c.intermediateSize),
        ("head count", c.headCount), ("kv head count", c.kvHeadCount),
    ] where v > ModelLimits.maxWidth {
        throw bad("\(name) \(v) exceeds \(ModelLimits.maxWidth); the header is damaged")
    }
    guard c.vocabSize <= ModelLimits.maxVocab else {
        throw bad("vocabulary size \(c.vocabSize) exceeds \(ModelLimits.maxVocab)")
    }
    guard (1...ModelLimits.maxContext).contains(c.contextLength) else {
        throw bad(
            "context length \(c.contextLength) must be 1...\(ModelLimits.maxContext) (context_length / max_position_embeddings)"
        )
    }
    guard c.hiddenSize % c.headCount == 0 else {
        throw bad("hidden size \(c.hiddenSize) not divisible by \(c.headCount) heads")
    }
    guard c.kvHeadCount > 0, c.headCount % c.kvHeadCount == 0 else {
        throw bad("\(c.headCount) heads not a multiple of \(c.kvHeadCount) kv heads")
    }
    guard Architecture(name: c.architecture) == .bert || c.headDim % 2 == 0 else {
        throw bad("odd head dimension \(c.headDim) for RoPE")
    }
}

/// Reads one block, converting q/k rows to the wanted RoPE layout.
func loadLlamaBlock(
    reader r: TensorReader, config c: ModelConfig, block i: Int, naming n: TensorNaming,
    stored: RopeLayout, wanted: RopeLayout
) throws -> LlamaBlockWeights {
    let h = c.hiddenSize
    let d = c.headDim
    let qOut = c.headCount * d
    let kvOut = c.kvHeadCount * d
    let f = c.intermediateSize
    func lin(_ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
        try r.matrix(LlamaTensorNames.linear(name, block: i, naming: n), rows, cols)
    }
    func bias(_ name: String, _ count: Int) throws -> [Float]? {
        let t = LlamaTensorNames.linear(name, block: i, naming: n, suffix: "bias")
        return c.attentionBias ? try r.vector(t, count) : try r.optionalVector(t, count)
    }
    var w = LlamaBlockWeights(
        attnNorm: try r.vector(LlamaTensorNames.attnNorm(i, n), h),
        q: try lin("attn_q", qOut, h), k: try lin("attn_k", kvOut, h), v: try lin("attn_v", kvOut, h),
        o: try lin("attn_output", h, qOut),
        qBias: try bias("attn_q", qOut), kBias: try bias("attn_k", kvOut), vBias: try bias("attn_v", kvOut),
        ffnNorm: try r.vector(LlamaTensorNames.ffnNorm(i, n), h),
        gate: try lin("ffn_gate", f, h), up: try lin("ffn_up", f, h), down: try lin("ffn_down", h, f))
    if stored != wanted {
        w.convertRope(from: stored, to: wanted, heads: c.headCount, kvHeads: c.kvHeadCount)
    }
    return w
}

extension LlamaBlockWeights {
    /// Permutes the q/k rows (and biases) between RoPE layouts.
    public mutating func convertRope(from: RopeLayout, to: RopeLayout, heads: Int, kvHeads: Int) {
        if from == to { return }
        let toHalves = (to == .halves)
        func pm(_ m: Matrix, _ hs: Int) -> Matrix {
            toHalves
                ? RopePermutation.interleavedToHalves(m, heads: hs) : RopePermutation.halvesToInterleaved(m, heads: hs)
        }
        func pv(_ b: [Float]?, _ hs: Int) -> [Float]? {
            guard let b else { return nil }
            return toHalves
                ? RopePermutation.interleavedToHalves(b, heads: hs) : RopePermutation.halvesToInterleaved(b, heads: hs)
        }
        q = pm(q, heads)
        k = pm(k, kvHeads)
        qBias = pv(qBias, heads)
        kBias = pv(kBias, kvHeads)
    }
}
