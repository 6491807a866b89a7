import Foundation
import Tensor

/// How the two members of each rotated pair sit inside a head's dimensions.
public enum RopeLayout: String, Sendable {
    /// Pairs (i, i + d/2): Hugging Face's rotate_half ("NeoX" style).
    case halves
    /// Pairs (2i, 2i + 1): ggml's normal RoPE, used with the q/k rows that the GGUF
    /// converter permutes for Llama-architecture models.
    case interleaved
}

/// cos/sin of RoPE angles for positions [0, maxPositions), computed as Hugging Face
/// does in float32 (inv_freq = 1 / theta^(2i/d), angle = pos * inv_freq).
public final class RopeTable: Sendable {
    public let headDim: Int
    public let theta: Float
    public let maxPositions: Int
    let cos: [Float]  // [maxPositions, headDim/2]
    let sin: [Float]

    public init(headDim: Int, theta: Float, maxPositions: Int) {
        precondition(headDim % 2 == 0, "RoPE needs an even head dimension")
        self.headDim = headDim; self.theta = theta; self.maxPositions = maxPositions
        let half = headDim / 2
        let invFreq: [Float] = (0..<half).map { i in 1 / Foundation.powf(theta, Float(2 * i) / Float(headDim)) }
        var c = [Float](repeating: 0, count: maxPositions * half)
        var s = c
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Float(p) * invFreq[i]
                c[p * half + i] = Float(Foundation.cos(Double(angle)))
                s[p * half + i] = Float(Foundation.sin(Double(angle)))
            }
        }
        cos = c; sin = s
    }

    /// Rotates every head of x [tokens, heads * headDim] in place; row t is at position offset + t.
    public func apply(_ x: inout Matrix, heads: Int, positionOffset: Int, layout: RopeLayout) {
        precondition(x.cols == heads * headDim, "RoPE: \(x.cols) columns for \(heads) heads of \(headDim)")
        if positionOffset + x.rows > maxPositions {
            // Rare: beyond the table. Use a table that covers the range.
            RopeTable(headDim: headDim, theta: theta, maxPositions: positionOffset + x.rows)
                .apply(&x, heads: heads, positionOffset: positionOffset, layout: layout)
            return
        }
        let half = headDim / 2, d = headDim, cols = x.cols, rows = x.rows
        x.data.withUnsafeMutableBufferPointer { px in
            cos.withUnsafeBufferPointer { pc in
                sin.withUnsafeBufferPointer { ps in
                    for t in 0..<rows {
                        let c = pc.baseAddress! + (positionOffset + t) * half
                        let s = ps.baseAddress! + (positionOffset + t) * half
                        for h in 0..<heads {
                            let base = px.baseAddress! + t * cols + h * d
                            switch layout {
                            case .halves:
                                for i in 0..<half {
                                    let x1 = base[i], x2 = base[i + half]
                                    base[i] = x1 * c[i] - x2 * s[i]
                                    base[i + half] = x2 * c[i] + x1 * s[i]
                                }
                            case .interleaved:
                                for i in 0..<half {
                                    let x1 = base[2 * i], x2 = base[2 * i + 1]
                                    base[2 * i] = x1 * c[i] - x2 * s[i]
                                    base[2 * i + 1] = x2 * c[i] + x1 * s[i]
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Converts q/k projection rows between the two RoPE layouts, head by head.
public enum RopePermutation {
    /// GGUF (interleaved) rows -> Hugging Face (halves) rows: hf[j*d/2 + i] = gguf[2i + j].
    public static func interleavedToHalves(_ w: Matrix, heads: Int) -> Matrix {
        permute(w, heads: heads, toHalves: true)
    }

    /// Hugging Face (halves) rows -> GGUF (interleaved) rows, as llama.cpp's converter does.
    public static func halvesToInterleaved(_ w: Matrix, heads: Int) -> Matrix {
        permute(w, heads: heads, toHalves: false)
    }

    /// Same for a bias vector.
    public static func interleavedToHalves(_ b: [Float], heads: Int) -> [Float] {
        interleavedToHalves(Matrix(rows: b.count, cols: 1, data: b), heads: heads).data
    }

    public static func halvesToInterleaved(_ b: [Float], heads: Int) -> [Float] {
        halvesToInterleaved(Matrix(rows: b.count, cols: 1, data: b), heads: heads).data
    }

    private static func permute(_ w: Matrix, heads: Int, toHalves: Bool) -> Matrix {
        precondition(w.rows % (2 * heads) == 0, "RoPE permutation: \(w.rows) rows for \(heads) heads")
        let d = w.rows / heads, half = d / 2, cols = w.cols
        var out = Matrix(rows: w.rows, cols: cols)
        w.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for i in 0..<half {
                        for j in 0..<2 {
                            let interleaved = h * d + 2 * i + j
                            let halves = h * d + j * half + i
                            let (from, to) = toHalves ? (interleaved, halves) : (halves, interleaved)
                            (dst.baseAddress! + to * cols).update(from: src.baseAddress! + from * cols, count: cols)
                        }
                    }
                }
            }
        }
        return out
    }
}

/// Multi-head (grouped-query) scaled dot-product attention over one sequence, with
/// scores and weighted sums done by sgemm per head on strided head columns.
enum Attention {
    /// Query rows processed per step: bounds the score buffer and, when causal, skips
    /// keys after the block's last query.
    static let rowBlock = 128

    /// q [T, heads*d], k and v [T, kvHeads*d] -> [T, heads*d].
    static func run(q: Matrix, k: Matrix, v: Matrix, heads: Int, kvHeads: Int, headDim d: Int,
                    causal: Bool, keyMask: [Bool]? = nil) -> Matrix {
        let t = q.rows
        precondition(k.rows == t && v.rows == t && q.cols == heads * d && k.cols == kvHeads * d && v.cols == kvHeads * d,
                     "attention: inconsistent shapes")
        precondition(heads % kvHeads == 0, "attention: \(heads) heads not a multiple of \(kvHeads) kv heads")
        let group = heads / kvHeads
        let qCols = heads * d, kvCols = kvHeads * d
        let scale = 1 / Float(d).squareRoot()
        var out = Matrix(rows: t, cols: qCols)
        if t == 0 { return out }
        let block = min(rowBlock, t)
        var scores = [Float](repeating: 0, count: block * t)
        // Additive key bias for masked keys (encoder padding).
        var keyBias: [Float]? = nil
        if let mask = keyMask {
            precondition(mask.count == t, "attention: key mask of \(mask.count) for \(t) tokens")
            if mask.contains(false) { keyBias = mask.map { $0 ? 0 : -Float.infinity } }
        }
        q.data.withUnsafeBufferPointer { pq in
            k.data.withUnsafeBufferPointer { pk in
                v.data.withUnsafeBufferPointer { pv in
                    out.data.withUnsafeMutableBufferPointer { po in
                        scores.withUnsafeMutableBufferPointer { ps in
                            let s = ps.baseAddress!
                            for h in 0..<heads {
                                let kvh = h / group
                                var r0 = 0
                                while r0 < t {
                                    let r1 = min(r0 + block, t)
                                    let rows = r1 - r0
                                    let keys = causal ? r1 : t
                                    // S = Q_h K_h^T * scale  [rows, keys]
                                    Kernels.sgemm(transB: true, m: rows, n: keys, k: d, alpha: scale,
                                                  a: pq.baseAddress! + r0 * qCols + h * d, lda: qCols,
                                                  b: pk.baseAddress! + kvh * d, ldb: kvCols,
                                                  c: s, ldc: keys)
                                    for r in 0..<rows {
                                        let row = s + r * keys
                                        if let bias = keyBias {
                                            for j in 0..<keys { row[j] += bias[j] }
                                        }
                                        Kernels.softmaxRow(row, count: causal ? r0 + r + 1 : keys, zeroTo: keys)
                                        if keyBias != nil {
                                            // Fully-masked-out keys get exactly zero weight.
                                            for j in 0..<keys where !keyMask![j] { row[j] = 0 }
                                        }
                                    }
                                    // O_h = P V_h  [rows, d]
                                    Kernels.sgemm(m: rows, n: d, k: keys,
                                                  a: s, lda: keys,
                                                  b: pv.baseAddress! + kvh * d, ldb: kvCols,
                                                  c: po.baseAddress! + r0 * qCols + h * d, ldc: qCols)
                                    r0 = r1
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
