import CBLAS
import Foundation

/// Element-wise and row-wise kernels for transformer forward passes (norms,
/// activations, softmax), plus a pointer-level sgemm for strided sub-matrices
/// (attention heads). Everything here is O(rows * cols) work written as simple
/// pointer loops or SIMD16 loops that vectorize in release builds; anything
/// with a reduction dimension goes to BLAS.
public enum Kernels {
    // MARK: BLAS on raw pointers

    /// C = alpha * op(A) * op(B) + beta * C, row-major, with explicit leading dimensions,
    /// so that column blocks of a matrix (one attention head) are used without copying.
    @inline(__always)
    public static func sgemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// y = x * W^T + beta * y for x [tokens, in], W [out, in]: a linear layer accumulating
    /// into an existing output (beta = 1 adds a residual stream in place).
    public static func linear(_ x: Matrix, _ w: Matrix, beta: Float, into y: inout Matrix) {
        BLAS.gemm(x, w, transB: true, beta: beta, into: &y)
    }

    // MARK: SIMD exp

    /// exp(x): Cody-Waite reduction to r in [-ln2/2, ln2/2], a degree-6 polynomial and
    /// 2^n through the exponent bits (relative error about 2e-7; inputs clamped to
    /// [-87.3, 88.3]). Written with plain selects and bit casts so
    /// that loops calling it auto-vectorize (release builds with AVX2).
    @inline(__always)
    public static func exp1(_ v: Float) -> Float {
        let x: Float = v < -87.3 ? -87.3 : (v > 88.3 ? 88.3 : v)
        let t = x * 1.4426950408889634 + 12582912
        let n = t - 12582912
        let r = (x - n * 0.693145751953125) - n * 1.428606765330187e-06
        var p: Float = 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        return p * Float(bitPattern: (t.bitPattern &+ 127) &<< 23)
    }

    /// In place: p[i] = exp(p[i] - shift) (vectorized loop).
    @inline(__always)
    public static func expInPlace(_ p: UnsafeMutablePointer<Float>, count: Int, shift: Float = 0) {
        for i in 0..<count { p[i] = exp1(p[i] - shift) }
    }

    // MARK: reductions

    @inline(__always)
    public static func max(_ p: UnsafePointer<Float>, count: Int) -> Float {
        // Eight independent running maxima in plain selects: vectorizes without fast-math.
        var i = 0
        var r = -Float.infinity
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8) { mb in
            let mm = mb.baseAddress!
            mm.initialize(repeating: -.infinity, count: 8)
            while i + 8 <= count {
                for j in 0..<8 {
                    let v = p[i + j]
                    mm[j] = v > mm[j] ? v : mm[j]
                }
                i += 8
            }
            for j in 0..<8 { r = mm[j] > r ? mm[j] : r }
        }
        for j in i..<count { r = p[j] > r ? p[j] : r }
        return r
    }

    @inline(__always)
    public static func sumOfSquares(_ p: UnsafePointer<Float>, count: Int) -> Float {
        var i = 0
        var a = SIMD16<Float>()
        var b = SIMD16<Float>()
        while i + 32 <= count {
            let x = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
            let y = UnsafeRawPointer(p + i + 16).loadUnaligned(as: SIMD16<Float>.self)
            a += x * x
            b += y * y
            i += 32
        }
        var s = (a + b).sum()
        for j in i..<count { s += p[j] * p[j] }  // the tail, in order
        return s
    }

    @inline(__always)
    public static func sum(_ p: UnsafePointer<Float>, count: Int) -> Float {
        var i = 0
        var a = SIMD16<Float>()
        while i + 16 <= count {
            a += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
            i += 16
        }
        var s = a.sum()
        for j in i..<count { s += p[j] }  // the tail, in order
        return s
    }

    /// In place: p[i] = exp(p[i] - shift); returns the sum.
    @inline(__always)
    public static func expShifted(_ p: UnsafeMutablePointer<Float>, count: Int, shift: Float) -> Float {
        expInPlace(p, count: count, shift: shift)
        return sum(p, count: count)
    }

    /// Softmax of one row in place over `count` entries; entries [count, zeroTo) are set to 0.
    @inline(__always)
    public static func softmaxRow(_ p: UnsafeMutablePointer<Float>, count: Int, zeroTo: Int = 0) {
        if count > 0 {
            let m = max(p, count: count)
            let total = expShifted(p, count: count, shift: m)
            scale(p, count: count, by: 1 / total)
        }
        if zeroTo > count { (p + count).update(repeating: 0, count: zeroTo - count) }
    }

    /// log(sum(exp(p[0..<count]))) with the max shifted out and the sum in Double.
    public static func logSumExp(_ p: UnsafePointer<Float>, count: Int) -> Double {
        let m = max(p, count: count)
        var total = 0.0
        let chunk = 256
        withUnsafeTemporaryAllocation(of: Float.self, capacity: chunk) { buf in
            let b = buf.baseAddress!
            var i = 0
            while i < count {
                let n = Swift.min(chunk, count - i)
                b.update(from: p + i, count: n)
                expInPlace(b, count: n, shift: m)
                total += Double(sum(b, count: n))
                i += n
            }
        }
        return Double(m) + Foundation.log(total)
    }

    // MARK: element-wise

    @inline(__always)
    public static func scale(_ p: UnsafeMutablePointer<Float>, count: Int, by f: Float) {
        for i in 0..<count { p[i] *= f }
    }

    /// x += y
    public static func add(_ x: inout Matrix, _ y: Matrix) {
        precondition(x.rows == y.rows && x.cols == y.cols, "add: shapes \(x.shape) and \(y.shape) differ")
        let n = x.count
        x.data.withUnsafeMutableBufferPointer { px in
            y.data.withUnsafeBufferPointer { py in
                let a = px.baseAddress!
                let b = py.baseAddress!
                for i in 0..<n { a[i] += b[i] }
            }
        }
    }

    /// Adds a bias vector to every row.
    public static func addRowVector(_ x: inout Matrix, _ bias: [Float]) {
        precondition(bias.count == x.cols, "bias of \(bias.count) for \(x.cols) columns")
        let cols = x.cols
        let rows = x.rows
        x.data.withUnsafeMutableBufferPointer { px in
            bias.withUnsafeBufferPointer { pb in
                for r in 0..<rows {
                    let row = px.baseAddress! + r * cols
                    for c in 0..<cols { row[c] += pb[c] }
                }
            }
        }
    }

    /// RMSNorm of every row: y = x / sqrt(mean(x^2) + eps) * weight.
    public static func rmsNorm(_ x: Matrix, weight: [Float], eps: Float) -> Matrix {
        precondition(weight.count == x.cols, "rmsNorm: weight of \(weight.count) for \(x.cols) columns")
        var out = Matrix(rows: x.rows, cols: x.cols)
        let cols = x.cols
        x.data.withUnsafeBufferPointer { px in
            weight.withUnsafeBufferPointer { pw in
                out.data.withUnsafeMutableBufferPointer { po in
                    for r in 0..<x.rows {
                        let src = px.baseAddress! + r * cols
                        let dst = po.baseAddress! + r * cols
                        let ms = sumOfSquares(src, count: cols) / Float(cols)
                        let inv = 1 / (ms + eps).squareRoot()
                        for c in 0..<cols { dst[c] = (src[c] * inv) * pw[c] }
                    }
                }
            }
        }
        return out
    }

    /// LayerNorm of every row in place: y = (x - mean) / sqrt(var + eps) * weight + bias.
    public static func layerNorm(_ x: inout Matrix, weight: [Float], bias: [Float], eps: Float) {
        precondition(weight.count == x.cols && bias.count == x.cols, "layerNorm: parameter sizes")
        let cols = x.cols
        let rows = x.rows
        x.data.withUnsafeMutableBufferPointer { px in
            weight.withUnsafeBufferPointer { pw in
                bias.withUnsafeBufferPointer { pb in
                    for r in 0..<rows {
                        let row = px.baseAddress! + r * cols
                        let mean = sum(row, count: cols) / Float(cols)
                        for c in 0..<cols { row[c] -= mean }
                        let v = sumOfSquares(row, count: cols) / Float(cols)
                        let inv = 1 / (v + eps).squareRoot()
                        for c in 0..<cols { row[c] = row[c] * inv * pw[c] + pb[c] }
                    }
                }
            }
        }
    }

    /// SwiGLU: silu(gate) * up, element-wise, into gate's storage.
    public static func siluMul(gate: inout Matrix, up: Matrix) {
        precondition(gate.rows == up.rows && gate.cols == up.cols, "siluMul: shapes differ")
        let n = gate.count
        gate.data.withUnsafeMutableBufferPointer { pg in
            up.data.withUnsafeBufferPointer { pu in
                let g = pg.baseAddress!
                let u = pu.baseAddress!
                for i in 0..<n { g[i] = g[i] / (1 + exp1(-g[i])) * u[i] }
            }
        }
    }

    /// GELU with the exact erf form: 0.5 * x * (1 + erf(x / sqrt 2)), in place.
    public static func geluErf(_ x: inout Matrix) {
        let n = x.count
        x.data.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let v = p[i]
                p[i] = 0.5 * v * (1 + Foundation.erff(v * 0.70710678118654752))
            }
        }
    }

    /// Index of the first NaN or infinity, or nil.
    public static func firstNonFinite(_ data: [Float]) -> Int? {
        data.withUnsafeBufferPointer { p -> Int? in
            let n = p.count
            var i = 0
            // x - x is 0 for finite x and NaN for NaN/inf; sum lanes in blocks to find them fast.
            while i + 16 <= n {
                let v = UnsafeRawPointer(p.baseAddress! + i).loadUnaligned(as: SIMD16<Float>.self)
                let z = v - v
                if !(z.sum() == 0) { break }
                i += 16
            }
            while i < n {
                if !p[i].isFinite { return i }
                i += 1
            }
            return nil
        }
    }

    /// Root mean square over all entries.
    public static func rms(_ x: Matrix) -> Float {
        if x.count == 0 { return 0 }
        return x.data.withUnsafeBufferPointer { p in
            var total = 0.0
            let cols = Swift.max(x.cols, 1)
            for r in 0..<x.rows { total += Double(sumOfSquares(p.baseAddress! + r * cols, count: x.cols)) }
            return Float((total / Double(x.count)).squareRoot())
        }
    }
}
