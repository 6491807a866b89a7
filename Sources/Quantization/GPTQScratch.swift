import Tensor

/// Every buffer one GPTQ run touches, in one allocation, column-major ([in, out]) so a
/// column is contiguous: W^T in sweep order, the block copy W1 and its scaled errors, the
/// Hessian and its factorization in place (column-major, as LAPACK works on it; read
/// row-major that is Hinv^T, which the sweep uses as is), the values, losses and codes
/// (at their original column), and the group parameters, group-major ([groups, m]) so one
/// group's parameters for every row are contiguous.
/// Data moves in and out by whole-matrix transposes and row copies, not strided loops.
struct GPTQScratch {
    let wt: UnsafeMutablePointer<Float>
    let w1: UnsafeMutablePointer<Float>
    let err: UnsafeMutablePointer<Float>
    let factor: UnsafeMutablePointer<Float>
    /// After `GPTQ.dampAndFactor`, `factor` read row-major: Hinv^T (lower triangle).
    var hinvT: UnsafeMutablePointer<Float> { factor }
    let q: UnsafeMutablePointer<Float>
    let loss: UnsafeMutablePointer<Float>
    let params: UnsafeMutablePointer<GroupParameters>
    let codes: UnsafeMutablePointer<UInt8>
    private let raw: UnsafeMutableRawPointer
    private let shape: GPTQShape

    init(_ s: GPTQShape) {
        let mn = s.m * s.n
        let block = min(s.blockSize, s.n) * s.m
        let floats = 3 * mn + 2 * block + s.n * s.n
        let parameters = s.m * s.groups
        let bytes = floats * MemoryLayout<Float>.stride + parameters * MemoryLayout<GroupParameters>.stride + mn
        raw = HugePages.allocate(byteCount: bytes)
        let f = raw.bindMemory(to: Float.self, capacity: floats)
        wt = f
        q = f + mn
        loss = f + 2 * mn
        w1 = f + 3 * mn
        err = w1 + block
        factor = err + block
        let p = (raw + floats * MemoryLayout<Float>.stride).bindMemory(to: GroupParameters.self, capacity: parameters)
        p.initialize(repeating: GroupParameters(scale: 0, zero: 0), count: parameters)
        params = p
        codes = (raw + floats * MemoryLayout<Float>.stride + parameters * MemoryLayout<GroupParameters>.stride)
            .bindMemory(to: UInt8.self, capacity: mn)
        shape = s
    }

    func deallocate() { raw.deallocate() }

    /// H with rows and columns in sweep order into `factor`, column-major: factor[j * n + i] =
    /// H[perm[i], perm[j]].
    func loadHessian(_ h: Matrix, permutation perm: [Int]?) {
        let n = shape.n
        h.data.withUnsafeBufferPointer { hp in
            let base = hp.baseAddress!
            guard let perm else {
                BLAS.transpose(rows: n, cols: n, a: base, lda: n, b: factor, ldb: n)
                return
            }
            permutedTranspose(base, ld: n, rows: perm, columns: perm, into: factor)
        }
    }

    /// W^T in sweep order: row c of `wt` is column perm[c] of W.
    func loadWeight(_ w: Matrix, permutation perm: [Int]?) {
        let m = shape.m
        let n = shape.n
        w.data.withUnsafeBufferPointer { wp in
            guard let perm else {
                BLAS.transpose(rows: m, cols: n, a: wp.baseAddress!, lda: n, b: wt, ldb: m)
                return
            }
            permutedTranspose(wp.baseAddress!, ld: n, rows: Array(0..<m), columns: perm, into: wt)
        }
    }

    /// The group parameters as the result stores them, [m, groups].
    func rowMajorParameters() -> [GroupParameters] {
        let m = shape.m
        let groups = shape.groups
        return [GroupParameters](unsafeUninitializedCapacity: m * groups) { out, count in
            for r in 0..<m {
                for k in 0..<groups { (out.baseAddress! + r * groups + k).initialize(to: params[k * m + r]) }
            }
            count = m * groups
        }
    }

    /// Back to [out, in]: the values, losses and codes are already in original column order
    /// (`GPTQ.quantizeColumn` stores them there), so one transpose each.
    func result(
        parameters: [GroupParameters], totalLoss: Double, dead: [Int], damp: Float, permutation perm: [Int]
    ) -> GPTQResult {
        let s = shape
        let m = s.m
        let n = s.n
        func transposed(_ src: UnsafeMutablePointer<Float>) -> Matrix {
            let data = [Float](unsafeUninitializedCapacity: m * n) { out, count in
                HugePages.advise(out.baseAddress!, byteCount: m * n * MemoryLayout<Float>.stride)
                BLAS.transpose(rows: n, cols: m, a: src, lda: m, b: out.baseAddress!, ldb: n)
                count = m * n
            }
            return Matrix(rows: m, cols: n, data: data)
        }
        let deq = transposed(q)
        let losses = transposed(loss)
        let codesOut = [UInt8](unsafeUninitializedCapacity: m * n) { out, count in
            HugePages.advise(out.baseAddress!, byteCount: m * n)
            transposeBytes(rows: n, cols: m, codes, out.baseAddress!)
            count = m * n
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
            rows: m, columns: n, recipe: s.recipe, groupSize: s.g, groupCount: s.groups, codes: codesOut,
            parameters: parameters, groupIndex: gidx, permutation: permOut,
            inversePermutation: invOut, dequantized: deq)
        return GPTQResult(weight: qw, losses: losses, totalLoss: totalLoss, deadColumns: dead, damp: damp)
    }
}

/// dst[j * rows.count + i] = src[rows[i] * ld + columns[j]]: a transpose with rows and
/// columns picked in the given orders, in one pass over tiles of 16 source rows (they stay
/// cached while each destination row gets a whole cache line of them).
private func permutedTranspose(
    _ src: UnsafePointer<Float>, ld: Int, rows: [Int], columns: [Int], into dst: UnsafeMutablePointer<Float>
) {
    let tile = 16
    let count = rows.count
    var tileRows = [UnsafePointer<Float>](repeating: src, count: tile)
    rows.withUnsafeBufferPointer { rp in
        columns.withUnsafeBufferPointer { cp in
            for i0 in stride(from: 0, to: count, by: tile) {
                let t = min(tile, count - i0)
                for k in 0..<t { tileRows[k] = src + rp[i0 + k] * ld }
                tileRows.withUnsafeBufferPointer { r in
                    for j in 0..<cp.count {
                        let column = cp[j]
                        let out = dst + j * count + i0
                        for k in 0..<t { out[k] = r[k][column] }
                    }
                }
            }
        }
    }
}

/// b = a^T for bytes: a is rows x cols, b is cols x rows, both dense. Blocks of 8 x 8 are
/// transposed inside eight UInt64 words (three rounds of masked swaps); the edges bytewise.
private func transposeBytes(rows: Int, cols: Int, _ a: UnsafePointer<UInt8>, _ b: UnsafeMutablePointer<UInt8>) {
    let rows8 = rows / 8 * 8
    let cols8 = cols / 8 * 8
    let src = UnsafeRawPointer(a)
    let dst = UnsafeMutableRawPointer(b)
    for r0 in stride(from: 0, to: rows8, by: 8) {
        for c0 in stride(from: 0, to: cols8, by: 8) {
            var w = SIMD8<UInt64>()
            for k in 0..<8 { w[k] = src.loadUnaligned(fromByteOffset: (r0 + k) * cols + c0, as: UInt64.self) }
            swapRound(&w, shift: 8, mask: 0x00FF_00FF_00FF_00FF)
            swapRound(&w, shift: 16, mask: 0x0000_FFFF_0000_FFFF)
            swapRound(&w, shift: 32, mask: 0x0000_0000_FFFF_FFFF)
            for k in 0..<8 { dst.storeBytes(of: w[k], toByteOffset: (c0 + k) * rows + r0, as: UInt64.self) }
        }
    }
    for r in 0..<rows {
        for c in (r < rows8 ? cols8 : 0)..<cols { b[c * rows + r] = a[r * cols + c] }
    }
}

/// One round of the 8 x 8 byte transpose: words i and i + shift/8 (i with that bit clear)
/// swap their off-diagonal `shift`-bit units.
@inline(__always)
private func swapRound(_ w: inout SIMD8<UInt64>, shift: UInt64, mask: UInt64) {
    let step = Int(shift / 8)
    for i in 0..<8 where i & step == 0 {
        let t = ((w[i] >> shift) ^ w[i + step]) & mask
        w[i + step] ^= t
        w[i] ^= t << shift
    }
}
