import Tensor

/// AWQ's clip search (AutoAWQ `auto_clip`, `_compute_best_clip`), run on a linear after
/// scaling. Per (row, group): the group's range is shrunk toward zero by ratios
/// r = 1 - i/20, i < 10 (n_grid 20, max_shrink 0.5: 1.0 down to 0.55), the weights are
/// clamped to it, the clamped group is fitted and rounded on the recipe's grid, and the r
/// with the least output error wins (ties: the larger r, the references' strict `<`).
///
/// - Shrunk range: symmetric grids (integer sym, Q4_0, Q8_0) clamp to +-r * max|w| as
///   AutoAWQ does; asymmetric ones (integer asym, Q4_1) clamp to [r * min, r * max], so both
///   ends move. Every grid is then fitted on the clamped values (Q4_0's d = max/-8 and
///   Q4_1's min/max alike); values beyond the range would round to the end codes anyway.
/// - Error: the references multiply by a subsample of the calibration tokens; Kiln uses the
///   group's diagonal block of the Hessian, (w - q) H[g, g] (w - q)^T per row, the output error
///   that group's columns alone contribute. All rows of a group are done at once:
///   E = W_g - Q_g, then the row sums of (E H_gg) o E.
///
/// The result is the clamped weight: RTN of it reproduces the search's choice exactly, and GPTQ
/// quantizes it like any other weight.
public enum AWQClip {
    /// The ratio grid. The defaults are AutoAWQ's.
    public struct Options: Sendable, Equatable {
        public var grid: Int
        public var maxShrink: Float

        public init(grid: Int = 20, maxShrink: Float = 0.5) {
            self.grid = grid
            self.maxShrink = maxShrink
        }

        /// 1 - i / grid for i < maxShrink * grid, largest first.
        public var ratios: [Float] {
            let count = Int(maxShrink * Float(grid))
            return (0..<Swift.max(count, 0)).map { Float(1) - Float($0) / Float(grid) }
        }
    }

    public struct Result: Sendable, Equatable {
        /// The weight with every (row, group) clamped to its chosen range.
        public var clipped: Matrix
        public var ratios: [Float]
        /// The chosen ratio's index into `ratios`, [rows, groups] row-major.
        public var ratioIndex: [Int]
        public var groupCount: Int
        /// Output error (trace form / 2, as `OutputError.fromHessian` restricted to the
        /// diagonal blocks) before and after clipping, summed over all (row, group).
        public var lossBefore: Double
        public var lossAfter: Double

        public func ratio(row: Int, group: Int) -> Float { ratios[ratioIndex[row * groupCount + group]] }
    }

    /// Clip search for one (already scaled) weight with the Hessian of its (scaled) input.
    public static func search(
        _ weight: Matrix, hessian: Matrix, recipe: QuantRecipe, options: Options = Options(), name: String = "weight"
    ) throws -> Result {
        try recipe.validate(columns: weight.cols, tensor: name)
        try Checks.finiteWeight(weight, tensor: name)
        guard hessian.rows == weight.cols && hessian.cols == weight.cols else {
            throw AWQError.shapeMismatch(
                tensor: name,
                detail: "Hessian is \(hessian.rows)x\(hessian.cols), weight has \(weight.cols) input columns")
        }
        let ratios = options.ratios
        guard !ratios.isEmpty, options.maxShrink < 1 else {
            throw AWQError.invalidClipGrid(grid: options.grid, maxShrink: options.maxShrink)
        }
        switch recipe.format {
        case .integer:
            let grid = ReferenceGrid(bits: recipe.bits, symmetric: recipe.symmetric)
            return run(weight, hessian, recipe, grid, symmetric: recipe.symmetric, ratios)
        case .ggufQ4_0: return run(weight, hessian, recipe, GGUFQ4_0Grid(), symmetric: true, ratios)
        case .ggufQ4_1: return run(weight, hessian, recipe, GGUFQ4_1Grid(), symmetric: false, ratios)
        case .ggufQ8_0: return run(weight, hessian, recipe, GGUFQ8_0Grid(), symmetric: true, ratios)
        case .ggufQ5_0: return run(weight, hessian, recipe, GGUFQ5_0Grid(), symmetric: true, ratios)
        case .ggufQ5_1: return run(weight, hessian, recipe, GGUFQ5_1Grid(), symmetric: false, ratios)
        case .ggufQ2_K, .ggufQ3_K, .ggufQ4_K, .ggufQ5_K, .ggufQ6_K:
            // The clip search fits each group on its own; K sub-blocks share their super-block's scale.
            throw AWQError.shapeMismatch(
                tensor: name, detail: "the clip search has no per-group grid for \(recipe.format.rawValue)")
        }
    }

    static func run<G: QuantizationGrid>(
        _ w: Matrix, _ h: Matrix, _ recipe: QuantRecipe, _ grid: G, symmetric: Bool, _ ratios: [Float]
    ) -> Result {
        let m = w.rows
        let g = recipe.effectiveGroupSize(columns: w.cols)
        let groups = recipe.groupCount(columns: w.cols)
        var clipped = w
        var index = [Int](repeating: 0, count: m * groups)
        var before = 0.0
        var after = 0.0
        for k in 0..<groups {
            let cols = (k * g)..<Swift.min((k + 1) * g, w.cols)
            let wg = w.columns(cols)
            let hg = h.rows(cols).columns(cols)
            let (lo, hi) = bounds(wg, symmetric: symmetric)
            var best = [Float](repeating: .infinity, count: m)
            var kept = wg
            for (i, r) in ratios.enumerated() {
                let xc = clamp(wg, lo: lo.map { $0 * r }, hi: hi.map { $0 * r })
                let err = rowErrors(wg, quantize(xc, grid), hg)
                for row in 0..<m where err[row] < best[row] {
                    if i == 0 { before += Double(err[row]) }
                    best[row] = err[row]
                    index[row * groups + k] = i
                    copyRow(row, from: xc, to: &kept)
                }
            }
            after += best.reduce(0.0) { $0 + Double($1) }
            for row in 0..<m {
                let dst = row * w.cols + cols.lowerBound
                clipped.data.replaceSubrange(
                    dst..<(dst + cols.count), with: kept.data[(row * cols.count)..<((row + 1) * cols.count)])
            }
        }
        return Result(
            clipped: clipped, ratios: ratios, ratioIndex: index, groupCount: groups, lossBefore: before / 2,
            lossAfter: after / 2)
    }

    /// Per row: (-max|w|, max|w|) for symmetric grids, (min, max) otherwise.
    static func bounds(_ w: Matrix, symmetric: Bool) -> ([Float], [Float]) {
        var lo = [Float](repeating: 0, count: w.rows)
        var hi = [Float](repeating: 0, count: w.rows)
        for r in 0..<w.rows {
            let row = w.data[(r * w.cols)..<((r + 1) * w.cols)]
            if symmetric {
                let amax = row.reduce(Float(0)) { Swift.max($0, abs($1)) }
                lo[r] = -amax
                hi[r] = amax
            } else {
                lo[r] = row.min() ?? 0
                hi[r] = row.max() ?? 0
            }
        }
        return (lo, hi)
    }

    static func clamp(_ w: Matrix, lo: [Float], hi: [Float]) -> Matrix {
        var out = w
        for r in 0..<w.rows {
            for c in 0..<w.cols {
                out.data[r * w.cols + c] = Swift.min(Swift.max(w.data[r * w.cols + c], lo[r]), hi[r])
            }
        }
        return out
    }

    /// RTN of a [rows, group] block as one group per row: the same `fit`, `code`, `value` as `RTN`.
    static func quantize<G: QuantizationGrid>(_ x: Matrix, _ grid: G) -> Matrix {
        var q = x
        x.data.withUnsafeBufferPointer { xp in
            for r in 0..<x.rows {
                let row = xp.baseAddress! + r * x.cols
                let p = grid.fit(row, count: x.cols, stride: 1)
                for c in 0..<x.cols { q.data[r * x.cols + c] = grid.value(grid.code(row[c], p), p) }
            }
        }
        return q
    }

    /// (w - q) H (w - q)^T per row: E = W - Q, then the row dots of E H with E.
    static func rowErrors(_ w: Matrix, _ q: Matrix, _ h: Matrix) -> [Float] {
        let e = BLAS.difference(w, q)
        let eh = BLAS.matmul(e, h)
        return e.data.withUnsafeBufferPointer { ep in
            eh.data.withUnsafeBufferPointer { hp in
                (0..<e.rows).map {
                    BLAS.dot(hp.baseAddress! + $0 * e.cols, ep.baseAddress! + $0 * e.cols, count: e.cols)
                }
            }
        }
    }

    static func copyRow(_ r: Int, from src: Matrix, to dst: inout Matrix) {
        let range = (r * src.cols)..<((r + 1) * src.cols)
        dst.data.replaceSubrange(range, with: src.data[range])
    }
}
