/// A K-quant type as a grid over one super-block: `fit` chooses d, dmin and the sub-block scales
/// and mins of 256 values as llama.cpp does, `code`/`value` map a value to its code and back under
/// one sub-block's `GroupParameters` (see `KQuantBlock.groupParameters`).
///
/// Without importance, `fit` is quantize_row_q*_K_ref (what llama-quantize does without an
/// imatrix): per sub-block a weighted search (make_qkx2_quants for Q2_K/Q4_K/Q5_K with weights
/// |x| or rms + |x|, make_q3_quants for Q3_K, make_qx_quants with weights x^2 for Q6_K), then the
/// sub-block scales (mins) are quantized linearly against the largest one. With importance it is
/// quantize_row_q*_K_impl: weights importance[j] * sqrt(sigma2 + x[j]^2) (sigma2 = mean x^2, twice
/// that for Q3_K/Q4_K/Q5_K; Q6_K uses the importance as is), make_qkx3_quants, and the sub-block
/// scales and mins themselves fitted by weighted searches (make_qp_quants, make_qx_quants for
/// Q3_K). Both end as ggml does: every value re-rounded against the stored (fp16, integer) scales,
/// which is `code`; a sub-block whose stored scale is zero keeps the search's levels.
///
/// GPTQ use: fit once per (row, super-block) on the current weights, then quantize column by
/// column with `code(w, params[column % 256 / subBlockSize])` and put the code in `codes`.
public struct KQuantGrid: Sendable {
    public let type: KQuantType

    public init(_ type: KQuantType) { self.type = type }

    /// The code of `x` under one sub-block's parameters: ggml's re-rounding against the stored
    /// scales. A zero scale gives the code of value 0 (Q3_K/Q6_K) or code 0.
    @inline(__always)
    public func code(_ x: Float, _ p: GroupParameters) -> UInt8 {
        guard p.scale != 0 else { return UInt8(type.codeOffset) }
        // ggml's nearest_int is exact only below 2^22; GPTQ's updated weights may go beyond.
        let bound: Float = 4_194_303
        if type.hasMins {
            let t = min(max((x + p.zero) / p.scale, -bound), bound)
            return UInt8(min(max(nearestInt(t), 0), type.maxCode))
        }
        let t = min(max(x / p.scale, -bound), bound)
        let offset = type.codeOffset
        return UInt8(min(max(nearestInt(t), -offset), offset - 1) + offset)
    }

    @inline(__always)
    public func value(_ code: UInt8, _ p: GroupParameters) -> Float {
        type.hasMins ? p.scale * Float(code) - p.zero : p.scale * Float(Int(code) - type.codeOffset)
    }

    /// Fits the super-block of 256 values x[k * stride] (k < 256). `importance`, when given, is 256
    /// contiguous non-negative weights (an imatrix slice). The block's codes are ggml's.
    public func fit(_ x: UnsafePointer<Float>, stride: Int = 1, importance: UnsafePointer<Float>? = nil) -> KQuantBlock
    {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { buf in
            let v = buf.baseAddress!
            for k in 0..<256 { v[k] = x[k * stride] }
            return fitContiguous(UnsafePointer(v), importance)
        }
    }

    func fitContiguous(_ x: UnsafePointer<Float>, _ importance: UnsafePointer<Float>?) -> KQuantBlock {
        var levels = [UInt8](repeating: 0, count: 256)
        var block = levels.withUnsafeMutableBufferPointer { l in
            switch type {
            case .q2_K, .q4_K, .q5_K: return fitWithMins(x, importance, l.baseAddress!)
            case .q3_K: return fitQ3(x, importance, l.baseAddress!)
            case .q6_K: return fitQ6(x, importance, l.baseAddress!)
            }
        }
        if block.codes.isEmpty {  // not already set by a zeroed Q6_K block
            let params = block.groupParameters
            let size = type.subBlockSize
            block.codes = (0..<256).map { i in
                let p = params[i / size]
                return p.scale == 0 ? levels[i] : code(x[i], p)
            }
        }
        return block
    }

    /// Σ x^2 over the super-block, sequentially as ggml sums it.
    private func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var s: Float = 0
        for i in 0..<n { s += x[i] * x[i] }
        return s
    }

    /// Q2_K, Q4_K, Q5_K: asymmetric sub-blocks (scale and min), then scales and mins on 4 or 6 bits.
    private func fitWithMins(
        _ x: UnsafePointer<Float>, _ importance: UnsafePointer<Float>?, _ levels: UnsafeMutablePointer<UInt8>
    ) -> KQuantBlock {
        let size = type.subBlockSize
        let count = type.subBlockCount
        let nmax = type.maxCode
        var scales = [Float](repeating: 0, count: count)
        var mins = [Float](repeating: 0, count: count)
        var sw = [Float](repeating: 0, count: count)
        var weights = [Float](repeating: 0, count: size)
        // sigma2 of the importance-weighted path: mean x^2 for Q2_K, twice that for Q4_K/Q5_K.
        let sigma2 = importance == nil ? 0 : (type == .q2_K ? 1 : 2) * sumOfSquares(x, 256) / 256
        for j in 0..<count {
            let xs = x + size * j
            if let qw = importance {
                for l in 0..<size { weights[l] = qw[size * j + l] * (sigma2 + xs[l] * xs[l]).squareRoot() }
                for l in 0..<size { sw[j] += weights[l] }
            } else if type == .q2_K {
                for l in 0..<size { weights[l] = abs(xs[l]) }
            } else {
                let rms = (sumOfSquares(xs, size) / Float(size)).squareRoot()
                for l in 0..<size { weights[l] = rms + abs(xs[l]) }
            }
            let (rmin, rdelta, nstep): (Float, Float, Int) =
                importance != nil ? (-0.9, 0.05, 36) : type == .q4_K ? (-1, 0.1, 20) : (-0.5, 0.1, 15)
            scales[j] = weights.withUnsafeBufferPointer { w in
                KQuantSearch.asymmetric(
                    size, nmax, xs, weights: w.baseAddress!, levels + size * j, theMin: &mins[j], rmin: rmin,
                    rdelta: rdelta, nstep: nstep, mad: type == .q2_K && importance == nil,
                    clampedLevels: importance != nil)
            }
        }
        let scaleMax = type == .q2_K ? 15 : 63
        var ls = [UInt8](repeating: 0, count: count)
        var lm = [UInt8](repeating: 0, count: count)
        var d: Float
        var dmin: Float
        if importance != nil {
            d = KQuantSearch.positive(count, scaleMax, scales, &ls, weights: sw)
            dmin = KQuantSearch.positive(count, scaleMax, mins, &lm, weights: sw)
            if type == .q5_K {  // Q5_K's impl clamps; Q4_K's does not (its levels never exceed 63)
                ls = ls.map { min(63, $0) }
                lm = lm.map { min(63, $0) }
            }
        } else {
            let maxScale = scales.reduce(Float(0)) { $1 > $0 ? $1 : $0 }
            let maxMin = mins.reduce(Float(0)) { $1 > $0 ? $1 : $0 }
            let fmax = Float(scaleMax)
            if type == .q2_K {
                // quantize_row_q2_K_ref: the min is OR-ed into the high nibble as an int.
                if maxScale > 0 {
                    let iscale = fmax / maxScale
                    ls = scales.map { truncatedByte(nearestInt(iscale * $0)) }
                }
                if maxMin > 0 {
                    let iscale = fmax / maxMin
                    lm = mins.map { truncatedByte(nearestInt(iscale * $0)) }
                }
            } else {
                let invScale: Float = maxScale > 0 ? fmax / maxScale : 0
                let invMin: Float = maxMin > 0 ? fmax / maxMin : 0
                ls = scales.map { min(63, truncatedByte(nearestInt(invScale * $0))) }
                lm = mins.map { min(63, truncatedByte(nearestInt(invMin * $0))) }
            }
            d = maxScale / fmax
            dmin = maxMin / fmax
        }
        let dBits = Float16(d).bitPattern
        let dminBits = Float16(dmin).bitPattern
        // The stored bytes, built as C builds them, decoded as the dequantizer reads them.
        if type == .q2_K {
            let bytes = (0..<count).map { j in ls[j] | lm[j] &<< 4 }
            return KQuantBlock(
                type: type, d: dBits, dmin: dminBits, scales: bytes.map { Int8($0 & 0xF) }, mins: bytes.map { $0 >> 4 },
                codes: [])
        }
        let (s, m) = KQuantLayout.scalesMins(KQuantLayout.scaleMinBytes(ls, lm))
        return KQuantBlock(type: type, d: dBits, dmin: dminBits, scales: s.map { Int8($0) }, mins: m, codes: [])
    }

    /// Q3_K: symmetric sub-blocks on -4...3, scales on 6 bits (-32...31).
    private func fitQ3(
        _ x: UnsafePointer<Float>, _ importance: UnsafePointer<Float>?, _ levels: UnsafeMutablePointer<UInt8>
    ) -> KQuantBlock {
        var scales = [Float](repeating: 0, count: 16)
        var stored = [UInt8](repeating: 0, count: 16)
        var d: Float = 0
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { l8 in
            let l = l8.baseAddress!
            if let qw = importance {
                let sigma2 = 2 * sumOfSquares(x, 256) / 256
                var weights = [Float](repeating: 0, count: 16)
                var sw = [Float](repeating: 0, count: 16)
                for j in 0..<16 {
                    let xs = x + 16 * j
                    for i in 0..<16 { weights[i] = qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).squareRoot() }
                    var sumw: Float = 0
                    for i in 0..<16 { sumw += weights[i] }
                    sw[j] = sumw
                    scales[j] = KQuantSearch.symmetric(16, 4, xs, l + 16 * j, weights: weights)
                }
                var ls = [Int8](repeating: 0, count: 16)
                d = KQuantSearch.symmetric(16, 32, scales, &ls, weights: sw)
                stored = ls.map { UInt8(truncatingIfNeeded: $0) }
            } else {
                var maxScale: Float = 0
                var amax: Float = 0
                for j in 0..<16 {
                    scales[j] = KQuantSearch.symmetricRefined(16, 4, x + 16 * j, l + 16 * j)
                    if abs(scales[j]) > amax {
                        amax = abs(scales[j])
                        maxScale = scales[j]
                    }
                }
                if maxScale != 0 {
                    let iscale = -32 / maxScale
                    stored = scales.map { s in
                        let l = Int(Int8(truncatingIfNeeded: nearestInt(iscale * s)))
                        return UInt8(max(-32, min(31, l)) + 32)
                    }
                    d = 1 / iscale
                }
            }
            for i in 0..<256 { levels[i] = UInt8(truncatingIfNeeded: l[i]) }
        }
        let sc = KQuantLayout.scales3(KQuantLayout.scaleBytes3(stored)).map { Int8($0) - 32 }
        return KQuantBlock(type: type, d: Float16(d).bitPattern, scales: sc, codes: [])
    }

    /// Q6_K: symmetric sub-blocks on -32...31, int8 scales against the largest.
    private func fitQ6(
        _ x: UnsafePointer<Float>, _ importance: UnsafePointer<Float>?, _ levels: UnsafeMutablePointer<UInt8>
    ) -> KQuantBlock {
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0
        var maxAbsScale: Float = 0
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { l8 in
            let l = l8.baseAddress!
            for j in 0..<16 {
                scales[j] = KQuantSearch.symmetric(
                    16, 32, x + 16 * j, l + 16 * j, weights: importance.map { $0 + 16 * j })
                if abs(scales[j]) > maxAbsScale {
                    maxAbsScale = abs(scales[j])
                    maxScale = scales[j]
                }
            }
            for i in 0..<256 { levels[i] = UInt8(truncatingIfNeeded: l[i]) }
        }
        if maxAbsScale < groupMaxEpsilon {  // ggml zeroes the whole block
            return KQuantBlock(
                type: type, d: 0, scales: [Int8](repeating: 0, count: 16), codes: [UInt8](repeating: 0, count: 256))
        }
        let iscale = -128 / maxScale
        let sc = scales.map { Int8(truncatingIfNeeded: min(127, nearestInt(iscale * $0))) }
        return KQuantBlock(type: type, d: Float16(1 / iscale).bitPattern, scales: sc, codes: [])
    }
}
