import Tensor

/// GPTQ (Frantar et al.), following the reference `GPTQ.fasterquant` of IST-DASLab/gptq
/// step by step so that its results are reproduced:
///
/// 1. Per-channel parameters (group -1) are fitted on the original W, before dead columns.
/// 2. Dead columns (H[i,i] == 0): H[i,i] = 1, W[:, i] = 0.
/// 3. Static groups: every group's parameters fitted on W (after 2, original order).
/// 4. Act-order: columns sorted by diag(H) descending (ties by column index: a stable
///    order; torch.argsort is unstable, which only matters for exact ties, e.g. dead
///    columns, where the order does not change the result).
/// 5. damp = percdamp * mean(diag(H)) added to the diagonal; Hinv = the upper Cholesky
///    factor of H^-1 (LAPACK spotrf/spotri, then spotrf).
/// 6. Blocks of `blockSize` columns: each column is quantized, its scaled error
///    (w - q) / Hinv[i,i] is spread over the rest of the block, and at the block end the
///    remaining columns get the whole block's update in one sgemm. Inside a block the
///    same lazy scheme runs once more on sub-blocks of 16 columns (rank-1 updates within
///    the sub-block, one sgemm for the rest of the block), which keeps most of the work
///    in sgemm; only the rounding order differs from the reference's. Non-static groups are fitted
///    when column i reaches a group start, on W as of the start of the current block
///    (the reference reads W, not the in-block copy W1).
///
/// Internally W is held transposed ([in, out]) so a column is contiguous, and LAPACK works on
/// column-major storage in place (see `GPTQScratch`); every floating-point operation is the
/// same as in the row-major formulation, so results do not depend on these layouts.
public enum GPTQ {
    public static func quantize(
        _ weight: Matrix, hessian: Matrix, recipe: QuantRecipe,
        name: String = "weight"
    ) throws -> GPTQResult {
        try recipe.validate(columns: weight.cols, tensor: name)
        if weight.count == 0 || !allFinite(weight.data) { try Checks.finiteWeight(weight, tensor: name) }
        guard hessian.rows == weight.cols && hessian.cols == weight.cols else {
            throw QuantizationError.shapeMismatch(
                tensor: name,
                detail: "Hessian is \(hessian.rows)x\(hessian.cols), weight has \(weight.cols) input columns")
        }
        if !allFinite(hessian.data), let k = hessian.data.firstIndex(where: { !$0.isFinite }) {
            throw QuantizationError.nonFiniteHessian(
                tensor: name, row: k / hessian.cols, column: k % hessian.cols, value: hessian.data[k])
        }
        switch recipe.format {
        case .integer:
            return try run(weight, hessian, recipe, ReferenceGrid(bits: recipe.bits, symmetric: recipe.symmetric), name)
        case .ggufQ4_0: return try run(weight, hessian, recipe, GGUFQ4_0Grid(), name)
        case .ggufQ4_1: return try run(weight, hessian, recipe, GGUFQ4_1Grid(), name)
        case .ggufQ8_0: return try run(weight, hessian, recipe, GGUFQ8_0Grid(), name)
        case .ggufQ5_0: return try run(weight, hessian, recipe, GGUFQ5_0Grid(), name)
        case .ggufQ5_1: return try run(weight, hessian, recipe, GGUFQ5_1Grid(), name)
        case .ggufQ2_K, .ggufQ3_K, .ggufQ4_K, .ggufQ5_K, .ggufQ6_K:
            return try run(weight, hessian, recipe, KQuantGrid(recipe.format.kQuantType!), name)
        }
    }

    /// Whether every value is finite, in one vectorizable pass (which one is not is looked up only then).
    static func allFinite(_ x: [Float]) -> Bool {
        x.withUnsafeBufferPointer { p in
            var bad: UInt32 = 0
            for v in p { bad |= (v.bitPattern & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0 }
            return bad == 0
        }
    }

    static func run<G: QuantizationGrid>(
        _ weight: Matrix, _ hessian: Matrix, _ recipe: QuantRecipe, _ grid: G,
        _ name: String
    ) throws -> GPTQResult {
        let shape = GPTQShape(recipe: recipe, rows: weight.rows, columns: weight.cols)
        let b = GPTQScratch(shape)
        defer { b.deallocate() }
        var w = weight
        var h = hessian
        // The scale search's importance of each input column: diag(H) as given.
        let importance = recipe.scaleSearch ? (0..<shape.n).map { hessian.data[$0 * shape.n + $0] } : nil
        // 1. per-channel parameters from the untouched weights
        if shape.perChannel { fitGroups(w, grid, shape, importance, into: b.params) }
        // 2. dead columns
        let dead = zeroDeadColumns(&w, &h, shape)
        // K formats: super-blocks' fields as the file stores them (fitted in 3. or in the sweep).
        var kScales = recipe.format.kQuantType.map {
            KQuantScales(type: $0, rows: shape.m, superBlocks: shape.n / KQuantType.superBlockSize)
        }
        // 3. static groups
        if recipe.staticGroups {
            if kScales != nil {
                fitSuperBlocks(w, shape, importance, into: b.params, &kScales!)
            } else {
                fitGroups(w, grid, shape, importance, into: b.params)
            }
        }
        // 4. act-order permutation
        let perm = recipe.actOrder ? actOrderPermutation(h, n: shape.n) : Array(0..<shape.n)
        // 5. dampening and the upper Cholesky factor of H^-1
        b.loadHessian(h, permutation: recipe.actOrder ? perm : nil)
        let damp = try dampAndFactor(b.factor, n: shape.n, recipe: recipe, name: name)
        b.loadWeight(w, permutation: recipe.actOrder ? perm : nil)
        let totalLoss = sweep(
            b, grid, shape, perm, importance: importance.map { i in perm.map { i[$0] } }, kScales: &kScales)
        let params = b.rowMajorParameters()
        try Checks.scalesFit(params, groups: shape.groups, recipe: recipe, tensor: name)
        var result = b.result(parameters: params, totalLoss: totalLoss, dead: dead, damp: damp, permutation: perm)
        result.weight.stored.kScales = kScales
        return result
    }

    /// K formats, static groups: every (row, super-block) fitted on W as it is (original column
    /// order), its sub-blocks' parameters into `params` (group-major) and its fields into `scales`.
    static func fitSuperBlocks(
        _ w: Matrix, _ s: GPTQShape, _ importance: [Float]?, into params: UnsafeMutablePointer<GroupParameters>,
        _ scales: inout KQuantScales
    ) {
        let grid = KQuantGrid(scales.type)
        w.data.withUnsafeBufferPointer { wp in
            for r in 0..<s.m {
                for sb in 0..<scales.superBlocks {
                    let c0 = sb * KQuantType.superBlockSize
                    let x = wp.baseAddress! + r * s.n + c0
                    let block =
                        importance.map { i in
                            i.withUnsafeBufferPointer { grid.fit(x, importance: $0.baseAddress! + c0) }
                        }
                        ?? grid.fit(x)
                    storeSuperBlock(block, row: r, firstGroup: c0 / s.g, s, params, &scales)
                }
            }
        }
    }

    /// K formats without static groups: the super-block starting at column c fitted for every row
    /// on the weights as updated so far (as `searchGroup`: W1 inside the current block, W beyond),
    /// with `importance` (sweep order) as llama.cpp's imatrix, or without it as llama.cpp's RTN.
    static func fitSuperBlock(
        _ b: GPTQScratch, _ s: GPTQShape, column c: Int, block: Range<Int>, _ importance: [Float]?,
        _ scales: inout KQuantScales
    ) {
        let m = s.m
        let grid = KQuantGrid(scales.type)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: KQuantType.superBlockSize) { x in
            for r in 0..<m {
                for k in 0..<KQuantType.superBlockSize {
                    let col = c + k
                    x[k] = col < block.upperBound ? b.w1[(col - block.lowerBound) * m + r] : b.wt[col * m + r]
                }
                let fitted =
                    importance.map { i in
                        i.withUnsafeBufferPointer { grid.fit(x.baseAddress!, importance: $0.baseAddress! + c) }
                    }
                    ?? grid.fit(x.baseAddress!)
                storeSuperBlock(fitted, row: r, firstGroup: c / s.g, s, b.params, &scales)
            }
        }
    }

    static func storeSuperBlock(
        _ block: KQuantBlock, row r: Int, firstGroup: Int, _ s: GPTQShape,
        _ params: UnsafeMutablePointer<GroupParameters>, _ scales: inout KQuantScales
    ) {
        scales.set(row: r, superBlock: firstGroup * s.g / KQuantType.superBlockSize, block)
        for (j, p) in block.groupParameters.enumerated() { params[(firstGroup + j) * s.m + r] = p }
    }

    /// Fits every (row, group) on W as it is (per-channel: one group of all columns) into
    /// `params`, group-major ([groups, m]); by importance-weighted search when `importance`
    /// (per original column) is given.
    static func fitGroups<G: QuantizationGrid>(
        _ w: Matrix, _ grid: G, _ s: GPTQShape, _ importance: [Float]?,
        into params: UnsafeMutablePointer<GroupParameters>
    ) {
        w.data.withUnsafeBufferPointer { wp in
            for r in 0..<s.m {
                for k in 0..<s.groups {
                    let c0 = k * s.g
                    let x = wp.baseAddress! + r * s.n + c0
                    let count = min(s.g, s.n - c0)
                    if let importance {
                        params[k * s.m + r] = importance.withUnsafeBufferPointer {
                            grid.fitWeighted(x, count: count, importance: $0.baseAddress! + c0)
                        }
                    } else {
                        params[k * s.m + r] = grid.fit(x, count: count, stride: 1)
                    }
                }
            }
        }
    }

    /// Columns whose H[i,i] is zero: H[i,i] = 1 and W[:, i] = 0. Returns their indices.
    static func zeroDeadColumns(_ w: inout Matrix, _ h: inout Matrix, _ s: GPTQShape) -> [Int] {
        var dead: [Int] = []
        for i in 0..<s.n where h.data[i * s.n + i] == 0 {
            dead.append(i)
            h.data[i * s.n + i] = 1
            for r in 0..<s.m { w.data[r * s.n + i] = 0 }
        }
        return dead
    }

    /// Columns by diag(H) descending (ties by index).
    static func actOrderPermutation(_ h: Matrix, n: Int) -> [Int] {
        var perm = Array(0..<n)
        let diag = (0..<n).map { h.data[$0 * n + $0] }
        perm.sort { diag[$0] > diag[$1] || (diag[$0] == diag[$1] && $0 < $1) }
        return perm
    }

    /// Adds damp = percentDamp * mean(diag(H)) to the diagonal of the column-major H at `a`
    /// and replaces it by the upper Cholesky factor of its inverse (upper triangle; the
    /// strict lower one is left as it was). Returns damp.
    static func dampAndFactor(
        _ a: UnsafeMutablePointer<Float>, n: Int, recipe: QuantRecipe, name: String
    ) throws -> Float {
        var diagSum = 0.0
        for i in 0..<n { diagSum += Double(a[i * n + i]) }
        let damp = Float(recipe.percentDamp) * Float(diagSum / Double(n))
        for i in 0..<n { a[i * n + i] += damp }
        do {
            try LAPACK.choleskyUpper(columnMajor: a, n: n)
            try LAPACK.inverseFromCholeskyUpper(columnMajor: a, n: n)
            try LAPACK.choleskyUpper(columnMajor: a, n: n)
        } catch {
            throw QuantizationError.hessianNotPositiveDefinite(tensor: name, detail: "\(error)")
        }
        return damp
    }

    /// 6. The column sweep, block by block (see the type's comment). Returns the total loss,
    /// summed in Float64 in sweep order.
    static func sweep<G: QuantizationGrid>(
        _ b: GPTQScratch, _ grid: G, _ s: GPTQShape, _ perm: [Int], importance: [Float]?,
        kScales: inout KQuantScales?
    ) -> Double {
        let m = s.m
        let n = s.n
        var current = b.params
        for i1 in stride(from: 0, to: n, by: s.blockSize) {
            let i2 = min(i1 + s.blockSize, n)
            let count = i2 - i1
            b.w1.update(from: b.wt + i1 * m, count: count * m)
            for i in 0..<count {
                let c = i1 + i
                if !s.perChannel {
                    if kScales != nil && !s.staticGroups {
                        if c % KQuantType.superBlockSize == 0 {
                            fitSuperBlock(b, s, column: c, block: i1..<i2, importance, &kScales!)
                        }
                        if c % s.g == 0 { current = b.params + c / s.g * m }
                    } else if let importance, !s.staticGroups {
                        if c % s.g == 0 { current = searchGroup(b, grid, s, column: c, block: i1..<i2, importance) }
                    } else {
                        current = selectGroup(b, grid, s, column: c, originalColumn: perm[c], current)
                    }
                }
                quantizeColumn(b, grid, current, m: m, n: n, column: c, originalColumn: perm[c], blockColumn: i)
                spreadError(b, s, blockStart: i1, blockCount: count, blockColumn: i)
            }
            if i2 < n {
                // W[:, i2:] -= Err1 * Hinv[i1:i2, i2:]  (transposed: Wt[i2:] -= Hinv[i1:i2, i2:]^T * Err1^T)
                BLAS.gemm(
                    transA: false, transB: false, m: n - i2, n: m, k: count, alpha: -1,
                    a: b.hinvT + i2 * n + i1, lda: n, b: b.err, ldb: m, beta: 1, c: b.wt + i2 * m, ldc: m)
            }
        }
        // One serial chain of Float64 additions, in sweep order: the vector loops above stay free of it.
        var total = 0.0
        for c in 0..<n {
            let loss = b.loss + perm[c] * m
            for r in 0..<m { total += Double(loss[r]) }
        }
        return total
    }

    /// The parameters (one per row) column c (sweep order) is quantized with: the static group
    /// of its original column, or at a group start new ones fitted on W as of the start of the
    /// current block; otherwise `current`.
    @inline(__always)
    static func selectGroup<G: QuantizationGrid>(
        _ b: GPTQScratch, _ grid: G, _ s: GPTQShape, column c: Int, originalColumn: Int,
        _ current: UnsafeMutablePointer<GroupParameters>
    ) -> UnsafeMutablePointer<GroupParameters> {
        let m = s.m
        if s.staticGroups { return b.params + originalColumn / s.g * m }
        guard c % s.g == 0 else { return current }
        let group = b.params + c / s.g * m
        let len = min(s.g, s.n - c)
        grid.fitRows(b.wt + c * m, rows: m, count: len, stride: m, into: group)
        return group
    }

    /// The parameters of the group starting at column c (sweep order), by importance-weighted
    /// search on each row's weights as updated so far: W1 inside the current block (its lazy
    /// updates are applied up to c at a sub-block boundary), W beyond it.
    static func searchGroup<G: QuantizationGrid>(
        _ b: GPTQScratch, _ grid: G, _ s: GPTQShape, column c: Int, block: Range<Int>, _ importance: [Float]
    ) -> UnsafeMutablePointer<GroupParameters> {
        let m = s.m
        let group = b.params + c / s.g * m
        let len = min(s.g, s.n - c)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: len) { x in
            importance.withUnsafeBufferPointer { ip in
                for r in 0..<m {
                    for k in 0..<len {
                        let col = c + k
                        x[k] = col < block.upperBound ? b.w1[(col - block.lowerBound) * m + r] : b.wt[col * m + r]
                    }
                    group[r] = grid.fitWeighted(x.baseAddress!, count: len, importance: ip.baseAddress! + c)
                }
            }
        }
        return group
    }

    /// Quantizes column c (block column i of W1): codes, values and losses (stored at its
    /// original column) and the scaled error, in one loop that the compiler vectorizes (the
    /// grids' code functions are branch-free and cannot trap; the same IEEE operations per element).
    @inline(__always)
    static func quantizeColumn<G: QuantizationGrid>(
        _ b: GPTQScratch, _ grid: G, _ current: UnsafeMutablePointer<GroupParameters>, m: Int, n: Int,
        column c: Int, originalColumn: Int, blockColumn i: Int
    ) {
        let d = b.hinvT[c * n + c]
        let d2 = d * d
        let wcol = b.w1 + i * m
        let ecol = b.err + i * m
        let codes = b.codes + originalColumn * m
        let q = b.q + originalColumn * m
        let loss = b.loss + originalColumn * m
        for r in 0..<m {
            let code = grid.code(wcol[r], current[r])
            codes[r] = code
            let value = grid.value(code, current[r])
            q[r] = value
            let diff = wcol[r] - value
            loss[r] = diff * diff / d2 / 2
            ecol[r] = diff / d
        }
    }

    /// The error of block column i reaches the rest of its sub-block now (a rank-1 update) and
    /// the rest of the block at the sub-block's end (one sgemm): the same update as the
    /// reference's whole-block rank-1 steps, in fewer passes.
    @inline(__always)
    static func spreadError(
        _ b: GPTQScratch, _ s: GPTQShape, blockStart i1: Int, blockCount count: Int, blockColumn i: Int
    ) {
        let m = s.m
        let n = s.n
        let c = i1 + i
        let subEnd = min((i / GPTQShape.subBlock + 1) * GPTQShape.subBlock, count)
        let rest = subEnd - i - 1
        if rest > 0 {
            // W1[i+1..<subEnd] -= Hinv[c, c+1..<] (rest) outer err (m)
            BLAS.ger(
                m: rest, n: m, alpha: -1, x: b.hinvT + (c + 1) * n + c, incX: n, y: b.err + i * m,
                a: b.w1 + (i + 1) * m, lda: m)
        }
        if i + 1 == subEnd && subEnd < count {
            let s0 = i / GPTQShape.subBlock * GPTQShape.subBlock  // first column of this sub-block
            // W1[subEnd..<count] -= Hinv[i1+s0..<i1+subEnd, i1+subEnd..<i2]^T * Err1[s0..<subEnd]
            BLAS.gemm(
                transA: false, transB: false, m: count - subEnd, n: m, k: subEnd - s0, alpha: -1,
                a: b.hinvT + (i1 + subEnd) * n + i1 + s0, lda: n, b: b.err + s0 * m, ldb: m,
                beta: 1, c: b.w1 + subEnd * m, ldc: m)
        }
    }
}

/// The sizes one GPTQ run works with: W is [m, n] with `groups` groups of `g` columns.
struct GPTQShape {
    /// Columns per in-block sub-block (see `GPTQ.spreadError`).
    static let subBlock = 16
    let recipe: QuantRecipe
    let m: Int
    let n: Int
    let g: Int
    let groups: Int
    let blockSize: Int
    var perChannel: Bool { recipe.isPerChannel }
    var staticGroups: Bool { recipe.staticGroups }
    var actOrder: Bool { recipe.actOrder }

    init(recipe: QuantRecipe, rows: Int, columns: Int) {
        self.recipe = recipe
        m = rows
        n = columns
        g = recipe.effectiveGroupSize(columns: columns)
        groups = recipe.groupCount(columns: columns)
        blockSize = recipe.blockSize
    }
}

/// Output error of a quantized linear.
public enum OutputError {
    /// sum(((W - Q) X^T)^2) / tokens, with X [tokens, in]; Float64 accumulation of the squares.
    public static func fromActivations(weight: Matrix, quantized: Matrix, activations x: Matrix) -> Double {
        precondition(x.cols == weight.cols, "activations have \(x.cols) columns, weight \(weight.cols)")
        if x.rows == 0 { return 0 }
        let d = BLAS.difference(weight, quantized)
        let e = BLAS.matmul(d, x, transB: true)
        return BLAS.dotDouble(e.data, e.data) / Double(x.rows)
    }

    /// trace((W - Q) H (W - Q)^T) / 2. With H = 2/T X^T X (`HessianNormalization.tokens`)
    /// this equals `fromActivations`; with the reference's 2/N scaling it is that times T/N.
    public static func fromHessian(weight: Matrix, quantized: Matrix, hessian h: Matrix) -> Double {
        precondition(h.rows == weight.cols && h.cols == weight.cols, "Hessian must be \(weight.cols)x\(weight.cols)")
        let d = BLAS.difference(weight, quantized)
        let dh = BLAS.matmul(d, h)
        return BLAS.dotDouble(dh.data, d.data) / 2
    }

    /// `fromHessian` with Q = 0 (the output's energy, what a relative error divides by), the
    /// same value without a zero matrix and a difference of the weight's size.
    public static func energy(weight: Matrix, hessian h: Matrix) -> Double {
        precondition(h.rows == weight.cols && h.cols == weight.cols, "Hessian must be \(weight.cols)x\(weight.cols)")
        let wh = BLAS.matmul(weight, h)
        return BLAS.dotDouble(wh.data, weight.data) / 2
    }
}
