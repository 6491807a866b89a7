// The scale searches behind ggml's K-quants (llama.cpp ggml/src/ggml-quants.c: make_qx_quants,
// make_q3_quants, make_qkx2_quants, make_qkx3_quants, make_qp_quants), redone in Swift with the
// same Float32 operations in the same order, so that a super-block fit gives ggml's bytes.
//
// Each search fits one scale (and for the "qkx" ones a minimum) to `n` values and leaves the
// integer levels it chose in `levels`. The C code keeps a few quirks that decide bytes, and
// they are kept here on purpose:
// - `nearestInt` is ggml's round-half-even through the 1.5 * 2^23 bit trick, not lrintf;
// - C stores ints into uint8_t arrays by truncation (a negative level wraps), and later reads
//   of such an array see the wrapped value (make_qp_quants);
// - sums are sequential Float32 (no FMA, no reassociation), as the reference library is built.
//
// Pure functions on pointers: nothing here knows about GGUF, so the file can move to a lower
// layer unchanged.

/// ggml's nearest_int: round half to even via the float significand, exact for |f| <= 2^22.
@inline(__always) func nearestInt(_ f: Float) -> Int {
    let v = f + 12_582_912
    return Int(Int32(bitPattern: v.bitPattern) & 0x007f_ffff) - 0x0040_0000
}

/// C's `(uint8_t)i`.
@inline(__always) func truncatedByte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i) }

/// ggml's threshold below which a group counts as all zero.
let groupMaxEpsilon: Float = 1e-15

enum KQuantSearch {
    /// make_qx_quants with rmse_type 1: a symmetric scale for levels -nmax...nmax-1, chosen among
    /// 19 candidates around nmax / max by weighted least squares. `weights` nil means x^2.
    /// Levels are stored shifted by nmax (0...2 nmax - 1). Returns the scale (negative when the
    /// largest-magnitude value is positive: ggml maps it to level -nmax).
    static func symmetric(
        _ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ levels: UnsafeMutablePointer<Int8>,
        weights: UnsafePointer<Float>?
    ) -> Float {
        let (max, amax) = signedMax(x, count: n)
        if amax < groupMaxEpsilon {
            levels.update(repeating: 0, count: n)
            return 0
        }
        let fmax = Float(nmax)
        @inline(__always) func level(_ iscale: Float, _ i: Int) -> Int {
            Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
        }
        @inline(__always) func weight(_ i: Int) -> Float { weights?[i] ?? x[i] * x[i] }
        var iscale = -fmax / max
        var sumlx: Float = 0
        var suml2: Float = 0
        for i in 0..<n {
            let l = level(iscale, i)
            levels[i] = Int8(l + nmax)
            let w = weight(i)
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        var scale: Float = suml2 != 0 ? sumlx / suml2 : 0
        var best = scale * sumlx
        for step in -9...9 where step != 0 {
            iscale = -(fmax + 0.1 * Float(step)) / max
            sumlx = 0
            suml2 = 0
            for i in 0..<n {
                let l = level(iscale, i)
                let w = weight(i)
                sumlx += w * x[i] * Float(l)
                suml2 += w * Float(l) * Float(l)
            }
            if suml2 > 0 && sumlx * sumlx > best * suml2 {
                for i in 0..<n { levels[i] = Int8(nmax + level(iscale, i)) }
                scale = sumlx / suml2
                best = scale * sumlx
            }
        }
        return scale
    }

    /// make_q3_quants with do_rmse: the symmetric scale nmax / max, then up to five passes that
    /// move single levels when that improves the x^2-weighted least-squares fit. Levels shifted
    /// by nmax as in `symmetric`.
    static func symmetricRefined(
        _ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ levels: UnsafeMutablePointer<Int8>
    ) -> Float {
        let (max, amax) = signedMax(x, count: n)
        if amax < groupMaxEpsilon {
            levels.update(repeating: 0, count: n)
            return 0
        }
        let iscale = -Float(nmax) / max
        var sumlx: Float = 0
        var suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            levels[i] = Int8(l)
            let w = x[i] * x[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = x[i] * x[i]
                let li = Float(levels[i])
                var slx = sumlx - w * x[i] * li
                guard slx > 0 else { continue }
                var sl2 = suml2 - w * li * li
                let newL = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(x[i] * sl2 / slx)))
                guard newL != Int(levels[i]) else { continue }
                slx += w * x[i] * Float(newL)
                sl2 += w * Float(newL) * Float(newL)
                if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                    levels[i] = Int8(newL)
                    sumlx = slx
                    suml2 = sl2
                    changed += 1
                }
            }
            if changed == 0 { break }
        }
        for i in 0..<n { levels[i] += Int8(nmax) }
        return suml2 > 0 ? sumlx / suml2 : 0
    }

    /// make_qkx2_quants (`clampedLevels` false) and make_qkx3_quants (true): an asymmetric fit
    /// x ~ scale * l + min with l in 0...nmax and min <= 0, trying nstep + 1 inverse scales
    /// (rmin + rdelta * is + nmax) / (max - min) and, for each, the weighted least-squares scale
    /// and min of its levels; the one of least weighted error (absolute with `mad`, else squared)
    /// wins. Returns the scale; `theMin` gets -min (>= 0). The two C versions differ only in the
    /// degenerate-range test and in how a candidate's level is clamped.
    static func asymmetric(
        _ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, weights: UnsafePointer<Float>,
        _ levels: UnsafeMutablePointer<UInt8>, theMin: inout Float, rmin: Float, rdelta: Float, nstep: Int,
        mad: Bool, clampedLevels: Bool
    ) -> Float {
        var min = x[0]
        var max = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < min { min = x[i] }
            if x[i] > max { max = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if min > 0 { min = 0 }
        if clampedLevels ? max <= min : max == min {
            levels.update(repeating: 0, count: n)
            theMin = -min
            return 0
        }
        let fmax = Float(nmax)
        @inline(__always) func error(_ diff: Float) -> Float { mad ? abs(diff) : diff * diff }
        var iscale = fmax / (max - min)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
            levels[i] = UInt8(l)
            bestError += weights[i] * error(scale * Float(l) + min - x[i])
        }
        if nstep < 1 {
            theMin = -min
            return scale
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: n) { aux in
            for step in 0...nstep {
                iscale = (rmin + rdelta * Float(step) + fmax) / (max - min)
                var sumL: Float = 0
                var sumL2: Float = 0
                var sumXL: Float = 0
                for i in 0..<n {
                    let l: Int
                    if clampedLevels {
                        // The best min so far can sit at or near max: v may be inf, nan or huge.
                        let v = iscale * (x[i] - min)
                        l = v > 0 ? nearestInt(Swift.min(v, fmax)) : 0
                    } else {
                        l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
                    }
                    aux[i] = UInt8(l)
                    let w = weights[i]
                    sumL += w * Float(l)
                    sumL2 += w * Float(l) * Float(l)
                    sumXL += w * Float(l) * x[i]
                }
                let det = sumW * sumL2 - sumL * sumL
                guard det > 0 else { continue }
                var thisScale = (sumW * sumXL - sumX * sumL) / det
                var thisMin = (sumL2 * sumX - sumL * sumXL) / det
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var err: Float = 0
                for i in 0..<n { err += weights[i] * error(thisScale * Float(aux[i]) + thisMin - x[i]) }
                if err < bestError {
                    levels.update(from: aux.baseAddress!, count: n)
                    bestError = err
                    scale = thisScale
                    min = thisMin
                }
            }
        }
        theMin = -min
        return scale
    }

    /// make_qp_quants: a scale for non-negative values (the sub-block scales or mins of a
    /// super-block) on levels 0...nmax, the best of 9 candidates around nmax / max by weighted
    /// squared error, then up to five passes of single-level moves on the weighted least-squares
    /// fit. Levels are uint8 as in C (a negative level wraps, and later passes read it wrapped).
    static func positive(
        _ n: Int, _ nmax: Int, _ x: UnsafePointer<Float>, _ levels: UnsafeMutablePointer<UInt8>,
        weights: UnsafePointer<Float>
    ) -> Float {
        var max: Float = 0
        for i in 0..<n { max = max > x[i] ? max : x[i] }
        if max < groupMaxEpsilon {
            levels.update(repeating: 0, count: n)
            return 0
        }
        let fmax = Float(nmax)
        var iscale = fmax / max
        for i in 0..<n { levels[i] = truncatedByte(nearestInt(iscale * x[i])) }
        let scale = 1 / iscale
        var bestMSE: Float = 0
        for i in 0..<n {
            let diff = x[i] - scale * Float(levels[i])
            bestMSE += weights[i] * diff * diff
        }
        for step in -4...4 where step != 0 {
            let iscaleStep = (0.1 * Float(step) + fmax) / max
            let scaleStep = 1 / iscaleStep
            var mse: Float = 0
            for i in 0..<n {
                let l = Swift.min(nmax, nearestInt(iscaleStep * x[i]))
                let diff = x[i] - scaleStep * Float(l)
                mse += weights[i] * diff * diff
            }
            if mse < bestMSE {
                bestMSE = mse
                iscale = iscaleStep
            }
        }
        var sumlx: Float = 0
        var suml2: Float = 0
        for i in 0..<n {
            let l = Swift.min(nmax, nearestInt(iscale * x[i]))
            levels[i] = truncatedByte(l)
            let w = weights[i]
            sumlx += w * x[i] * Float(l)
            suml2 += w * Float(l) * Float(l)
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = weights[i]
                let li = Float(levels[i])
                var slx = sumlx - w * x[i] * li
                var sl2 = suml2 - w * li * li
                guard slx > 0 && sl2 > 0 else { continue }
                let newL = Swift.min(nmax, nearestInt(x[i] * sl2 / slx))
                guard newL != Int(levels[i]) else { continue }
                slx += w * x[i] * Float(newL)
                sl2 += w * Float(newL) * Float(newL)
                if slx * slx * suml2 > sumlx * sumlx * sl2 {
                    levels[i] = truncatedByte(newL)
                    sumlx = slx
                    suml2 = sl2
                    changed += 1
                }
            }
            if changed == 0 { break }
        }
        return suml2 > 0 ? sumlx / suml2 : 0
    }
}
