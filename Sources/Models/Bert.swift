import Foundation
import ModelIO
import Tensor

// BERT encoders (e.g. all-MiniLM-L6-v2): word + position + token-type embeddings,
// post-LayerNorm blocks with biased linears, GELU (erf) MLP, bidirectional attention
// with a padding mask; sentence embeddings by mean pooling and L2 normalisation.

public struct BertHyper: Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var headCount: Int
    public var normEps: Float
    public var headDim: Int { hiddenSize / headCount }

    public init(hiddenSize: Int, intermediateSize: Int, headCount: Int, normEps: Float) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.headCount = headCount
        self.normEps = normEps
    }
}

public struct BertLayerWeights: LinearWeights, Equatable {
    public var q: Matrix, qBias: [Float]
    public var k: Matrix, kBias: [Float]
    public var v: Matrix, vBias: [Float]
    public var o: Matrix, oBias: [Float]
    public var attnNormWeight: [Float], attnNormBias: [Float]
    public var up: Matrix, upBias: [Float]
    public var down: Matrix, downBias: [Float]
    public var outNormWeight: [Float], outNormBias: [Float]

    public static func keyPath(_ l: Linear) -> WritableKeyPath<Self, Matrix>? {
        switch l {
        case .attnQ: return \.q
        case .attnK: return \.k
        case .attnV: return \.v
        case .attnOutput: return \.o
        case .ffnGate: return nil
        case .ffnUp: return \.up
        case .ffnDown: return \.down
        }
    }
}

public struct BertBlock: LinearWeightsBlock {
    public static let linears = Linear.allCases.filter { $0.bertHuggingFaceName != nil }
    public static let linearNames = linears.map(\.rawValue)
    public static let linearGroups = Linear.groups(linears)

    public let index: Int
    public let hyper: BertHyper
    public var weights: BertLayerWeights

    public init(index: Int, hyper: BertHyper, weights: BertLayerWeights) {
        self.index = index
        self.hyper = hyper
        self.weights = weights
    }

    public func forward(hidden x: Matrix, context: ForwardContext) -> Matrix {
        let w = weights
        let p = hyper
        context.hook?(LinearInput(block: index, linears: ["attn_q", "attn_k", "attn_v"], input: x))
        var q = BLAS.linear(x, w.q)
        Kernels.addRowVector(&q, w.qBias)
        var k = BLAS.linear(x, w.k)
        Kernels.addRowVector(&k, w.kBias)
        var v = BLAS.linear(x, w.v)
        Kernels.addRowVector(&v, w.vBias)
        let a = Attention.run(
            q: q, k: k, v: v, heads: p.headCount, kvHeads: p.headCount, headDim: p.headDim,
            causal: false, keyMask: context.keyMask)
        context.hook?(LinearInput(block: index, linears: ["attn_output"], input: a))
        var h = x
        Kernels.linear(a, w.o, beta: 1, into: &h)
        Kernels.addRowVector(&h, w.oBias)
        Kernels.layerNorm(&h, weight: w.attnNormWeight, bias: w.attnNormBias, eps: p.normEps)
        context.hook?(LinearInput(block: index, linears: ["ffn_up"], input: h))
        var u = BLAS.linear(h, w.up)
        Kernels.addRowVector(&u, w.upBias)
        Kernels.geluErf(&u)
        context.hook?(LinearInput(block: index, linears: ["ffn_down"], input: u))
        Kernels.linear(u, w.down, beta: 1, into: &h)
        Kernels.addRowVector(&h, w.downBias)
        Kernels.layerNorm(&h, weight: w.outNormWeight, bias: w.outNormBias, eps: p.normEps)
        return h
    }
}

public final class BertModel: TransformerModel, Sendable {
    public let config: ModelConfig
    public let hyper: BertHyper
    public let wordEmbedding: Matrix  // [vocab, hidden]
    public let positionEmbedding: Matrix  // [maxPositions, hidden]
    public let tokenTypeEmbedding: Matrix  // [types, hidden]
    public let embeddingNormWeight: [Float]
    public let embeddingNormBias: [Float]
    public let layers: [BertLayerWeights]

    public init(
        config: ModelConfig, hyper: BertHyper, wordEmbedding: Matrix, positionEmbedding: Matrix,
        tokenTypeEmbedding: Matrix, embeddingNormWeight: [Float], embeddingNormBias: [Float],
        layers: [BertLayerWeights]
    ) {
        self.config = config
        self.hyper = hyper
        self.wordEmbedding = wordEmbedding
        self.positionEmbedding = positionEmbedding
        self.tokenTypeEmbedding = tokenTypeEmbedding
        self.embeddingNormWeight = embeddingNormWeight
        self.embeddingNormBias = embeddingNormBias
        self.layers = layers
    }

    public var blockCount: Int { layers.count }
    public var maxPositions: Int { positionEmbedding.rows }

    public func block(_ i: Int) -> BertBlock { BertBlock(index: i, hyper: hyper, weights: layers[i]) }
    public func anyBlock(_ i: Int) throws -> any TransformerBlock { block(i) }

    /// The same model with some layers' weights replaced (e.g. quantized ones).
    public func replacingLayers(_ replacements: [Int: BertLayerWeights]) -> BertModel {
        var l = layers
        for (i, w) in replacements { l[i] = w }
        return BertModel(
            config: config, hyper: hyper, wordEmbedding: wordEmbedding, positionEmbedding: positionEmbedding,
            tokenTypeEmbedding: tokenTypeEmbedding, embeddingNormWeight: embeddingNormWeight,
            embeddingNormBias: embeddingNormBias, layers: l)
    }

    /// Embedding layer output (after its LayerNorm): [tokens, hidden].
    public func embeddings(_ ids: [Int32], tokenTypes: [Int32]? = nil) -> Matrix {
        let hd = hyper.hiddenSize
        precondition(ids.count <= maxPositions, "\(ids.count) tokens exceed \(maxPositions) positions")
        var out = Matrix(rows: ids.count, cols: hd)
        for (t, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < wordEmbedding.rows, "token id \(id) outside the vocabulary")
            let type = Int(tokenTypes?[t] ?? 0)
            for c in 0..<hd {
                out.data[t * hd + c] =
                    wordEmbedding.data[Int(id) * hd + c] + tokenTypeEmbedding.data[type * hd + c]
                    + positionEmbedding.data[t * hd + c]
            }
        }
        Kernels.layerNorm(&out, weight: embeddingNormWeight, bias: embeddingNormBias, eps: hyper.normEps)
        return out
    }

    /// last_hidden_state [tokens, hidden]. attentionMask: 1 = real token, 0 = padding.
    public func lastHiddenState(
        _ ids: [Int32], attentionMask: [Int32]? = nil, tokenTypes: [Int32]? = nil,
        hook: LinearHook? = nil
    ) -> Matrix {
        var h = embeddings(ids, tokenTypes: tokenTypes)
        let ctx = ForwardContext(keyMask: attentionMask.map { $0.map { $0 != 0 } }, hook: hook)
        for i in 0..<layers.count { h = block(i).forward(hidden: h, context: ctx) }
        return h
    }

    /// Sentence embedding: mean of last_hidden_state over real tokens, L2-normalised.
    public func embed(_ ids: [Int32], attentionMask: [Int32]? = nil) -> [Float] {
        let h = lastHiddenState(ids, attentionMask: attentionMask)
        let hd = h.cols
        var sum = [Double](repeating: 0, count: hd)
        var n = 0.0
        for t in 0..<h.rows where (attentionMask?[t] ?? 1) != 0 {
            n += 1
            for c in 0..<hd { sum[c] += Double(h.data[t * hd + c]) }
        }
        let mean = sum.map { $0 / max(n, 1e-9) }
        let norm = max(mean.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        return mean.map { Float($0 / norm) }
    }
}

/// Tensor names of BERT in both namings (HF names optionally under "bert.").
struct BertNames {
    let naming: TensorNaming
    let prefix: String

    func emb(_ what: String) -> String {
        switch naming {
        case .gguf:
            return [
                "word": "token_embd.weight", "position": "position_embd.weight", "type": "token_types.weight",
                "normW": "token_embd_norm.weight", "normB": "token_embd_norm.bias",
            ][what]!
        case .huggingFace:
            return prefix + [
                "word": "embeddings.word_embeddings.weight", "position": "embeddings.position_embeddings.weight",
                "type": "embeddings.token_type_embeddings.weight", "normW": "embeddings.LayerNorm.weight",
                "normB": "embeddings.LayerNorm.bias",
            ][what]!
        }
    }

    /// part: attn_q, attn_k, attn_v, attn_output, attn_output_norm, ffn_up, ffn_down, layer_output_norm.
    func layer(_ i: Int, _ part: String, _ suffix: String) -> String {
        switch naming {
        case .gguf: return "blk.\(i).\(part).\(suffix)"
        case .huggingFace:
            let norms = ["attn_output_norm": "attention.output.LayerNorm", "layer_output_norm": "output.LayerNorm"]
            let hf = Linear(rawValue: part)?.bertHuggingFaceName ?? norms[part]!
            return "\(prefix)encoder.layer.\(i).\(hf).\(suffix)"
        }
    }
}

/// Builds a BERT encoder from a model file.
public func loadBERT(view: any ModelView) throws -> BertModel {
    let c = view.config
    let file = view.url.lastPathComponent
    let arch = Architecture(name: c.architecture)
    guard arch == .bert else {
        if arch?.isCausal == true {
            throw ModelError(
                file: file,
                "architecture '\(c.architecture)' is a causal language model, not a BERT encoder: "
                    + "sentence embeddings need a BERT model (perplexity of this model: kiln eval)")
        }
        throw ModelError.unsupported(file, c.architecture)
    }
    try checkConfig(c, file: file)
    let prefix =
        (view.naming == .huggingFace && !view.has("embeddings.word_embeddings.weight")
            && view.has("bert.embeddings.word_embeddings.weight")) ? "bert." : ""
    let names = BertNames(naming: view.naming, prefix: prefix)
    let r = TensorReader(view)
    let h = c.hiddenSize
    let f = c.intermediateSize
    let posName = names.emb("position")
    let maxPos = view.info(posName)?.shape.first ?? c.contextLength
    let types = max(c.typeVocabSize, 1)
    let typeName = names.emb("type")
    let typeEmb =
        r.has(typeName)
        ? try r.matrix(typeName, view.info(typeName)?.shape.first ?? types, h)
        : Matrix(rows: 1, cols: h)
    var layers: [BertLayerWeights] = []
    for i in 0..<c.layerCount {
        func lin(_ part: String, _ rows: Int, _ cols: Int) throws -> (Matrix, [Float]) {
            (try r.matrix(names.layer(i, part, "weight"), rows, cols), try r.vector(names.layer(i, part, "bias"), rows))
        }
        func norm(_ part: String) throws -> ([Float], [Float]) {
            (try r.vector(names.layer(i, part, "weight"), h), try r.vector(names.layer(i, part, "bias"), h))
        }
        let (q, qb) = try lin("attn_q", h, h)
        let (k, kb) = try lin("attn_k", h, h)
        let (v, vb) = try lin("attn_v", h, h)
        let (o, ob) = try lin("attn_output", h, h)
        let (an, anb) = try norm("attn_output_norm")
        let (u, ub) = try lin("ffn_up", f, h)
        let (d, db) = try lin("ffn_down", h, f)
        let (on, onb) = try norm("layer_output_norm")
        layers.append(
            BertLayerWeights(
                q: q, qBias: qb, k: k, kBias: kb, v: v, vBias: vb, o: o, oBias: ob,
                attnNormWeight: an, attnNormBias: anb, up: u, upBias: ub, down: d, downBias: db,
                outNormWeight: on, outNormBias: onb))
    }
    return BertModel(
        config: c, hyper: BertHyper(hiddenSize: h, intermediateSize: f, headCount: c.headCount, normEps: c.normEps),
        wordEmbedding: try r.matrix(names.emb("word"), c.vocabSize, h),
        positionEmbedding: try r.matrix(posName, maxPos, h),
        tokenTypeEmbedding: typeEmb,
        embeddingNormWeight: try r.vector(names.emb("normW"), h),
        embeddingNormBias: try r.vector(names.emb("normB"), h),
        layers: layers)
}
