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
        self.headDim = headDim
        self.theta = theta
        self.maxPositions = maxPositions
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
        cos = c
        sin = s
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
        let half = headDim / 2
        let d = headDim
        let cols = x.cols
        let rows = x.rows
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
                                    let x1 = base[i]
                                    let x2 = base[i + half]
                                    base[i] = x1 * c[i] - x2 * s[i]
                                    base[i + half] = x2 * c[i] + x1 * s[i]
                                }
                            case .interleaved:
                                for i in 0..<half {
                                    let x1 = base[2 * i]
                                    let x2 = base[2 * i + 1]
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

    /// The one row map: halves row -> interleaved row (hf[j*d/2 + i] = gguf[2i + j], per head of d rows).
    public static func halvesOrder(rows: Int, heads: Int) -> [Int] {
        precondition(rows % (2 * heads) == 0, "RoPE permutation: \(rows) rows for \(heads) heads")
        let d = rows / heads
        let half = d / 2
        var order = [Int](repeating: 0, count: rows)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 { order[h * d + j * half + i] = h * d + 2 * i + j }
            }
        }
        return order
    }

    private static func permute(_ w: Matrix, heads: Int, toHalves: Bool) -> Matrix {
        let order = halvesOrder(rows: w.rows, heads: heads)
        let cols = w.cols
        var out = Matrix(rows: w.rows, cols: cols)
        w.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for (halves, interleaved) in order.enumerated() {
                    let (from, to) = toHalves ? (interleaved, halves) : (halves, interleaved)
                    (dst.baseAddress! + to * cols).update(from: src.baseAddress! + from * cols, count: cols)
                }
            }
        }
        return out
    }
}

/// Multi-head (grouped-query) scaled dot-product attention over one sequence. The
/// query heads sharing one kv head are stacked (row t*group + j is token t, head j of
/// the group), so each kv head needs one sgemm for the scores and one for the
/// weighted sum per block of query rows.
enum Attention {
    /// Query tokens processed per step: bounds the score buffer and, when causal, skips
    /// keys after the block's last query.
    static let rowBlock = 128

    /// q [T, heads*d], k and v [T, kvHeads*d] -> [T, heads*d].
    static func run(
        q: Matrix, k: Matrix, v: Matrix, heads: Int, kvHeads: Int, headDim d: Int,
        causal: Bool, keyMask: [Bool]? = nil
    ) -> Matrix {
        let t = q.rows
        precondition(
            k.rows == t && v.rows == t && q.cols == heads * d && k.cols == kvHeads * d && v.cols == kvHeads * d,
            "attention: inconsistent shapes")
        precondition(heads % kvHeads == 0, "attention: \(heads) heads not a multiple of \(kvHeads) kv heads")
        let group = heads / kvHeads
        let qCols = heads * d
        let kvCols = kvHeads * d
        let gw = group * d
        let scale = 1 / Float(d).squareRoot()
        var out = Matrix(rows: t, cols: qCols)
        if t == 0 { return out }
        let block = min(rowBlock, t)
        // Masked keys (encoder padding) get exactly zero weight.
        var masked: [Int] = []
        if let mask = keyMask {
            precondition(mask.count == t, "attention: key mask of \(mask.count) for \(t) tokens")
            masked = mask.indices.filter { !mask[$0] }
        }
        var scores = [Float](repeating: 0, count: block * group * t)
        var qg = [Float](repeating: 0, count: t * gw)  // the group's queries, [T*group, d]
        var og = [Float](repeating: 0, count: block * gw)  // the group's outputs for one row block
        q.data.withUnsafeBufferPointer { pq in
            k.data.withUnsafeBufferPointer { pk in
                v.data.withUnsafeBufferPointer { pv in
                    out.data.withUnsafeMutableBufferPointer { po in
                        scores.withUnsafeMutableBufferPointer { ps in
                            qg.withUnsafeMutableBufferPointer { pqg in
                                og.withUnsafeMutableBufferPointer { pog in
                                    let s = ps.baseAddress!
                                    let qgp = pqg.baseAddress!
                                    let ogp = pog.baseAddress!
                                    for g in 0..<kvHeads {
                                        for r in 0..<t {
                                            (qgp + r * gw).update(from: pq.baseAddress! + r * qCols + g * gw, count: gw)
                                        }
                                        var r0 = 0
                                        while r0 < t {
                                            let r1 = min(r0 + block, t)
                                            let rows = (r1 - r0) * group
                                            let keys = causal ? r1 : t
                                            // S = Q_g K_g^T * scale  [rows, keys]
                                            Kernels.sgemm(
                                                transB: true, m: rows, n: keys, k: d, alpha: scale,
                                                a: qgp + r0 * gw, lda: d, b: pk.baseAddress! + g * d, ldb: kvCols,
                                                c: s, ldc: keys)
                                            softmaxRows(
                                                s, rows: rows, keys: keys, firstQuery: r0, group: group,
                                                causal: causal, masked: masked)
                                            // O_g = P V_g  [rows, d], then back to [token, head] order.
                                            Kernels.sgemm(
                                                m: rows, n: d, k: keys, a: s, lda: keys,
                                                b: pv.baseAddress! + g * d, ldb: kvCols, c: ogp, ldc: d)
                                            for r in r0..<r1 {
                                                (po.baseAddress! + r * qCols + g * gw).update(
                                                    from: ogp + (r - r0) * gw, count: gw)
                                            }
                                            r0 = r1
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
    /// Softmax of each score row [rows, keys] in place: row i is query r0 + i / group, which
    /// sees keys up to itself when causal; masked keys get exactly zero weight.
    private static func softmaxRows(
        _ s: UnsafeMutablePointer<Float>, rows: Int, keys: Int, firstQuery r0: Int, group: Int, causal: Bool,
        masked: [Int]
    ) {
        for i in 0..<rows {
            let row = s + i * keys
            let count = causal ? r0 + i / group + 1 : keys
            if masked.isEmpty {
                Kernels.softmaxRow(row, count: count, zeroTo: keys)
            } else {
                for j in masked where j < keys { row[j] = -.infinity }
                Kernels.softmaxRow(row, count: count, zeroTo: keys)
                for j in masked where j < keys { row[j] = 0 }
            }
        }
    }
}
