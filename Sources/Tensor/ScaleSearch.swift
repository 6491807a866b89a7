// Importance-weighted scale search: a group's parameters chosen to minimise
// sum_k w_k (x_k - value(code(x_k)))^2 over a small set of candidates, where w is the
// importance of each input column (the Hessian diagonal: how much the layer's output
// moves per unit of weight error there). The candidates always include the grid's own
// max-based fit, so the search never scores worse than it. Each candidate's scale (and
// minimum) is refitted by weighted least squares for its codes and rounded as stored
// (fp16 for GGUF), then scored with the grid's own code and value functions: the score
// is that of the parameters actually written. Same idea as llama.cpp's make_qx_quants /
// make_qkx3_quants with an importance matrix.

extension QuantizationGrid {
    /// sum_k w_k (x_k - value(code(x_k)))^2, in Float64 so candidates compare exactly.
    @inlinable
    public func weightedError(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, count: Int, _ p: GroupParameters
    ) -> Double {
        var e = 0.0
        for k in 0..<count {
            let d = Double(x[k] - value(code(x[k], p), p))
            e += Double(w[k]) * d * d
        }
        return e
    }

    /// The candidate of least weighted error; ties keep the earlier one (the grid's own fit first).
    @inlinable
    func leastError(
        _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, count: Int, first: GroupParameters,
        candidates: ((GroupParameters) -> Void) -> Void
    ) -> GroupParameters {
        var best = first
        var bestError = weightedError(x, w, count: count, first)
        candidates { p in
            let e = weightedError(x, w, count: count, p)
            if e < bestError {
                best = p
                bestError = e
            }
        }
        return best
    }
}

/// The scale d of codes l chosen for x minimising sum w (x - d l)^2: sum wxl / sum wl^2
/// (nil when every weighted code is 0).
@inlinable
func leastSquaresScale(
    _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, count: Int, code: (Float) -> Float
) -> Float? {
    var sxl = 0.0
    var sll = 0.0
    for k in 0..<count {
        let l = Double(code(x[k]))
        sxl += Double(w[k]) * Double(x[k]) * l
        sll += Double(w[k]) * l * l
    }
    guard sll > 0 else { return nil }
    let d = Float(sxl / sll)
    return d.isFinite && d != 0 ? d : nil
}

extension GGUFSignedMaxGrid {
    /// `symmetricScaleSearch` on codes -half...half-1: candidates -(half + 0.1 s) / max for s in
    /// -9...9 (llama.cpp's grid for Q4_0 with an importance matrix).
    @inlinable
    public func fitWeighted(
        _ x: UnsafePointer<Float>, count: Int, importance w: UnsafePointer<Float>
    ) -> GroupParameters {
        symmetricScaleSearch(
            self, x, w, count: count, codes: -half...(half - 1), steps: -9...9, step: 0.1, fromSignedMax: true)
    }
}

extension GGUFQ8_0Grid {
    /// `symmetricScaleSearch` on codes -128...127: candidates (127 + 0.5 s) / amax for s in -16...2.
    @inlinable
    public func fitWeighted(
        _ x: UnsafePointer<Float>, count: Int, importance w: UnsafePointer<Float>
    ) -> GroupParameters {
        symmetricScaleSearch(
            self, x, w, count: count, codes: -128...127, steps: -16...2, step: 0.5, fromSignedMax: false)
    }
}

/// The search of the grids value = d (l - zero) with signed levels l in `codes` (Q4_0, Q5_0, Q8_0;
/// zero is the grid's fixed code offset, as its own fit sets it). Candidates iscale =
/// -(-lowest + step s) / max when `fromSignedMax` (ggml's Q4_0/Q5_0 map the first value of
/// largest magnitude to the lowest level), else (highest + step s) / amax (Q8_0), for s in
/// `steps`; each d refitted by weighted least squares for the levels round(x iscale) clamped to
/// `codes`, stored as fp16 (the grid's own fit first).
@inlinable
func symmetricScaleSearch<G: QuantizationGrid>(
    _ grid: G, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, count: Int, codes: ClosedRange<Float>,
    steps: ClosedRange<Int>, step: Float, fromSignedMax: Bool
) -> GroupParameters {
    let own = grid.fit(x, count: count, stride: 1)
    let (mx, amax) = signedMax(x, count: count)
    guard amax > 0 else { return own }
    let (lo, hi) = (codes.lowerBound, codes.upperBound)
    return grid.leastError(x, w, count: count, first: own) { offer in
        for s in steps {
            let iscale = fromSignedMax ? -(-lo + step * Float(s)) / mx : (hi + step * Float(s)) / amax
            guard
                let d = leastSquaresScale(
                    x, w, count: count, code: { min(max(($0 * iscale).rounded(.toNearestOrEven), lo), hi) })
            else { continue }
            let d16 = roundToHalf(d)
            if d16 != 0 && d16.isFinite { offer(GroupParameters(scale: d16, zero: own.zero, inverse: 1 / d16)) }
        }
    }
}

extension GGUFMinMaxGrid {
    /// `minScaleSearch` on codes 0...top.
    @inlinable
    public func fitWeighted(
        _ x: UnsafePointer<Float>, count: Int, importance w: UnsafePointer<Float>
    ) -> GroupParameters {
        minScaleSearch(self, x, w, count: count, top: top)
    }
}

/// The search of the grids value = d l + m (Q4_1, Q5_1; codes 0...top): candidates
/// (top - 1 + 0.1 s) / (max - min) for s in 0...20; for each, d and m solve the 2x2 weighted
/// least squares of x = d l + m, stored as fp16 (the grid's own fit first).
@inlinable
func minScaleSearch<G: QuantizationGrid>(
    _ grid: G, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, count: Int, top: Float
) -> GroupParameters {
    let own = grid.fit(x, count: count, stride: 1)
    var mn = x[0]
    var mx = x[0]
    for k in 0..<count {
        mn = min(mn, x[k])
        mx = max(mx, x[k])
    }
    guard mx > mn else { return own }
    return grid.leastError(x, w, count: count, first: own) { offer in
        for s in 0...20 {
            let iscale = (top - 1 + 0.1 * Float(s)) / (mx - mn)
            var sw = 0.0
            var sl = 0.0
            var sll = 0.0
            var sx = 0.0
            var sxl = 0.0
            for k in 0..<count {
                let l = Double(min(max(((x[k] - mn) * iscale).rounded(.toNearestOrEven), 0), top))
                let wk = Double(w[k])
                sw += wk
                sl += wk * l
                sll += wk * l * l
                sx += wk * Double(x[k])
                sxl += wk * Double(x[k]) * l
            }
            let det = sw * sll - sl * sl
            guard det > 0 else { continue }
            let d16 = roundToHalf(Float((sw * sxl - sx * sl) / det))
            let m16 = roundToHalf(Float((sll * sx - sl * sxl) / det))
            guard d16 > 0, d16.isFinite, m16.isFinite else { continue }
            offer(GroupParameters(scale: d16, zero: m16, inverse: 1 / d16, minimum: m16))
        }
    }
}

extension ReferenceGrid {
    /// The GPTQ reference's MSE grid, importance-weighted: the range [min, max] shrunk by
    /// 1 - 0.025 s for s in 1...20 (down to half), the scale and zero point fitted on each.
    @inlinable
    public func fitWeighted(
        _ x: UnsafePointer<Float>, count: Int, importance w: UnsafePointer<Float>
    ) -> GroupParameters {
        var lo = x[0]
        var hi = x[0]
        for k in 0..<count {
            lo = min(lo, x[k])
            hi = max(hi, x[k])
        }
        return leastError(x, w, count: count, first: parameters(lo: lo, hi: hi)) { offer in
            for s in 1...20 {
                let p = 1 - 0.025 * Float(s)
                offer(parameters(lo: p * lo, hi: p * hi))
            }
        }
    }
}
