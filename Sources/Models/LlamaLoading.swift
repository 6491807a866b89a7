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

    /// Read the untied output head (false: blocks only; `headWeight` then traps).
    public var outputHead: Bool

    public init(lazyBlocks: Bool = false, ropeLayout: RopeLayout? = nil, outputHead: Bool = true) {
        self.lazyBlocks = lazyBlocks
        self.ropeLayout = ropeLayout
        self.outputHead = outputHead
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

    public static func attnNorm(_ b: Int, _ n: TensorNaming) -> String {
        n == .gguf ? "blk.\(b).attn_norm.weight" : "model.layers.\(b).input_layernorm.weight"
    }
    public static func ffnNorm(_ b: Int, _ n: TensorNaming) -> String {
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

/// The tensors of a Llama-family model with the shapes the loader accepts: the one list
/// that `checkCausalLM` (header only) and `loadCausalLM` go by.
public struct LlamaTensors: Sendable {
    public let config: ModelConfig
    public let naming: TensorNaming

    public init(config: ModelConfig, naming: TensorNaming) {
        self.config = config
        self.naming = naming
    }

    public var embedding: TensorRequirement {
        TensorRequirement(LlamaTensorNames.embedding(naming), .matrix(rows: config.vocabSize, cols: config.hiddenSize))
    }
    public var outputNorm: TensorRequirement {
        TensorRequirement(LlamaTensorNames.outputNorm(naming), .vector(config.hiddenSize))
    }
    /// GGUF files of tied models simply omit the head; the embedding stands in.
    public var outputHead: TensorRequirement {
        TensorRequirement(
            LlamaTensorNames.outputHead(naming), .matrix(rows: config.vocabSize, cols: config.hiddenSize),
            required: false)
    }

    /// One block's tensors.
    public struct Block: Sendable {
        public let attnNorm, q, k, v, o, qBias, kBias, vBias, ffnNorm, gate, up, down: TensorRequirement
        public var all: [TensorRequirement] { [attnNorm, q, k, v, o, qBias, kBias, vBias, ffnNorm, gate, up, down] }

        /// A linear's weight by its llama.cpp name ("attn_q" ... "ffn_down").
        public func linear(_ name: String) -> TensorRequirement? {
            switch name {
            case "attn_q": return q
            case "attn_k": return k
            case "attn_v": return v
            case "attn_output": return o
            case "ffn_gate": return gate
            case "ffn_up": return up
            case "ffn_down": return down
            default: return nil
            }
        }
    }

    public func block(_ i: Int) -> Block {
        let c = config
        let h = c.hiddenSize
        let qOut = c.headCount * c.headDim
        let kvOut = c.kvHeadCount * c.headDim
        let f = c.intermediateSize
        func lin(_ name: String, _ rows: Int, _ cols: Int) -> TensorRequirement {
            TensorRequirement(
                LlamaTensorNames.linear(name, block: i, naming: naming), .matrix(rows: rows, cols: cols))
        }
        func bias(_ name: String, _ n: Int) -> TensorRequirement {
            TensorRequirement(
                LlamaTensorNames.linear(name, block: i, naming: naming, suffix: "bias"), .vector(n),
                required: c.attentionBias)
        }
        return Block(
            attnNorm: TensorRequirement(LlamaTensorNames.attnNorm(i, naming), .vector(h)),
            q: lin("attn_q", qOut, h), k: lin("attn_k", kvOut, h), v: lin("attn_v", kvOut, h),
            o: lin("attn_output", h, qOut),
            qBias: bias("attn_q", qOut), kBias: bias("attn_k", kvOut), vBias: bias("attn_v", kvOut),
            ffnNorm: TensorRequirement(LlamaTensorNames.ffnNorm(i, naming), .vector(h)),
            gate: lin("ffn_gate", f, h), up: lin("ffn_up", f, h), down: lin("ffn_down", h, f))
    }

    /// Every tensor, in load order (the block count is bounded by `checkConfig`).
    public var all: [TensorRequirement] {
        [embedding, outputNorm, outputHead] + (0..<config.layerCount).flatMap { block($0).all }
    }
}

/// Everything `loadCausalLM` checks before it reads a weight, from the header alone:
/// the architecture, the config's fields, and every tensor present with its expected
/// shape and a type Kiln dequantizes. Reads no tensor data (only the values' finiteness
/// is left to the load). Errors name the file and the field or tensor.
@discardableResult
public func checkCausalLM(view: any ModelView) throws -> LlamaTensors {
    let c = view.config
    let file = view.url.lastPathComponent
    let arch = Architecture(name: c.architecture)
    guard arch?.isCausal == true else {
        throw ModelError.unsupported(
            file, c.architecture, hint: arch == .bert ? "; 'bert' is an encoder: use loadBERT" : "")
    }
    try checkConfig(c, file: file)
    let tensors = LlamaTensors(config: c, naming: view.naming)
    for t in tensors.all { try t.check(in: view) }
    return tensors
}

/// Builds a Llama-family model from a model file.
public func loadCausalLM(view: any ModelView, options: ModelLoadOptions = ModelLoadOptions()) throws -> LlamaModel {
    // Fails early on a bad header, before any data is read (lazy blocks included).
    let tensors = try checkCausalLM(view: view)
    let c = view.config
    let naming = view.naming
    let stored = fileRopeLayout(architecture: c.architecture, naming: naming)
    let layout = options.ropeLayout ?? stored
    let hyper = LlamaHyper(config: c, ropeLayout: layout)
    let reader = TensorReader(view)

    let embedding = try reader.required(tensors.embedding)
    let outputNorm = try reader.required(tensors.outputNorm).data
    let head = options.outputHead ? try reader.read(tensors.outputHead) : nil
    let skipped = !options.outputHead && view.info(tensors.outputHead.name) != nil

    let loadBlock: @Sendable (Int) throws -> LlamaBlockWeights = { i in
        try loadLlamaBlock(
            reader: TensorReader(view), tensors: tensors.block(i), config: c, stored: stored, wanted: layout)
    }
    // One linear alone, as its block holds it: q and k are read with their block when the
    // RoPE layout is converted (their rows are permuted), every other linear by itself.
    let loadLinear: @Sendable (Int, String) throws -> Matrix = { i, name in
        let t = tensors.block(i)
        guard let requirement = t.linear(name) else { throw ModelError.missingLinear(name, block: i) }
        if stored != layout && (name == "attn_q" || name == "attn_k") {
            guard let w = try loadBlock(i)[linear: name] else { throw ModelError.missingLinear(name, block: i) }
            return w
        }
        return try TensorReader(view).required(requirement)
    }
    if options.lazyBlocks {
        return LlamaModel(
            config: c, hyper: hyper, naming: naming, embedding: embedding, outputNorm: outputNorm,
            outputHead: head, lazyBlocks: loadBlock, linear: loadLinear, headSkipped: skipped)
    }
    let blocks = try (0..<c.layerCount).map(loadBlock)
    return LlamaModel(
        config: c, hyper: hyper, naming: naming, embedding: embedding, outputNorm: outputNorm,
        outputHead: head, blocks: blocks, headSkipped: skipped)
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
    reader r: TensorReader, tensors t: LlamaTensors.Block, config c: ModelConfig, stored: RopeLayout,
    wanted: RopeLayout
) throws -> LlamaBlockWeights {
    var w = LlamaBlockWeights(
        attnNorm: try r.required(t.attnNorm).data,
        q: try r.required(t.q), k: try r.required(t.k), v: try r.required(t.v), o: try r.required(t.o),
        qBias: try r.read(t.qBias)?.data, kBias: try r.read(t.kBias)?.data, vBias: try r.read(t.vBias)?.data,
        ffnNorm: try r.required(t.ffnNorm).data,
        gate: try r.required(t.gate), up: try r.required(t.up), down: try r.required(t.down))
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
