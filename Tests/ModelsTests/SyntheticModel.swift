import Foundation
import ModelIO
import Models
import Tensor

/// An in-memory ModelView over generated tensors, for fast tests of the Models layer.
final class MemoryView: ModelView, @unchecked Sendable {
    let url: URL
    let format = "memory"
    let naming: TensorNaming
    let config: ModelConfig
    let tensors: [TensorInfo]
    let tokenizer: TokenizerSource? = nil
    let metadata: [String: GGUFValue] = [:]
    let store: [String: Matrix]
    private let lock = NSLock()
    private(set) var loads: [String] = []

    init(file: String = "model.gguf", naming: TensorNaming, config: ModelConfig, tensors: [(String, [Int], Matrix)]) {
        url = URL(fileURLWithPath: "/tmp").appendingPathComponent(file)
        self.naming = naming
        self.config = config
        self.tensors = tensors.map {
            TensorInfo(
                name: $0.0, dtype: .f32, shape: $0.1, byteCount: $0.2.count * 4,
                file: URL(fileURLWithPath: "/tmp/\(file)"))
        }
        var s: [String: Matrix] = [:]
        for t in tensors { s[t.0] = t.2 }
        store = s
    }

    func load(_ name: String) throws -> Matrix {
        guard let m = store[name] else { throw ModelIOError(file: url.lastPathComponent, "no tensor '\(name)'") }
        lock.lock()
        loads.append(name)
        lock.unlock()
        return m
    }

    func rawBytes(_ name: String) throws -> Data {
        let m = try load(name)
        return m.data.withUnsafeBufferPointer { Data(buffer: $0) }
    }

    var loadCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return loads.count
    }
}

/// SplitMix64: reproducible test data.
struct SeededRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-scale, scale).
    mutating func float(_ scale: Float) -> Float {
        (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
    mutating func matrix(_ r: Int, _ c: Int, _ scale: Float) -> Matrix {
        Matrix(rows: r, cols: c, data: (0..<(r * c)).map { _ in float(scale) })
    }
    mutating func vector(_ n: Int, around center: Float, _ scale: Float) -> Matrix {
        Matrix(rows: 1, cols: n, data: (0..<n).map { _ in center + float(scale) })
    }
}

/// A tiny random Llama-family model, in either naming (GGUF: q/k rows permuted as
/// llama.cpp's converter does).
struct TinyLlama {
    var config: ModelConfig
    /// HF-layout tensors keyed by HF name.
    var hf: [(String, [Int], Matrix)] = []

    init(
        seed: UInt64 = 1, layers: Int = 2, vocab: Int = 61, hidden: Int = 32, heads: Int = 4, kvHeads: Int = 2,
        intermediate: Int = 48, tied: Bool = true, bias: Bool = false, architecture: String = "llama"
    ) {
        config = ModelConfig(
            architecture: architecture, vocabSize: vocab, hiddenSize: hidden, intermediateSize: intermediate,
            layerCount: layers, headCount: heads, kvHeadCount: kvHeads, contextLength: 256,
            normEps: 1e-5, ropeTheta: 10000, tiedEmbeddings: tied, attentionBias: bias)
        var rng = SeededRandom(seed)
        let d = hidden / heads
        func add(_ name: String, _ m: Matrix, vector: Bool = false) {
            hf.append((name, vector ? [m.count] : [m.rows, m.cols], m))
        }
        add("model.embed_tokens.weight", rng.matrix(vocab, hidden, 1))
        for i in 0..<layers {
            let p = "model.layers.\(i)."
            add(p + "input_layernorm.weight", rng.vector(hidden, around: 1, 0.2), vector: true)
            add(p + "self_attn.q_proj.weight", rng.matrix(heads * d, hidden, 0.4))
            add(p + "self_attn.k_proj.weight", rng.matrix(kvHeads * d, hidden, 0.4))
            add(p + "self_attn.v_proj.weight", rng.matrix(kvHeads * d, hidden, 0.3))
            add(p + "self_attn.o_proj.weight", rng.matrix(hidden, heads * d, 0.2))
            if bias {
                add(p + "self_attn.q_proj.bias", rng.vector(heads * d, around: 0, 0.3), vector: true)
                add(p + "self_attn.k_proj.bias", rng.vector(kvHeads * d, around: 0, 0.3), vector: true)
                add(p + "self_attn.v_proj.bias", rng.vector(kvHeads * d, around: 0, 0.3), vector: true)
            }
            add(p + "post_attention_layernorm.weight", rng.vector(hidden, around: 1, 0.2), vector: true)
            add(p + "mlp.gate_proj.weight", rng.matrix(intermediate, hidden, 0.3))
            add(p + "mlp.up_proj.weight", rng.matrix(intermediate, hidden, 0.3))
            add(p + "mlp.down_proj.weight", rng.matrix(hidden, intermediate, 0.2))
        }
        add("model.norm.weight", rng.vector(hidden, around: 1, 0.2), vector: true)
        if !tied { add("lm_head.weight", rng.matrix(vocab, hidden, 0.5)) }
    }

    func hfView(file: String = "model.safetensors") -> MemoryView {
        MemoryView(file: file, naming: .huggingFace, config: config, tensors: hf)
    }

    /// GGUF names; q/k rows permuted (except for qwen2, as llama.cpp does).
    func ggufView(file: String = "model.gguf", edit: ((inout [(String, [Int], Matrix)]) -> Void)? = nil) -> MemoryView {
        let permute = config.architecture != "qwen2"
        var out: [(String, [Int], Matrix)] = []
        for (name, shape, m) in hf {
            var n = name
            var w = m
            n = n.replacingOccurrences(of: "model.embed_tokens.weight", with: "token_embd.weight")
            n = n.replacingOccurrences(of: "model.norm.weight", with: "output_norm.weight")
            n = n.replacingOccurrences(of: "lm_head.weight", with: "output.weight")
            n = n.replacingOccurrences(of: "model.layers.", with: "blk.")
            for (a, b) in [
                ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"),
                ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                ("mlp.down_proj", "ffn_down"),
            ] {
                n = n.replacingOccurrences(of: a, with: b)
            }
            if permute && (n.contains("attn_q.") || n.contains("attn_k.")) {
                let heads = n.contains("attn_q.") ? config.headCount : config.kvHeadCount
                if shape.count == 1 {
                    w = Matrix(rows: 1, cols: m.count, data: RopePermutation.halvesToInterleaved(m.data, heads: heads))
                } else {
                    w = RopePermutation.halvesToInterleaved(m, heads: heads)
                }
            }
            out.append((n, shape, w))
        }
        edit?(&out)
        return MemoryView(file: file, naming: .gguf, config: config, tensors: out)
    }

    func tensor(_ name: String) -> Matrix { hf.first { $0.0 == name }!.2 }

    /// Independent straightforward forward pass (Double, HF layout): logits [T][vocab].
    func referenceLogits(_ ids: [Int]) -> [[Double]] {
        let c = config
        let hd = c.hiddenSize
        let d = c.headDim
        let t = ids.count
        let group = c.headCount / c.kvHeadCount
        func vec(_ n: String) -> [Double] { tensor(n).data.map(Double.init) }
        func has(_ n: String) -> Bool { hf.contains { $0.0 == n } }
        func lin(_ x: [[Double]], _ n: String, bias: String? = nil) -> [[Double]] {
            let w = tensor(n)
            let b = bias.flatMap { has($0) ? vec($0) : nil }
            return x.map { row in
                (0..<w.rows).map { o in
                    var s = b?[o] ?? 0
                    for i in 0..<w.cols { s += Double(w[o, i]) * row[i] }
                    return s
                }
            }
        }
        func rms(_ x: [[Double]], _ n: String) -> [[Double]] {
            let g = vec(n)
            return x.map { row in
                let ms = row.reduce(0) { $0 + $1 * $1 } / Double(row.count)
                let inv = 1 / (ms + Double(c.normEps)).squareRoot()
                return row.enumerated().map { $0.element * inv * g[$0.offset] }
            }
        }
        func rope(_ x: inout [[Double]], heads: Int) {
            for p in 0..<t {
                for h in 0..<heads {
                    for i in 0..<(d / 2) {
                        let ang = Double(p) / pow(Double(c.ropeTheta), Double(2 * i) / Double(d))
                        let a = x[p][h * d + i]
                        let b = x[p][h * d + i + d / 2]
                        x[p][h * d + i] = a * cos(ang) - b * sin(ang)
                        x[p][h * d + i + d / 2] = b * cos(ang) + a * sin(ang)
                    }
                }
            }
        }
        let emb = tensor("model.embed_tokens.weight")
        var x: [[Double]] = ids.map { id in (0..<hd).map { Double(emb[id, $0]) } }
        for l in 0..<c.layerCount {
            let p = "model.layers.\(l)."
            let n1 = rms(x, p + "input_layernorm.weight")
            var q = lin(n1, p + "self_attn.q_proj.weight", bias: p + "self_attn.q_proj.bias")
            var k = lin(n1, p + "self_attn.k_proj.weight", bias: p + "self_attn.k_proj.bias")
            let v = lin(n1, p + "self_attn.v_proj.weight", bias: p + "self_attn.v_proj.bias")
            rope(&q, heads: c.headCount)
            rope(&k, heads: c.kvHeadCount)
            var a = [[Double]](repeating: [Double](repeating: 0, count: c.headCount * d), count: t)
            for h in 0..<c.headCount {
                let kh = h / group
                for i in 0..<t {
                    var s = (0...i).map { j in
                        (0..<d).reduce(0.0) { $0 + q[i][h * d + $1] * k[j][kh * d + $1] } / Double(d).squareRoot()
                    }
                    let m = s.max()!
                    s = s.map { exp($0 - m) }
                    let z = s.reduce(0, +)
                    for j in 0...i { for e in 0..<d { a[i][h * d + e] += s[j] / z * v[j][kh * d + e] } }
                }
            }
            let o = lin(a, p + "self_attn.o_proj.weight")
            for i in 0..<t { for e in 0..<hd { x[i][e] += o[i][e] } }
            let n2 = rms(x, p + "post_attention_layernorm.weight")
            let g = lin(n2, p + "mlp.gate_proj.weight")
            let u = lin(n2, p + "mlp.up_proj.weight")
            let act = zip(g, u).map { gr, ur in zip(gr, ur).map { $0 / (1 + exp(-$0)) * $1 } }
            let dn = lin(act, p + "mlp.down_proj.weight")
            for i in 0..<t { for e in 0..<hd { x[i][e] += dn[i][e] } }
        }
        let normed = rms(x, "model.norm.weight")
        return lin(normed, has("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight")
    }
}

func maxRelDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    var maxDiff: Float = 0
    var maxAbs: Float = 0
    for (x, y) in zip(a, b) {
        maxDiff = max(maxDiff, abs(x - y))
        maxAbs = max(maxAbs, abs(y))
    }
    return maxDiff / max(maxAbs, 1e-30)
}
