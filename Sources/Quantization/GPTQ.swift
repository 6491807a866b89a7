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
        let m = weight.rows
        let n = weight.cols
        let perChannel = recipe.isPerChannel
        let g = recipe.effectiveGroupSize(columns: n)
        let groups = recipe.groupCount(columns: n)
        var w = weight
        var h = hessian
        let zeroParams = GroupParameters(scale: 0, zero: 0)

        // 1. per-channel parameters from the untouched weights
        var params = [GroupParameters](repeating: zeroParams, count: m * groups)
        if perChannel {
            w.data.withUnsafeBufferPointer { wp in
                for r in 0..<m { params[r] = grid.fit(wp.baseAddress! + r * n, count: n, stride: 1) }
            }
        }

        // 2. dead columns
        var dead: [Int] = []
        for i in 0..<n where h.data[i * n + i] == 0 {
            dead.append(i)
            h.data[i * n + i] = 1
            for r in 0..<m { w.data[r * n + i] = 0 }
        }

        // 3. static groups
        if recipe.staticGroups {
            w.data.withUnsafeBufferPointer { wp in
                for r in 0..<m {
                    for k in 0..<groups {
                        let c0 = k * g
                        params[r * groups + k] = grid.fit(
                            wp.baseAddress! + r * n + c0, count: min(g, n - c0), stride: 1)
                    }
                }
            }
        }

        // 4. act-order permutation
        var perm = Array(0..<n)
        if recipe.actOrder {
            let diag = (0..<n).map { h.data[$0 * n + $0] }
            perm.sort { diag[$0] > diag[$1] || (diag[$0] == diag[$1] && $0 < $1) }
            var hp = Matrix(rows: n, cols: n)
            for i in 0..<n {
                let src = perm[i] * n
                for j in 0..<n { hp.data[i * n + j] = h.data[src + perm[j]] }
            }
            h = hp
        }

        // 5. dampening and the upper Cholesky factor of H^-1
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
        let hinv = h

        // W^T in the permuted column order: row c of wt is column perm[c] of W.
        var wt = [Float](repeating: 0, count: n * m)
        w.data.withUnsafeBufferPointer { wp in
            wt.withUnsafeMutableBufferPointer { tp in
                for c in 0..<n {
                    BLAS.copy(count: m, x: wp.baseAddress! + perm[c], incX: n, y: tp.baseAddress! + c * m, incY: 1)
                }
            }
        }

        let bs = recipe.blockSize
        // Columns per in-block sub-block (see the update below).
        let subBlock = 16
        var codesT = [UInt8](repeating: 0, count: n * m)
        var qT = [Float](repeating: 0, count: n * m)
        var lossT = [Float](repeating: 0, count: n * m)
        var w1 = [Float](repeating: 0, count: min(bs, n) * m)
        var err1 = [Float](repeating: 0, count: min(bs, n) * m)
        var current = [GroupParameters](repeating: zeroParams, count: m)
        if perChannel { for r in 0..<m { current[r] = params[r] } }

        hinv.data.withUnsafeBufferPointer { hb in
            let hp = hb.baseAddress!
            wt.withUnsafeMutableBufferPointer { wtb in
                let wtp = wtb.baseAddress!
                w1.withUnsafeMutableBufferPointer { w1b in
                    err1.withUnsafeMutableBufferPointer { eb in
                        codesT.withUnsafeMutableBufferPointer { cb in
                            qT.withUnsafeMutableBufferPointer { qb in
                                lossT.withUnsafeMutableBufferPointer { lb in
                                    params.withUnsafeMutableBufferPointer { pb in
                                        current.withUnsafeMutableBufferPointer { cur in
                                            for i1 in stride(from: 0, to: n, by: bs) {
                                                let i2 = min(i1 + bs, n)
                                                let count = i2 - i1
                                                w1b.baseAddress!.update(from: wtp + i1 * m, count: count * m)
                                                for i in 0..<count {
                                                    let c = i1 + i
                                                    if !perChannel {
                                                        if recipe.staticGroups {
                                                            let k = perm[c] / g
                                                            for r in 0..<m { cur[r] = pb[r * groups + k] }
                                                        } else if c % g == 0 {
                                                            let k = c / g
                                                            let len = min(g, n - c)
                                                            for r in 0..<m {
                                                                let p = grid.fit(wtp + c * m + r, count: len, stride: m)
                                                                cur[r] = p
                                                                pb[r * groups + k] = p
                                                            }
                                                        }
                                                    }
                                                    let d = hp[c * n + c]
                                                    let d2 = d * d
                                                    let wcol = w1b.baseAddress! + i * m
                                                    let ecol = eb.baseAddress! + i * m
                                                    let out = c * m
                                                    for r in 0..<m {
                                                        let x = wcol[r]
                                                        let code = grid.code(x, cur[r])
                                                        let q = grid.value(code, cur[r])
                                                        cb[out + r] = code
                                                        qb[out + r] = q
                                                        let diff = x - q
                                                        lb[out + r] = diff * diff / d2 / 2
                                                        ecol[r] = diff / d
                                                    }
                                                    // The error reaches the rest of its sub-block now (a rank-1 update) and
                                                    // the rest of the block at the sub-block's end (one sgemm): the same
                                                    // update as the reference's whole-block rank-1 steps, in fewer passes.
                                                    let subEnd = min((i / subBlock + 1) * subBlock, count)
                                                    let rest = subEnd - i - 1
                                                    if rest > 0 {
                                                        // W1[i+1..<subEnd] -= Hinv[c, c+1..<] (rest) outer err (m)
                                                        BLAS.ger(
                                                            m: rest, n: m, alpha: -1, x: hp + c * n + c + 1, y: ecol,
                                                            a: wcol + m, lda: m)
                                                    }
                                                    if i + 1 == subEnd && subEnd < count {
                                                        let s0 = i / subBlock * subBlock  // first column of this sub-block
                                                        // W1[subEnd..<count] -= Hinv[i1+s0..<i1+subEnd, i1+subEnd..<i2]^T * Err1[s0..<subEnd]
                                                        BLAS.gemm(
                                                            transA: true, transB: false, m: count - subEnd, n: m,
                                                            k: subEnd - s0, alpha: -1,
                                                            a: hp + (i1 + s0) * n + i1 + subEnd, lda: n,
                                                            b: eb.baseAddress! + s0 * m, ldb: m,
                                                            beta: 1, c: w1b.baseAddress! + subEnd * m, ldc: m)
                                                    }
                                                }
                                                if i2 < n {
                                                    // W[:, i2:] -= Err1 * Hinv[i1:i2, i2:]  (transposed: Wt[i2:] -= Hinv[i1:i2, i2:]^T * Err1^T)
                                                    BLAS.gemm(
                                                        transA: true, transB: false, m: n - i2, n: m, k: count,
                                                        alpha: -1,
                                                        a: hp + i1 * n + i2, lda: n, b: eb.baseAddress!, ldb: m,
                                                        beta: 1, c: wtp + i2 * m, ldc: m)
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        try Checks.scalesFit(params, groups: groups, recipe: recipe, tensor: name)

        // Back to [out, in] in the original column order.
        var codes = [UInt8](repeating: 0, count: m * n)
        var deq = Matrix(rows: m, cols: n)
        var losses = Matrix(rows: m, cols: n)
        var total = 0.0
        for c in 0..<n {
            let dst = perm[c]
            for r in 0..<m {
                codes[r * n + dst] = codesT[c * m + r]
                deq.data[r * n + dst] = qT[c * m + r]
                losses.data[r * n + dst] = lossT[c * m + r]
                total += Double(lossT[c * m + r])
            }
        }
        var gidx = [Int32](repeating: 0, count: n)
        if !perChannel {
            for c in 0..<n {
                if recipe.actOrder && !recipe.staticGroups {
                    gidx[perm[c]] = Int32(c / g)
                } else {
                    gidx[c] = Int32(c / g)
                }
            }
        }
        var permOut: [Int32]? = nil
        var invOut: [Int32]? = nil
        if recipe.actOrder {
            permOut = perm.map { Int32($0) }
            var inv = [Int32](repeating: 0, count: n)
            for (pos, col) in perm.enumerated() { inv[col] = Int32(pos) }
            invOut = inv
        }
        let qw = QuantizedWeight(
            rows: m, columns: n, recipe: recipe, groupSize: g, groupCount: groups, codes: codes,
            parameters: params, groupIndex: gidx, permutation: permOut,
            inversePermutation: invOut, dequantized: deq)
        return GPTQResult(weight: qw, losses: losses, totalLoss: total, deadColumns: dead, damp: damp)
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
}
