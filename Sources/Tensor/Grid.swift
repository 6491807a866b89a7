// Quantization grids: the one definition of each format's parameters, codes and values.
// They live in Tensor, the lowest layer, so that both the quantizers (Quantization) and
// the GGUF block packer (ModelIO) use the same grid.

/// Parameters of one (row, group) of a quantization grid. Meaning per format:
/// - `.integer`: value = scale * (code - zero); `zero` is the zero point in code units.
/// - `.ggufQ4_0`: value = (code - 8) * scale; scale is the fp16-rounded d, zero = 8.
/// - `.ggufQ4_1`: value = code * scale + zero; scale and zero are the fp16-rounded d and m.
/// - `.ggufQ8_0`: value = Int8(code) * scale; scale is the fp16-rounded d, zero = 0.
/// `inverse` and `minimum` are what ggml's reference quantizers use to *choose* codes
/// (1/d and the block minimum in Float32, before fp16 rounding); 0 for `.integer`.
public struct GroupParameters: Codable, Sendable, Equatable {
    public var scale: Float
    public var zero: Float
    public var inverse: Float
    public var minimum: Float

    @inlinable public init(scale: Float, zero: Float, inverse: Float = 0, minimum: Float = 0) {
        self.scale = scale
        self.zero = zero
        self.inverse = inverse
        self.minimum = minimum
    }

    /// The fp16 bit pattern of `scale` (GGUF d).
    public var scaleHalfBits: UInt16 { Float16(scale).bitPattern }
    /// The fp16 bit pattern of `zero` (GGUF Q4_1 m).
    public var zeroHalfBits: UInt16 { Float16(zero).bitPattern }
}

/// A quantization grid: fits a group's parameters, picks a code for a value and maps a
/// code back to its value. GPTQ and RTN are generic over it, so GPTQ optimizes exactly
/// the grid that will be stored.
public protocol QuantizationGrid: Sendable {
    /// Fits the parameters of one row's group: `count` values starting at `base`, `stride` apart.
    func fit(_ base: UnsafePointer<Float>, count: Int, stride: Int) -> GroupParameters
    /// `fit` for `rows` consecutive rows at once: row r's values are base[r + k * stride], k < count,
    /// its parameters go to out[r]. The same operations per row as `fit`, with the rows innermost so
    /// the loops vectorize.
    func fitRows(
        _ base: UnsafePointer<Float>, rows: Int, count: Int, stride: Int,
        into out: UnsafeMutablePointer<GroupParameters>)
    func code(_ x: Float, _ p: GroupParameters) -> UInt8
    func value(_ code: UInt8, _ p: GroupParameters) -> Float
    /// Fits one group of `count` contiguous values by importance-weighted search (ScaleSearch.swift):
    /// the parameters of least sum w (x - value(code(x)))^2 among candidates that include `fit`'s.
    func fitWeighted(_ x: UnsafePointer<Float>, count: Int, importance: UnsafePointer<Float>) -> GroupParameters
}

extension QuantizationGrid {
    @inlinable
    public func fitRows(
        _ base: UnsafePointer<Float>, rows: Int, count: Int, stride: Int,
        into out: UnsafeMutablePointer<GroupParameters>
    ) {
        for r in 0..<rows { out[r] = fit(base + r, count: count, stride: stride) }
    }
}

/// Runs `body(firstRow, rowCount, a, b)` over chunks of at most 64 rows, with two scratch
/// accumulators of 64 floats on the stack, for the `fitRows` of the grids.
@inlinable @inline(__always)
func forEachRowChunk(
    _ rows: Int, _ body: (Int, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void
) {
    let chunk = 64
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * chunk) { t in
        let a = t.baseAddress!
        for r0 in stride(from: 0, to: rows, by: chunk) { body(r0, min(chunk, rows - r0), a, a + chunk) }
    }
}

/// The code of an integer-valued r (|r| < 2^22) as the low byte of its two's complement:
/// adding 1.5 * 2^23 is exact and leaves r + 2^22 in the significand. Unlike UInt8(r) it
/// cannot trap, so the per-column code loops vectorize.
@inlinable @inline(__always) func codeByte(_ r: Float) -> UInt8 {
    UInt8(truncatingIfNeeded: (r + 12_582_912).bitPattern)
}

/// The GPTQ reference's `Quantizer` (quant.py, perchannel, weight=True, no MSE search),
/// reproduced operation by operation in Float32 with torch.round = round half to even.
public struct ReferenceGrid: QuantizationGrid {
    public let bits: Int
    public let symmetric: Bool
    public let maxq: Float

    public init(bits: Int, symmetric: Bool) {
        self.bits = bits
        self.symmetric = symmetric
        self.maxq = Float((1 << bits) - 1)
    }

    @inlinable @inline(__always)
    public func fit(_ base: UnsafePointer<Float>, count: Int, stride: Int) -> GroupParameters {
        var lo = base[0]
        var hi = base[0]
        for k in 1..<max(count, 1) {
            let v = base[k * stride]
            lo = min(lo, v)
            hi = max(hi, v)
        }
        return parameters(lo: lo, hi: hi)
    }

    @inlinable
    public func fitRows(
        _ base: UnsafePointer<Float>, rows: Int, count: Int, stride: Int,
        into out: UnsafeMutablePointer<GroupParameters>
    ) {
        forEachRowChunk(rows) { r0, len, lo, hi in
            lo.update(from: base + r0, count: len)
            hi.update(from: base + r0, count: len)
            for k in 1..<max(count, 1) {
                let col = base + k * stride + r0
                for j in 0..<len {
                    lo[j] = min(lo[j], col[j])
                    hi[j] = max(hi[j], col[j])
                }
            }
            for j in 0..<len { out[r0 + j] = parameters(lo: lo[j], hi: hi[j]) }
        }
    }

    /// The parameters of a group with minimum `lo` and maximum `hi`.
    @inlinable @inline(__always)
    func parameters(lo: Float, hi: Float) -> GroupParameters {
        var xmin = min(lo, 0)
        var xmax = max(hi, 0)
        if symmetric {
            xmax = max(abs(xmin), xmax)
            if xmin < 0 { xmin = -xmax }
        }
        if xmin == 0 && xmax == 0 {
            xmin = -1
            xmax = 1
        }
        let scale = (xmax - xmin) / maxq
        let zero = symmetric ? (maxq + 1) / 2 : (-xmin / scale).rounded(.toNearestOrEven)
        return GroupParameters(scale: scale, zero: zero)
    }

    @inlinable @inline(__always)
    public func code(_ x: Float, _ p: GroupParameters) -> UInt8 {
        let q = (x / p.scale).rounded(.toNearestOrEven) + p.zero
        return codeByte(min(max(q, 0), maxq))
    }

    @inlinable @inline(__always)
    public func value(_ code: UInt8, _ p: GroupParameters) -> Float {
        p.scale * (Float(code) - p.zero)
    }
}

@inlinable @inline(__always) func roundToHalf(_ x: Float) -> Float { Float(Float16(x)) }

/// Truncation toward zero as C's float -> int8 cast, then clamped to lo...hi (the cast's
/// result is only defined in range; GPTQ's error-updated weights can leave the block's range).
@inlinable @inline(__always) func truncatedCode(_ t: Float, _ lo: Float, _ hi: Float) -> Float {
    min(max(t, lo), hi).rounded(.towardZero)
}

/// The first value of largest magnitude (signed) among `count` values `stride` apart, and that magnitude.
@inlinable @inline(__always)
func signedMax(_ x: UnsafePointer<Float>, count: Int, stride: Int = 1) -> (value: Float, magnitude: Float) {
    var amax: Float = 0
    var mx: Float = 0
    for k in 0..<count where amax < abs(x[k * stride]) {
        amax = abs(x[k * stride])
        mx = x[k * stride]
    }
    return (mx, amax)
}

/// ggml's blocks fitted from their first value of largest magnitude, signed (Q4_0, Q5_0), with
/// `half` the code of 0 (8, 16): d = max / -half, id = 1/d (0 when d == 0), code =
/// MIN(2 half - 1, (int8)(x*id + half + 0.5)), d stored as fp16 and the value (code - half) * fp16(d).
public protocol GGUFSignedMaxGrid: QuantizationGrid {
    var half: Float { get }
}

extension GGUFSignedMaxGrid {
    @inlinable @inline(__always)
    public func fit(_ base: UnsafePointer<Float>, count: Int, stride: Int) -> GroupParameters {
        parameters(max: signedMax(base, count: count, stride: stride).value)
    }

    @inlinable
    public func fitRows(
        _ base: UnsafePointer<Float>, rows: Int, count: Int, stride: Int,
        into out: UnsafeMutablePointer<GroupParameters>
    ) {
        forEachRowChunk(rows) { r0, len, amax, mx in
            amax.update(repeating: 0, count: len)
            mx.update(repeating: 0, count: len)
            for k in 0..<count {
                let col = base + k * stride + r0
                for j in 0..<len {
                    let v = col[j]
                    let larger = amax[j] < abs(v)
                    amax[j] = larger ? abs(v) : amax[j]
                    mx[j] = larger ? v : mx[j]
                }
            }
            for j in 0..<len { out[r0 + j] = parameters(max: mx[j]) }
        }
    }

    /// The parameters of a block whose first value of largest magnitude is `mx`.
    @inlinable @inline(__always)
    func parameters(max mx: Float) -> GroupParameters {
        let d = mx / -half
        let id: Float = d != 0 ? 1 / d : 0
        return GroupParameters(scale: roundToHalf(d), zero: half, inverse: id)
    }

    @inlinable @inline(__always)
    public func code(_ x: Float, _ p: GroupParameters) -> UInt8 {
        codeByte(truncatedCode(x * p.inverse + (half + 0.5), 0, 2 * half - 1))
    }

    @inlinable @inline(__always)
    public func value(_ code: UInt8, _ p: GroupParameters) -> Float {
        Float(Int(code) - Int(half)) * p.scale
    }
}

/// GGUF Q4_0 as ggml's quantize_row_q4_0_ref: `GGUFSignedMaxGrid` with 16 levels.
public struct GGUFQ4_0Grid: GGUFSignedMaxGrid {
    @inlinable public init() {}
    @inlinable public var half: Float { 8 }
}

/// ggml's blocks fitted from their minimum and maximum (Q4_1, Q5_1), with codes 0...`top` (15, 31):
/// d = (max - min) / top, id = 1/d (0 when d == 0), code = MIN(top, (int8)((x - min)*id + 0.5))
/// (clamped to 0...top for GPTQ's updated weights); d and m = min stored as fp16; the value
/// code * fp16(d) + fp16(m) (unfused, as ggml's dequantize_row_q4_1).
public protocol GGUFMinMaxGrid: QuantizationGrid {
    var top: Float { get }
}

extension GGUFMinMaxGrid {
    @inlinable @inline(__always)
    public func fit(_ base: UnsafePointer<Float>, count: Int, stride: Int) -> GroupParameters {
        var mn = Float.greatestFiniteMagnitude
        var mx = -Float.greatestFiniteMagnitude
        for k in 0..<count {
            let v = base[k * stride]
            if v < mn { mn = v }
            if v > mx { mx = v }
        }
        return parameters(min: mn, max: mx)
    }

    @inlinable
    public func fitRows(
        _ base: UnsafePointer<Float>, rows: Int, count: Int, stride: Int,
        into out: UnsafeMutablePointer<GroupParameters>
    ) {
        forEachRowChunk(rows) { r0, len, mn, mx in
            mn.update(repeating: .greatestFiniteMagnitude, count: len)
            mx.update(repeating: -.greatestFiniteMagnitude, count: len)
            for k in 0..<count {
                let col = base + k * stride + r0
                for j in 0..<len {
                    let v = col[j]
                    mn[j] = v < mn[j] ? v : mn[j]
                    mx[j] = v > mx[j] ? v : mx[j]
                }
            }
            for j in 0..<len { out[r0 + j] = parameters(min: mn[j], max: mx[j]) }
        }
    }

    /// The parameters of a block with minimum `mn` and maximum `mx`.
    @inlinable @inline(__always)
    func parameters(min mn: Float, max mx: Float) -> GroupParameters {
        let d = (mx - mn) / top
        let id: Float = d != 0 ? 1 / d : 0
        return GroupParameters(scale: roundToHalf(d), zero: roundToHalf(mn), inverse: id, minimum: mn)
    }

    @inlinable @inline(__always)
    public func code(_ x: Float, _ p: GroupParameters) -> UInt8 {
        codeByte(truncatedCode((x - p.minimum) * p.inverse + 0.5, 0, top))
    }

    @inlinable @inline(__always)
    public func value(_ code: UInt8, _ p: GroupParameters) -> Float {
        let scaled = Float(code) * p.scale
        return scaled + p.zero
    }
}

/// GGUF Q4_1 as ggml's quantize_row_q4_1_ref: `GGUFMinMaxGrid` with 16 levels.
public struct GGUFQ4_1Grid: GGUFMinMaxGrid {
    @inlinable public init() {}
    @inlinable public var top: Float { 15 }
}

/// GGUF Q8_0 as ggml's quantize_row_q8_0_ref: d = absmax / 127, id = 1/d (0 when d == 0),
/// code = roundf(x*id) (half away from zero) as int8 (clamped to -128...127 for GPTQ's
/// updated weights; RTN never leaves -127...127); value = code * fp16(d).
/// Codes are stored as the int8's bit pattern.
public struct GGUFQ8_0Grid: QuantizationGrid {
    @inlinable public init() {}

    @inlinable @inline(__always)
    public func fit(_ base: UnsafePointer<Float>, count: Int, stride: Int) -> GroupParameters {
        var amax: Float = 0
        for k in 0..<count { amax = max(amax, abs(base[k * stride])) }
        return parameters(absoluteMax: amax)
    }

    @inlinable
    public func fitRows(
        _ base: UnsafePointer<Float>, rows: Int, count: Int, stride: Int,
        into out: UnsafeMutablePointer<GroupParameters>
    ) {
        forEachRowChunk(rows) { r0, len, amax, _ in
            amax.update(repeating: 0, count: len)
            for k in 0..<count {
                let col = base + k * stride + r0
                for j in 0..<len { amax[j] = max(amax[j], abs(col[j])) }
            }
            for j in 0..<len { out[r0 + j] = parameters(absoluteMax: amax[j]) }
        }
    }

    /// The parameters of a block with largest magnitude `amax`.
    @inlinable @inline(__always)
    func parameters(absoluteMax amax: Float) -> GroupParameters {
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        return GroupParameters(scale: roundToHalf(d), zero: 0, inverse: id)
    }

    @inlinable @inline(__always)
    public func code(_ x: Float, _ p: GroupParameters) -> UInt8 {
        codeByte(min(max((x * p.inverse).rounded(.toNearestOrAwayFromZero), -128), 127))
    }

    @inlinable @inline(__always)
    public func value(_ code: UInt8, _ p: GroupParameters) -> Float {
        Float(Int8(bitPattern: code)) * p.scale
    }
}

/// The one dequantizer of per-(row, group) codes: value(code, parameters of (row, group of the
/// column)) for every element of a [rows, columns] weight; `parameters` is [rows, groupCount].
public func dequantize(
    rows: Int, columns: Int, codes: [UInt8], parameters: [GroupParameters], groupIndex: [Int32], groupCount: Int,
    value: (UInt8, GroupParameters) -> Float
) -> Matrix {
    var m = Matrix(rows: rows, cols: columns)
    for r in 0..<rows {
        for c in 0..<columns {
            let p = parameters[r * groupCount + Int(groupIndex[c])]
            m.data[r * columns + c] = value(codes[r * columns + c], p)
        }
    }
    return m
}
