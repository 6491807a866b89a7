// GGUF's 5-bit blocks of 32: the fallbacks llama.cpp uses for Q4_K (Q5_0) and Q5_K (Q5_1) when a
// row is not a whole number of 256-value super-blocks. Same structure as Q4_0/Q4_1 (Grid.swift),
// with 32 levels; the fifth bit of each code goes to the block's qh word (GGUFBlocks).

/// GGUF Q5_0 as ggml's quantize_row_q5_0_ref: d = max / -16 (max: the first value of largest
/// magnitude, signed), id = 1/d (0 when d == 0), code = MIN(31, (int8)(x*id + 16.5)), d stored
/// as fp16 and the value (code - 16) * fp16(d).
public struct GGUFQ5_0Grid: QuantizationGrid {
    @inlinable public init() {}

    @inlinable @inline(__always)
    public func fit(_ base: UnsafePointer<Float>, count: Int, stride: Int) -> GroupParameters {
        var amax: Float = 0
        var mx: Float = 0
        for k in 0..<count {
            let v = base[k * stride]
            if amax < abs(v) {
                amax = abs(v)
                mx = v
            }
        }
        return parameters(max: mx)
    }

    @inlinable @inline(__always)
    func parameters(max mx: Float) -> GroupParameters {
        let d = mx / -16
        let id: Float = d != 0 ? 1 / d : 0
        return GroupParameters(scale: roundToHalf(d), zero: 16, inverse: id)
    }

    @inlinable @inline(__always)
    public func code(_ x: Float, _ p: GroupParameters) -> UInt8 {
        codeByte(truncatedCode(x * p.inverse + 16.5, 0, 31))
    }

    @inlinable @inline(__always)
    public func value(_ code: UInt8, _ p: GroupParameters) -> Float {
        Float(Int(code) - 16) * p.scale
    }

    /// `symmetricScaleSearch` on codes -16...15: candidates -(16 + 0.1 s) / max for s in -9...9
    /// (as `GGUFQ4_0Grid.fitWeighted` on 32 levels).
    @inlinable
    public func fitWeighted(
        _ x: UnsafePointer<Float>, count: Int, importance w: UnsafePointer<Float>
    ) -> GroupParameters {
        symmetricScaleSearch(self, x, w, count: count, codes: -16...15, steps: -9...9, step: 0.1, fromSignedMax: true)
    }
}

/// GGUF Q5_1 as ggml's quantize_row_q5_1_ref: d = (max - min) / 31, id = 1/d (0 when d == 0),
/// code = (uint8)((x - min)*id + 0.5) (clamped to 0...31 for GPTQ's updated weights); d and
/// m = min stored as fp16; the value code * fp16(d) + fp16(m).
public struct GGUFQ5_1Grid: QuantizationGrid {
    @inlinable public init() {}

    @inlinable @inline(__always)
    public func fit(_ base: UnsafePointer<Float>, count: Int, stride: Int) -> GroupParameters {
        var mn = Float.greatestFiniteMagnitude
        var mx = -Float.greatestFiniteMagnitude
        for k in 0..<count {
            let v = base[k * stride]
            if v < mn { mn = v }
            if v > mx { mx = v }
        }
        let d = (mx - mn) / 31
        let id: Float = d != 0 ? 1 / d : 0
        return GroupParameters(scale: roundToHalf(d), zero: roundToHalf(mn), inverse: id, minimum: mn)
    }

    @inlinable @inline(__always)
    public func code(_ x: Float, _ p: GroupParameters) -> UInt8 {
        codeByte(truncatedCode((x - p.minimum) * p.inverse + 0.5, 0, 31))
    }

    @inlinable @inline(__always)
    public func value(_ code: UInt8, _ p: GroupParameters) -> Float {
        let scaled = Float(code) * p.scale
        return scaled + p.zero
    }

    /// `minScaleSearch` on 32 levels (codes 0...31).
    @inlinable
    public func fitWeighted(
        _ x: UnsafePointer<Float>, count: Int, importance w: UnsafePointer<Float>
    ) -> GroupParameters {
        minScaleSearch(self, x, w, count: count, top: 31)
    }
}
