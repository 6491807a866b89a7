import Foundation
import Tensor

/// A matrix as int8 codes with one scale per row: value[r, c] ≈ scales[r] * codes[r, c].
/// A weight [out, in] (per output channel) or activations [tokens, in] (per token).
public struct Int8Rows: Sendable, Equatable {
    public var rows: Int
    public var cols: Int
    /// Row-major [rows, cols], each in [-127, 127].
    public var codes: [Int8]
    public var scales: [Float]

    public init(rows: Int, cols: Int, codes: [Int8], scales: [Float]) {
        precondition(codes.count == rows * cols && scales.count == rows, "Int8Rows: \(rows)x\(cols) mismatch")
        self.rows = rows
        self.cols = cols
        self.codes = codes
        self.scales = scales
    }

    /// scales[r] * codes[r, c], the values a runtime reconstructs.
    public func dequantized() -> Matrix {
        var m = Matrix(rows: rows, cols: cols)
        for r in 0..<rows {
            let s = scales[r]
            for c in 0..<cols { m.data[r * cols + c] = s * Float(codes[r * cols + c]) }
        }
        return m
    }
}

/// SmoothQuant-style W8A8: int8 weights per output channel (static) and int8 activations
/// per token (dynamic), both symmetric, multiplied exactly in int32 (`Int8GEMM`).
///
/// Quantization of a row: scale = max|x| / 127 (rounded to the storage type first, so the
/// scale written is the scale used), code = round(x / scale) with ties to even, clamped to
/// [-127, 127]. Dividing (not multiplying by 1 / scale) and rounding ties to even is what
/// compressed-tensors' `quantize` does (`x / scale`, `torch.round`), so a runtime that
/// re-quantized Kiln's dequantized weights with Kiln's scales would get Kiln's codes.
/// llm-compressor's own observer uses max / 127.5 and clamps to [-128, 127]; readers only
/// ever compute code * scale, so both choices load the same way. The symmetric range keeps
/// -128 out, so negating a code never overflows, and every error is within scale / 2.
/// A row of zeros gets scale 0 and codes 0.
public enum W8A8 {
    /// How scales are stored: the quantizer rounds each scale to it before computing codes.
    public enum ScaleStorage: Sendable {
        case f32, f16, bf16

        public func round(_ s: Float) -> Float {
            switch self {
            case .f32: return s
            case .f16: return HalfConversion.f16ToF32(HalfConversion.f32ToF16(s))
            case .bf16: return HalfConversion.bf16ToF32(HalfConversion.f32ToBF16(s))
            }
        }
    }

    public static let maxCode: Float = 127

    /// Each row of `x` as int8 codes and its own scale (see the type's comment).
    public static func quantizeRows(_ x: Matrix, scales storage: ScaleStorage = .f32) -> Int8Rows {
        var codes = [Int8](repeating: 0, count: x.count)
        var scales = [Float](repeating: 0, count: x.rows)
        x.data.withUnsafeBufferPointer { src in
            codes.withUnsafeMutableBufferPointer { dst in
                for r in 0..<x.rows {
                    let row = r * x.cols
                    var amax: Float = 0
                    for c in 0..<x.cols { amax = max(amax, abs(src[row + c])) }
                    let s = storage.round(amax / maxCode)
                    scales[r] = s
                    guard s > 0 else { continue }
                    for c in 0..<x.cols {
                        let q = (src[row + c] / s).rounded(.toNearestOrEven)
                        dst[row + c] = Int8(min(max(q, -maxCode), maxCode))
                    }
                }
            }
        }
        return Int8Rows(rows: x.rows, cols: x.cols, codes: codes, scales: scales)
    }

    /// y = x W^T (+ bias) for x [tokens, in] and the quantized weight [out, in]: x is
    /// quantized per token, the int32 product scaled back by scale_token * scale_row.
    /// The scaling runs in Double, so the result is the exact product of the dequantized
    /// operands rounded once to Float.
    public static func linear(
        _ x: Matrix, weight: Int8Rows, bias: [Float]? = nil, gemm: Int8GEMM? = nil
    ) throws -> Matrix {
        precondition(x.cols == weight.cols, "W8A8.linear: input has \(x.cols) columns, weight \(weight.cols)")
        precondition(bias == nil || bias!.count == weight.rows, "W8A8.linear: bias length")
        let xq = quantizeRows(x)
        let (m, n, k) = (x.rows, weight.rows, x.cols)
        let acc = try (gemm ?? Int8GEMM.shared()).multiply(a: xq.codes, b: weight.codes, m: m, n: n, k: k)
        var y = Matrix(rows: m, cols: n)
        for t in 0..<m {
            let st = Double(xq.scales[t])
            for o in 0..<n {
                let v = Float(Double(acc[t * n + o]) * st * Double(weight.scales[o]))
                y.data[t * n + o] = bias.map { v + $0[o] } ?? v
            }
        }
        return y
    }
}
