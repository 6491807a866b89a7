import Foundation
import ModelIO
import Tensor

// The Llama family (Llama, Mistral, Qwen2, SmolLM): pre-RMSNorm blocks with RoPE
// grouped-query causal attention and a SwiGLU MLP; tied or untied output head;
// optional q/k/v bias (Qwen2).

/// Hyper-parameters a Llama block needs.
public struct LlamaHyper: Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var normEps: Float
    public var ropeTheta: Float
    /// Layout of the q/k rows of the weights held (decides the RoPE pairing).
    public var ropeLayout: RopeLayout

    public init(
        hiddenSize: Int, intermediateSize: Int, headCount: Int, kvHeadCount: Int, headDim: Int,
        normEps: Float, ropeTheta: Float, ropeLayout: RopeLayout
    ) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.normEps = normEps
        self.ropeTheta = ropeTheta
        self.ropeLayout = ropeLayout
    }

    public init(config c: ModelConfig, ropeLayout: RopeLayout) {
        self.init(
            hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize, headCount: c.headCount,
            kvHeadCount: c.kvHeadCount, headDim: c.headDim, normEps: c.normEps, ropeTheta: c.ropeTheta,
            ropeLayout: ropeLayout)
    }
}

/// The weights of one block. Linears are [out, in]; swap any of them (same shape)
/// to run the block with quantized-dequantized weights.
public struct LlamaBlockWeights: LinearWeights, Equatable {
    public var attnNorm: [Float]
    public var q: Matrix
    public var k: Matrix
    public var v: Matrix
    public var o: Matrix
    public var qBias: [Float]?
    public var kBias: [Float]?
    public var vBias: [Float]?
    public var ffnNorm: [Float]
    public var gate: Matrix
    public var up: Matrix
    public var down: Matrix

    public init(
        attnNorm: [Float], q: Matrix, k: Matrix, v: Matrix, o: Matrix,
        qBias: [Float]? = nil, kBias: [Float]? = nil, vBias: [Float]? = nil,
        ffnNorm: [Float], gate: Matrix, up: Matrix, down: Matrix
    ) {
        self.attnNorm = attnNorm
        self.q = q
        self.k = k
        self.v = v
        self.o = o
        self.qBias = qBias
        self.kBias = kBias
        self.vBias = vBias
        self.ffnNorm = ffnNorm
        self.gate = gate
        self.up = up
        self.down = down
    }

    public static func keyPath(_ l: Linear) -> WritableKeyPath<Self, Matrix>? {
        switch l {
        case .attnQ: return \.q
        case .attnK: return \.k
        case .attnV: return \.v
        case .attnOutput: return \.o
        case .ffnGate: return \.gate
        case .ffnUp: return \.up
        case .ffnDown: return \.down
        }
    }
}

/// One Llama block as a module.
public struct LlamaBlock: LinearWeightsBlock {
    public static let linears = Linear.allCases
    public static let linearNames = linears.map(\.rawValue)
    public static let linearGroups = Linear.groups(linears)

    public let index: Int
    public let hyper: LlamaHyper
    public var weights: LlamaBlockWeights
    public let rope: RopeTable
    /// Runs the block's linears in place of Float32 BLAS (the W8A8 int8 path); nil: BLAS.
    public var kernel: (any LinearKernel)?

    public init(index: Int, hyper: LlamaHyper, weights: LlamaBlockWeights, rope: RopeTable) {
        self.index = index
        self.hyper = hyper
        self.weights = weights
        self.rope = rope
    }

    public func forward(hidden x: Matrix, context: ForwardContext) -> Matrix {
        let w = weights
        let p = hyper
        precondition(x.cols == p.hiddenSize, "block \(index): input has \(x.cols) columns, expected \(p.hiddenSize)")
        var h = x

        // Attention.
        let n1 = Kernels.rmsNorm(x, weight: w.attnNorm, eps: p.normEps)
        context.hook?(LinearInput(block: index, linears: ["attn_q", "attn_k", "attn_v"], input: n1))
        var q = linear(n1, .attnQ, w.q)
        var k = linear(n1, .attnK, w.k)
        var v = linear(n1, .attnV, w.v)
        if let b = w.qBias { Kernels.addRowVector(&q, b) }
        if let b = w.kBias { Kernels.addRowVector(&k, b) }
        if let b = w.vBias { Kernels.addRowVector(&v, b) }
        rope.apply(&q, heads: p.headCount, positionOffset: context.positionOffset, layout: p.ropeLayout)
        rope.apply(&k, heads: p.kvHeadCount, positionOffset: context.positionOffset, layout: p.ropeLayout)
        let a = Attention.run(
            q: q, k: k, v: v, heads: p.headCount, kvHeads: p.kvHeadCount,
            headDim: p.headDim, causal: true)
        context.hook?(LinearInput(block: index, linears: ["attn_output"], input: a))
        residualLinear(a, .attnOutput, w.o, into: &h)

        // MLP.
        let n2 = Kernels.rmsNorm(h, weight: w.ffnNorm, eps: p.normEps)
        context.hook?(LinearInput(block: index, linears: ["ffn_gate", "ffn_up"], input: n2))
        var g = linear(n2, .ffnGate, w.gate)
        let u = linear(n2, .ffnUp, w.up)
        Kernels.siluMul(gate: &g, up: u)
        context.hook?(LinearInput(block: index, linears: ["ffn_down"], input: g))
        if !context.outputNeeded { return h }  // statistics only: ffn_down's output is not wanted
        residualLinear(g, .ffnDown, w.down, into: &h)
        return h
    }

    /// x W^T, by `kernel` when it runs this linear.
    private func linear(_ x: Matrix, _ l: Linear, _ w: Matrix) -> Matrix {
        kernel?.apply(l, block: index, x) ?? BLAS.linear(x, w)
    }

    /// h += x W^T.
    private func residualLinear(_ x: Matrix, _ l: Linear, _ w: Matrix, into h: inout Matrix) {
        if let y = kernel?.apply(l, block: index, x) {
            Kernels.add(&h, y)
        } else {
            Kernels.linear(x, w, beta: 1, into: &h)
        }
    }
}

/// A Llama-family causal LM. Immutable and thread-safe; blocks are either held in
/// memory or read from the model file on demand (`lazy`), so a pipeline that runs
/// one block at a time holds one block's weights.
public final class LlamaModel: CausalLM, Sendable {
    public let config: ModelConfig
    public let hyper: LlamaHyper
    /// Naming of the source file (for mapping linears back to tensor names).
    public let naming: TensorNaming
    /// Token embedding [vocab, hidden].
    public let embedding: Matrix
    public let outputNorm: [Float]
    /// Untied output head [vocab, hidden]; nil when tied to the embedding.
    public let outputHead: Matrix?
    /// The untied head was not read (`ModelLoadOptions.outputHead` false: a worker runs
    /// blocks, never the head, which for a 7B model is 0.5 GB in Float32).
    let headSkipped: Bool
    public let rope: RopeTable

    enum Blocks {
        case eager([LlamaBlockWeights])
        /// A block's weights, and one linear of a block read alone.
        case lazy(@Sendable (Int) throws -> LlamaBlockWeights, linear: (@Sendable (Int, String) throws -> Matrix)?)
    }
    let blocks: Blocks
    let overrides: [Int: LlamaBlockWeights]

    public convenience init(
        config: ModelConfig, hyper: LlamaHyper, naming: TensorNaming, embedding: Matrix, outputNorm: [Float],
        outputHead: Matrix?, blocks: [LlamaBlockWeights], headSkipped: Bool = false
    ) {
        self.init(
            config: config, hyper: hyper, naming: naming, embedding: embedding, outputNorm: outputNorm,
            outputHead: outputHead, headSkipped: headSkipped, blocks: .eager(blocks), overrides: [:])
    }

    /// A model whose blocks are produced on demand by `loadBlock` (and single linears by
    /// `loadLinear`, when given: block, llama.cpp linear name).
    public convenience init(
        config: ModelConfig, hyper: LlamaHyper, naming: TensorNaming, embedding: Matrix, outputNorm: [Float],
        outputHead: Matrix?, lazyBlocks loadBlock: @escaping @Sendable (Int) throws -> LlamaBlockWeights,
        linear loadLinear: (@Sendable (Int, String) throws -> Matrix)? = nil, headSkipped: Bool = false
    ) {
        self.init(
            config: config, hyper: hyper, naming: naming, embedding: embedding, outputNorm: outputNorm,
            outputHead: outputHead, headSkipped: headSkipped, blocks: .lazy(loadBlock, linear: loadLinear),
            overrides: [:])
    }

    private init(
        config: ModelConfig, hyper: LlamaHyper, naming: TensorNaming, embedding: Matrix, outputNorm: [Float],
        outputHead: Matrix?, headSkipped: Bool, blocks: Blocks, overrides: [Int: LlamaBlockWeights]
    ) {
        self.config = config
        self.hyper = hyper
        self.naming = naming
        self.embedding = embedding
        self.outputNorm = outputNorm
        self.outputHead = outputHead
        self.headSkipped = headSkipped
        self.rope = RopeTable(
            headDim: hyper.headDim, theta: hyper.ropeTheta,
            maxPositions: min(max(config.contextLength, 512), 32768))
        self.blocks = blocks
        self.overrides = overrides
    }

    private init(base: LlamaModel, overrides: [Int: LlamaBlockWeights]) {
        config = base.config
        hyper = base.hyper
        naming = base.naming
        embedding = base.embedding
        outputNorm = base.outputNorm
        outputHead = base.outputHead
        headSkipped = base.headSkipped
        rope = base.rope
        blocks = base.blocks
        self.overrides = base.overrides.merging(overrides) { _, new in new }
    }

    public var blockCount: Int { config.layerCount }
    public var isLazy: Bool {
        if case .lazy = blocks { return true }
        return false
    }

    /// The weights of block i (read from the file if lazy).
    public func blockWeights(_ i: Int) throws -> LlamaBlockWeights {
        precondition(i >= 0 && i < blockCount, "block \(i) out of 0..<\(blockCount)")
        if let w = overrides[i] { return w }
        switch blocks {
        case let .eager(all): return all[i]
        case let .lazy(load, _): return try load(i)
        }
    }

    /// One linear of block i, as `blockWeights(i)` holds it; a lazy model reads only that
    /// tensor (a 7B block is 0.8 GB in Float32, its ffn_down 180 MB).
    public func linearWeight(block i: Int, _ name: String) throws -> Matrix {
        precondition(i >= 0 && i < blockCount, "block \(i) out of 0..<\(blockCount)")
        if overrides[i] == nil, case let .lazy(_, linear?) = blocks { return try linear(i, name) }
        guard let w = try blockWeights(i)[linear: name] else { throw ModelError.missingLinear(name, block: i) }
        return w
    }

    /// Block i as a module.
    public func block(_ i: Int) throws -> LlamaBlock {
        LlamaBlock(index: i, hyper: hyper, weights: try blockWeights(i), rope: rope)
    }

    public func anyBlock(_ i: Int) throws -> any TransformerBlock { try block(i) }

    /// The same model with some blocks' weights replaced (e.g. quantized ones).
    public func replacingBlocks(_ replacements: [Int: LlamaBlockWeights]) -> LlamaModel {
        LlamaModel(base: self, overrides: replacements)
    }

    public func embed(_ ids: [Int32]) -> Matrix {
        let hdim = embedding.cols
        let vocab = embedding.rows
        var out = Matrix(rows: ids.count, cols: hdim)
        embedding.data.withUnsafeBufferPointer { pe in
            out.data.withUnsafeMutableBufferPointer { po in
                for (t, id) in ids.enumerated() {
                    precondition(id >= 0 && Int(id) < vocab, "token id \(id) outside the vocabulary of \(vocab)")
                    (po.baseAddress! + t * hdim).update(from: pe.baseAddress! + Int(id) * hdim, count: hdim)
                }
            }
        }
        return out
    }

    public func runBlock(_ i: Int, hidden: Matrix, context: ForwardContext) throws -> Matrix {
        try block(i).forward(hidden: hidden, context: context)
    }

    public func normalize(_ hidden: Matrix) -> Matrix {
        Kernels.rmsNorm(hidden, weight: outputNorm, eps: hyper.normEps)
    }

    /// The output head weight [vocab, hidden] (the embedding when tied).
    public var headWeight: Matrix {
        precondition(!headSkipped, "the model was loaded without its output head")
        return outputHead ?? embedding
    }

    public func logits(_ normed: Matrix) -> Matrix {
        BLAS.linear(normed, headWeight)
    }
}
