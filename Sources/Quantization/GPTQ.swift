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
/// Internally W is held transposed ([in, out]) so a column is contiguous.
public enum GPTQ {
    public static func quantize(
        _ weight: Matrix, hessian: Matrix, recipe: QuantRecipe,
        name: String = "weight"
    ) throws -> GPTQResult {
        try recipe.validate(columns: weight.cols, tensor: name)
        try Checks.finiteWeight(weight, tensor: name)
        guard hessian.rows == weight.cols && hessian.cols == weight.cols else {
            throw QuantizationError.shapeMismatch(
                tensor: name,
                detail: "Hessian is \(hessian.rows)x\(hessian.cols), weight has \(weight.cols) input columns")
        }
        for (k, v) in hessian.data.enumerated() where !v.isFinite {
            throw QuantizationError.nonFiniteHessian(
                tensor: name, row: k / hessian.cols, column: k % hessian.cols, value: v)
        }
        switch recipe.format {
        case .integer:
            return try run(weight, hessian, recipe, ReferenceGrid(bits: recipe.bits, symmetric: recipe.symmetric), name)
        case .ggufQ4_0: return try run(weight, hessian, recipe, GGUFQ4_0Grid(), name)
        case .ggufQ4_1: return try run(weight, hessian, recipe, GGUFQ4_1Grid(), name)
        case .ggufQ8_0: return try run(weight, hessian, recipe, GGUFQ8_0Grid(), name)
        }
    }

    static func run<G: QuantizationGrid>(
        _ weight: Matrix, _ hessian: Matrix, _ recipe: QuantRecipe, _ grid: G,
        _ name: String
    ) throws -> GPTQResult {
        let shape = GPTQShape(recipe: recipe, rows: weight.rows, columns: weight.cols)
        var w = weight
        var h = hessian
        // 1. per-channel parameters from the untouched weights
        var params = [GroupParameters](repeating: GroupParameters(scale: 0, zero: 0), count: shape.m * shape.groups)
        if shape.perChannel { fitGroups(w, grid, shape, into: &params) }
        // 2. dead columns
        let dead = zeroDeadColumns(&w, &h, shape)
        // 3. static groups
        if recipe.staticGroups { fitGroups(w, grid, shape, into: &params) }
        // 4. act-order permutation
        let perm = recipe.actOrder ? actOrderPermutation(&h, n: shape.n) : Array(0..<shape.n)
        // 5. dampening and the upper Cholesky factor of H^-1
        let damp = try dampAndFactor(&h, recipe: recipe, name: name)

        let scratch = GPTQScratch(shape)
        defer { scratch.deallocate() }
        scratch.load(weight: w, hinv: h, parameters: params, permutation: perm)
        sweep(scratch, grid, shape, perm)
        params = Array(UnsafeBufferPointer(start: scratch.params, count: shape.m * shape.groups))
        try Checks.scalesFit(params, groups: shape.groups, recipe: recipe, tensor: name)
        return unpermute(scratch, shape, perm, params: params, dead: dead, damp: damp)
    }

    /// Fits every (row, group) on W as it is (per-channel: one group of all columns).
    static func fitGroups<G: QuantizationGrid>(
        _ w: Matrix, _ grid: G, _ s: GPTQShape, into params: inout [GroupParameters]
    ) {
        w.data.withUnsafeBufferPointer { wp in
            for r in 0..<s.m {
                for k in 0..<s.groups {
                    let c0 = k * s.g
                    params[r * s.groups + k] = grid.fit(
                        wp.baseAddress! + r * s.n + c0, count: min(s.g, s.n - c0), stride: 1)
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

    /// Columns by diag(H) descending (ties by index); permutes H's rows and columns to that order.
    static func actOrderPermutation(_ h: inout Matrix, n: Int) -> [Int] {
        var perm = Array(0..<n)
        let diag = (0..<n).map { h.data[$0 * n + $0] }
        perm.sort { diag[$0] > diag[$1] || (diag[$0] == diag[$1] && $0 < $1) }
        var hp = Matrix(rows: n, cols: n)
        for i in 0..<n {
            let src = perm[i] * n
            for j in 0..<n { hp.data[i * n + j] = h.data[src + perm[j]] }
        }
        h = hp
        return perm
    }

    /// Adds damp = percentDamp * mean(diag(H)) to the diagonal and replaces H by the upper
    /// Cholesky factor of its inverse. Returns damp.
    static func dampAndFactor(_ h: inout Matrix, recipe: QuantRecipe, name: String) throws -> Float {
        let n = h.rows
        var diagSum = 0.0
        for i in 0..<n { diagSum += Double(h.data[i * n + i]) }
        let damp = Float(recipe.percentDamp) * Float(diagSum / Double(n))
        for i in 0..<n { h.data[i * n + i] += damp }
        do {
            try LAPACK.inverseSPD(&h)
            try LAPACK.cholesky(&h, upper: true)
        } catch {
            throw QuantizationError.hessianNotPositiveDefinite(tensor: name, detail: "\(error)")
        }
        return damp
    }

    /// 6. The column sweep, block by block (see the type's comment).
    static func sweep<G: QuantizationGrid>(_ b: GPTQScratch, _ grid: G, _ s: GPTQShape, _ perm: [Int]) {
        let m = s.m
        let n = s.n
        for i1 in stride(from: 0, to: n, by: s.blockSize) {
            let i2 = min(i1 + s.blockSize, n)
            let count = i2 - i1
            b.w1.update(from: b.wt + i1 * m, count: count * m)
            for i in 0..<count {
                let c = i1 + i
                if !s.perChannel { selectGroup(b, grid, s, column: c, originalColumn: perm[c]) }
                quantizeColumn(b, grid, m: m, n: n, column: c, blockColumn: i)
                spreadError(b, s, blockStart: i1, blockCount: count, blockColumn: i)
            }
            if i2 < n {
                // W[:, i2:] -= Err1 * Hinv[i1:i2, i2:]  (transposed: Wt[i2:] -= Hinv[i1:i2, i2:]^T * Err1^T)
                BLAS.gemm(
                    transA: true, transB: false, m: n - i2, n: m, k: count, alpha: -1,
                    a: b.hinv + i1 * n + i2, lda: n, b: b.err, ldb: m, beta: 1, c: b.wt + i2 * m, ldc: m)
            }
        }
    }

    /// The parameters column c (sweep order) is quantized with: the static group of its original
    /// column, or at a group start new ones fitted on W as of the start of the current block.
    @inline(__always)
    static func selectGroup<G: QuantizationGrid>(
        _ b: GPTQScratch, _ grid: G, _ s: GPTQShape, column c: Int, originalColumn: Int
    ) {
        let m = s.m
        if s.staticGroups {
            let k = originalColumn / s.g
            for r in 0..<m { b.current[r] = b.params[r * s.groups + k] }
        } else if c % s.g == 0 {
            let k = c / s.g
            let len = min(s.g, s.n - c)
            for r in 0..<m {
                let p = grid.fit(b.wt + c * m + r, count: len, stride: m)
                b.current[r] = p
                b.params[r * s.groups + k] = p
            }
        }
    }

    /// Quantizes column c (block column i of W1): codes, values, losses and the scaled error.
    @inline(__always)
    static func quantizeColumn<G: QuantizationGrid>(
        _ b: GPTQScratch, _ grid: G, m: Int, n: Int, column c: Int, blockColumn i: Int
    ) {
        let d = b.hinv[c * n + c]
        let d2 = d * d
        let wcol = b.w1 + i * m
        let ecol = b.err + i * m
        let out = c * m
        for r in 0..<m {
            let x = wcol[r]
            let code = grid.code(x, b.current[r])
            let q = grid.value(code, b.current[r])
            b.codes[out + r] = code
            b.q[out + r] = q
            let diff = x - q
            b.loss[out + r] = diff * diff / d2 / 2
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
                m: rest, n: m, alpha: -1, x: b.hinv + c * n + c + 1, y: b.err + i * m, a: b.w1 + (i + 1) * m, lda: m)
        }
        if i + 1 == subEnd && subEnd < count {
            let s0 = i / GPTQShape.subBlock * GPTQShape.subBlock  // first column of this sub-block
            // W1[subEnd..<count] -= Hinv[i1+s0..<i1+subEnd, i1+subEnd..<i2]^T * Err1[s0..<subEnd]
            BLAS.gemm(
                transA: true, transB: false, m: count - subEnd, n: m, k: subEnd - s0, alpha: -1,
                a: b.hinv + (i1 + s0) * n + i1 + subEnd, lda: n, b: b.err + s0 * m, ldb: m,
                beta: 1, c: b.w1 + subEnd * m, ldc: m)
        }
    }

    /// Back to [out, in] in the original column order, with g_idx and the act-order permutations.
    static func unpermute(
        _ b: GPTQScratch, _ s: GPTQShape, _ perm: [Int], params: [GroupParameters], dead: [Int], damp: Float
    ) -> GPTQResult {
        let m = s.m
        let n = s.n
        var codes = [UInt8](repeating: 0, count: m * n)
        var deq = Matrix(rows: m, cols: n)
        var losses = Matrix(rows: m, cols: n)
        var total = 0.0
        for c in 0..<n {
            let dst = perm[c]
            for r in 0..<m {
                codes[r * n + dst] = b.codes[c * m + r]
                deq.data[r * n + dst] = b.q[c * m + r]
                losses.data[r * n + dst] = b.loss[c * m + r]
                total += Double(b.loss[c * m + r])
            }
        }
        var gidx = [Int32](repeating: 0, count: n)
        if !s.perChannel {
            for c in 0..<n {
                if s.actOrder && !s.staticGroups {
                    gidx[perm[c]] = Int32(c / s.g)
                } else {
                    gidx[c] = Int32(c / s.g)
                }
            }
        }
        var permOut: [Int32]? = nil
        var invOut: [Int32]? = nil
        if s.actOrder {
            permOut = perm.map { Int32($0) }
            var inv = [Int32](repeating: 0, count: n)
            for (pos, col) in perm.enumerated() { inv[col] = Int32(pos) }
            invOut = inv
        }
        let qw = QuantizedWeight(
            rows: m, columns: n, recipe: s.recipe, groupSize: s.g, groupCount: s.groups, codes: codes,
            parameters: params, groupIndex: gidx, permutation: permOut,
            inversePermutation: invOut, dequantized: deq)
        return GPTQResult(weight: qw, losses: losses, totalLoss: total, deadColumns: dead, damp: damp)
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

/// Every buffer the GPTQ sweep touches, in one allocation, column-major ([in, out]) so a
/// column is contiguous: W^T in sweep order, the block copy W1 and its scaled errors, Hinv,
/// the values, losses and codes, and the group parameters (all and per row of the current group).
struct GPTQScratch {
    let wt: UnsafeMutablePointer<Float>
    let w1: UnsafeMutablePointer<Float>
    let err: UnsafeMutablePointer<Float>
    let hinv: UnsafeMutablePointer<Float>
    let q: UnsafeMutablePointer<Float>
    let loss: UnsafeMutablePointer<Float>
    let params: UnsafeMutablePointer<GroupParameters>
    let current: UnsafeMutablePointer<GroupParameters>
    let codes: UnsafeMutablePointer<UInt8>
    private let raw: UnsafeMutableRawPointer
    private let shape: GPTQShape

    init(_ s: GPTQShape) {
        let mn = s.m * s.n
        let block = min(s.blockSize, s.n) * s.m
        let floats = 3 * mn + 2 * block + s.n * s.n
        let parameters = s.m * s.groups + s.m
        let bytes = floats * MemoryLayout<Float>.stride + parameters * MemoryLayout<GroupParameters>.stride + mn
        raw = .allocate(byteCount: max(bytes, 1), alignment: MemoryLayout<GroupParameters>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let f = raw.bindMemory(to: Float.self, capacity: floats)
        wt = f
        q = f + mn
        loss = f + 2 * mn
        w1 = f + 3 * mn
        err = w1 + block
        hinv = err + block
        let p = (raw + floats * MemoryLayout<Float>.stride).bindMemory(to: GroupParameters.self, capacity: parameters)
        params = p
        current = p + s.m * s.groups
        codes = (raw + floats * MemoryLayout<Float>.stride + parameters * MemoryLayout<GroupParameters>.stride)
            .bindMemory(to: UInt8.self, capacity: mn)
        shape = s
    }

    /// W^T in sweep order (row c is column perm[c] of W), Hinv, and the parameters fitted so far
    /// (per-channel: also the current ones).
    func load(weight w: Matrix, hinv h: Matrix, parameters: [GroupParameters], permutation perm: [Int]) {
        let m = shape.m
        let n = shape.n
        w.data.withUnsafeBufferPointer { wp in
            for c in 0..<n { BLAS.copy(count: m, x: wp.baseAddress! + perm[c], incX: n, y: wt + c * m, incY: 1) }
        }
        h.data.withUnsafeBufferPointer { hinv.update(from: $0.baseAddress!, count: n * n) }
        parameters.withUnsafeBufferPointer { params.update(from: $0.baseAddress!, count: parameters.count) }
        for r in 0..<m { current[r] = shape.perChannel ? parameters[r] : GroupParameters(scale: 0, zero: 0) }
    }

    func deallocate() { raw.deallocate() }
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
}
