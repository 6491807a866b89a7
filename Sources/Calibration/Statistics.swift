import Dispatch
import Tensor

// Per-linear-input calibration statistics: the Hessian X^T X (GPTQ), per-channel
// absmax/min/max (AWQ, SmoothQuant, clipping) and token/sample counts. Every statistic
// is mergeable, and merging is exact: any grouping or order of shards gives a
// bit-identical result (see `HessianAccumulator`).

public enum StatisticsError: Error, CustomStringConvertible, Equatable {
    case columnMismatch(name: String, expected: Int, got: Int)
    case nonFiniteActivation(name: String, row: Int, column: Int, value: Float)
    case fixedPointOverflow(name: String, row: Int, column: Int)
    case invalidSamples(name: String, samples: Int)
    case invalidState(String)

    public var description: String {
        switch self {
        case let .columnMismatch(name, expected, got):
            return "statistics '\(name)': input has \(got) columns, expected \(expected)"
        case let .nonFiniteActivation(name, row, column, value):
            return "statistics '\(name)': non-finite activation \(value) at token row \(row), channel \(column)"
        case let .fixedPointOverflow(name, row, column):
            return
                "statistics '\(name)': Hessian entry (\(row), \(column)) exceeds the exact accumulator's range (|value| >= 2^62)"
        case let .invalidSamples(name, samples):
            return "statistics '\(name)': sample count \(samples) must be >= 1"
        case let .invalidState(detail):
            return "statistics: invalid serialized state: \(detail)"
        }
    }
}

/// How the final Hessian is scaled.
public enum HessianNormalization: String, Codable, Sendable {
    /// 2/N * X^T X with N the number of samples as the GPTQ reference counts them
    /// (`GPTQ.add_batch`: the leading batch dimension of each call; a 2-D `[tokens, in]`
    /// input counts as one sample). This is the H the reference hands to `fasterquant`.
    case referenceSamples
    /// 2/T * X^T X with T the number of token rows. With this scaling,
    /// trace(D H D^T) / 2 = sum((D X^T)^2) / T, the per-token output error.
    case tokens
}

/// Exact, order-independent accumulator of the Gram matrix X^T X of a linear's input.
///
/// Exactness approach: each batch's X_b^T X_b is computed with one `ssyrk` in Float32
/// (BLAS speed). Every Float32 entry of that batch result is then converted *exactly*
/// (for |v| >= 2^-40; smaller magnitudes are rounded to the nearest multiple of 2^-64,
/// a deterministic function of the batch alone) to a 128-bit two's-complement
/// fixed-point integer in units of 2^-64, and added with integer arithmetic. Integer
/// addition is associative and commutative, so merging shards in any grouping and any
/// order gives bit-identical accumulators, and so bit-identical Hessians. The only
/// rounding that depends on data layout is the per-batch Float32 `ssyrk`, which is a
/// function of that batch's rows only. Range: a single batch entry must stay below
/// 2^62 in magnitude and running sums below 2^63 (otherwise a clear error is thrown);
/// activations of LLMs are many orders of magnitude below that.
///
/// Storage: the upper triangle, packed row by row (entry (i, j >= i) at
/// `i*n - i*(i-1)/2 + (j-i)`), as two parallel arrays (`high` signed, `low` unsigned
/// words of value * 2^64). Plain arrays, so the cluster can ship them as raw frames.
public struct HessianAccumulator: Codable, Sendable, Equatable {
    public let columns: Int
    /// Samples as the GPTQ reference counts them (see `HessianNormalization`).
    public private(set) var samples: Int
    /// Token rows seen.
    public private(set) var tokens: Int
    public private(set) var high: [Int64]
    public private(set) var low: [UInt64]

    public init(columns: Int) {
        precondition(columns >= 0)
        self.columns = columns
        self.samples = 0
        self.tokens = 0
        let packed = columns * (columns + 1) / 2
        self.high = [Int64](repeating: 0, count: packed)
        self.low = [UInt64](repeating: 0, count: packed)
    }

    /// Rebuilds an accumulator from its raw arrays (as shipped by a peer).
    public init(columns: Int, samples: Int, tokens: Int, high: [Int64], low: [UInt64]) throws {
        // `columns` comes from a peer: bounded before the packed size, which could overflow.
        guard columns >= 0, columns < 1 << 31 else {
            throw StatisticsError.invalidState("Hessian of \(columns) columns is out of range")
        }
        let packed = columns * (columns + 1) / 2
        guard samples >= 0, tokens >= 0, high.count == packed, low.count == packed else {
            throw StatisticsError.invalidState(
                "Hessian of \(columns) columns needs \(packed) packed entries, got \(high.count)/\(low.count)")
        }
        self.columns = columns
        self.samples = samples
        self.tokens = tokens
        self.high = high
        self.low = low
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            columns: c.decode(Int.self, forKey: .columns), samples: c.decode(Int.self, forKey: .samples),
            tokens: c.decode(Int.self, forKey: .tokens), high: c.decode([Int64].self, forKey: .high),
            low: c.decode([UInt64].self, forKey: .low))
    }

    @inline(__always) public static func packedIndex(_ i: Int, _ j: Int, columns n: Int) -> Int {
        i * n - i * (i - 1) / 2 + (j - i)
    }

    /// Adds one batch of token rows `x` [tokens, columns]. `samples` is how many reference
    /// samples the batch holds (1 for a 2-D batch, the batch size for a [batch, seq, in] input).
    public mutating func add(_ x: Matrix, samples: Int = 1, name: String = "input") throws {
        guard x.cols == columns else {
            throw StatisticsError.columnMismatch(name: name, expected: columns, got: x.cols)
        }
        guard samples >= 1 else { throw StatisticsError.invalidSamples(name: name, samples: samples) }
        let n = columns
        if x.rows > 0 && n > 0 {
            var g = Matrix(rows: n, cols: n)
            BLAS.syrkTransposed(x, into: &g)
            // A NaN or infinity in x shows on the diagonal of its Gram matrix.
            for i in 0..<n where !g.data[i * n + i].isFinite {
                try Self.reportNonFinite(x, name: name)
            }
            try checkRange(g, name: name)
            try accumulate(g, name: name)
        }
        self.samples += samples
        self.tokens += x.rows
    }

    /// Range check up front, so the in-place add cannot fail half way.
    private func checkRange(_ g: Matrix, name: String) throws {
        let n = columns
        // Every |g_ij| <= max_i g_ii (Cauchy-Schwarz, with a factor-2 margin for Float32
        // rounding), and likewise for the running sums, so a new diagonal below 2^61
        // and running diagonals below 2^62 keep every entry below 2^63.
        var newMax: Float = 0
        var newArg = 0
        for i in 0..<n where g.data[i * n + i] > newMax {
            newMax = g.data[i * n + i]
            newArg = i
        }
        var accMax = 0.0
        for i in 0..<n {
            accMax = Swift.max(
                accMax,
                abs(
                    Fixed128(
                        high: high[Self.packedIndex(i, i, columns: n)], low: low[Self.packedIndex(i, i, columns: n)]
                    ).doubleValue))
        }
        guard Double(newMax) < 0x1p61, accMax + Double(newMax) < 0x1p62 else {
            throw StatisticsError.fixedPointOverflow(name: name, row: newArg, column: newArg)
        }
    }

    /// Adds the Gram matrix `g` [columns, columns] into the fixed-point triangle.
    private mutating func accumulate(_ g: Matrix, name: String) throws {
        let n = columns
        // In place (no copy of the accumulator per batch). Two halves of the packed
        // triangle in parallel (the second core is idle between BLAS calls); integer
        // adds, so the split cannot change the result.
        let total = n * (n + 1) / 2
        var split = 0
        while split < n && Self.packedIndex(split, split, columns: n) < total / 2 { split += 1 }
        let ranges = [0..<split, split..<n]
        let failures = UnsafeMutableBufferPointer<Int>.allocate(capacity: 2)
        defer { failures.deallocate() }
        failures.initialize(repeating: -1)
        g.data.withUnsafeBufferPointer { gb in
            high.withUnsafeMutableBufferPointer { hb in
                low.withUnsafeMutableBufferPointer { lb in
                    // Buffers cross into the concurrent closure as addresses: the parts write
                    // disjoint ranges of high, low and failures, and every buffer outlives the call.
                    let ga = UInt(bitPattern: gb.baseAddress)
                    let ha = UInt(bitPattern: hb.baseAddress)
                    let la = UInt(bitPattern: lb.baseAddress)
                    let fa = UInt(bitPattern: failures.baseAddress)
                    DispatchQueue.concurrentPerform(iterations: 2) { part in
                        guard let gp = UnsafePointer<Float>(bitPattern: ga),
                            let hp = UnsafeMutablePointer<Int64>(bitPattern: ha),
                            let lp = UnsafeMutablePointer<UInt64>(bitPattern: la),
                            let failures = UnsafeMutablePointer<Int>(bitPattern: fa)
                        else { return }
                        for i in ranges[part] {
                            let k = Self.packedIndex(i, i, columns: n)
                            if let j = Fixed128.accumulateRow(gp + i * n + i, count: n - i, high: hp + k, low: lp + k) {
                                failures[part] = i * n + i + j
                                return
                            }
                        }
                    }
                }
            }
        }
        // Unreachable after the range check; fail loudly rather than keep a bad sum.
        for f in failures where f >= 0 {
            throw StatisticsError.invalidState(
                "'\(name)': fixed-point overflow at (\(f / n), \(f % n)) after the range check passed; the accumulator is no longer valid"
            )
        }
    }

    private static func reportNonFinite(_ x: Matrix, name: String) throws {
        for r in 0..<x.rows {
            for c in 0..<x.cols where !x[r, c].isFinite {
                throw StatisticsError.nonFiniteActivation(name: name, row: r, column: c, value: x[r, c])
            }
        }
        // Finite inputs whose products overflow Float32.
        throw StatisticsError.fixedPointOverflow(name: name, row: 0, column: 0)
    }

    /// Adds another accumulator's sums (exact; associative and commutative).
    public mutating func merge(_ other: HessianAccumulator, name: String = "input") throws {
        guard other.columns == columns else {
            throw StatisticsError.columnMismatch(name: name, expected: columns, got: other.columns)
        }
        var newHigh = high
        var newLow = low
        for k in 0..<newHigh.count {
            guard
                let s = Fixed128(high: newHigh[k], low: newLow[k]).adding(
                    Fixed128(high: other.high[k], low: other.low[k]))
            else {
                let (i, j) = Self.unpack(k, columns: columns)
                throw StatisticsError.fixedPointOverflow(name: name, row: i, column: j)
            }
            newHigh[k] = s.high
            newLow[k] = s.low
        }
        high = newHigh
        low = newLow
        samples += other.samples
        tokens += other.tokens
    }

    public func merging(_ other: HessianAccumulator, name: String = "input") throws -> HessianAccumulator {
        var out = self
        try out.merge(other, name: name)
        return out
    }

    private static func unpack(_ k: Int, columns n: Int) -> (Int, Int) {
        var i = 0
        var start = 0
        while start + (n - i) <= k {
            start += n - i
            i += 1
        }
        return (i, i + (k - start))
    }

    /// The full symmetric sum X^T X in Float64 (row-major n x n).
    public func gram() -> [Double] {
        let n = columns
        var out = [Double](repeating: 0, count: n * n)
        var k = 0
        for i in 0..<n {
            for j in i..<n {
                let v = Fixed128(high: high[k], low: low[k]).doubleValue
                out[i * n + j] = v
                out[j * n + i] = v
                k += 1
            }
        }
        return out
    }

    /// The Hessian GPTQ consumes: 2/N * X^T X in Float32, scaled in Float64 and rounded once.
    /// An empty accumulator gives the zero matrix.
    public func hessian(normalization: HessianNormalization = .referenceSamples) -> Matrix {
        let n = columns
        let count = normalization == .referenceSamples ? samples : tokens
        let factor = count > 0 ? 2.0 / Double(count) : 0
        var out = Matrix(rows: n, cols: n)
        var k = 0
        for i in 0..<n {
            for j in i..<n {
                let v = Float(Fixed128(high: high[k], low: low[k]).doubleValue * factor)
                out.data[i * n + j] = v
                out.data[j * n + i] = v
                k += 1
            }
        }
        return out
    }
}

/// A 128-bit two's-complement fixed-point number in units of 2^-64.
struct Fixed128: Equatable {
    var high: Int64
    var low: UInt64

    init(high: Int64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The exact value of a finite Float32 (magnitudes below 2^-64 resolution are rounded
    /// half away from zero, deterministically); nil when |v| >= 2^62 or v is not finite.
    init?(exactly v: Float) {
        guard v.isFinite else { return nil }
        let bits = v.bitPattern
        let exponentBits = Int((bits >> 23) & 0xFF)
        var mantissa = UInt64(bits & 0x7F_FFFF)
        let exponent: Int
        if exponentBits == 0 {
            exponent = -149
        } else {
            mantissa |= 0x80_0000
            exponent = exponentBits - 150
        }
        var hi: UInt64 = 0
        var lo: UInt64 = 0
        if mantissa != 0 {
            let shift = exponent + 64  // value = mantissa * 2^exponent = (mantissa << shift) units
            if shift >= 0 {
                if shift + 24 > 126 { return nil }  // keep the sign bit and one bit of headroom
                if shift == 0 {
                    lo = mantissa
                } else if shift < 64 {
                    lo = mantissa << UInt64(shift)
                    hi = mantissa >> UInt64(64 - shift)
                } else {
                    hi = mantissa << UInt64(shift - 64)
                }
            } else {
                let s = -shift
                if s < 25 { lo = (mantissa + (UInt64(1) << UInt64(s - 1))) >> UInt64(s) }
            }
        }
        if v.sign == .minus && (hi != 0 || lo != 0) {
            lo = ~lo &+ 1
            hi = ~hi &+ (lo == 0 ? 1 : 0)
        }
        self.high = Int64(bitPattern: hi)
        self.low = lo
    }

    /// Adds the fixed-point value of `v` into (high, low) in place; false when |v| >= 2^62,
    /// v is not finite, or the sum leaves the 128-bit range. Same value and rounding as
    /// `init(exactly:)` (magnitude split into integer and fraction, the fraction scaled by
    /// 2^64 exactly and rounded half away from zero), without its bit fiddling: this is
    /// the hot loop of statistics collection.
    @inline(__always)
    static func accumulate(_ v: Float, high: inout Int64, low: inout UInt64) -> Bool {
        let m = v.magnitude
        guard m < 0x1p62 else { return false }  // also false for NaN and infinity
        let whole = m.rounded(.down)
        var hi = UInt64(whole)
        var lo = UInt64(((m - whole) * 0x1p64).rounded(.toNearestOrAwayFromZero))
        if v < 0 && (hi | lo) != 0 {
            lo = ~lo &+ 1
            hi = ~hi &+ (lo == 0 ? 1 : 0)
        }
        let (l, carry) = low.addingReportingOverflow(lo)
        let (h1, o1) = high.addingReportingOverflow(Int64(bitPattern: hi))
        let (h2, o2) = h1.addingReportingOverflow(carry ? 1 : 0)
        if o1 || o2 { return false }
        low = l
        high = h2
        return true
    }

    /// `accumulate` over `count` consecutive values into as many consecutive entries, in a loop
    /// without branches that the compiler vectorizes (`addend` is exactly the conversion
    /// `accumulate` does, checked over every Float32; the add and its overflow test are the same
    /// integer operations). Returns the index of the first entry `accumulate` would fail on, with
    /// the entries left as that in-order loop leaves them (those before it added, the rest not).
    @inline(__always)
    static func accumulateRow(
        _ g: UnsafePointer<Float>, count: Int, high: UnsafeMutablePointer<Int64>, low: UnsafeMutablePointer<UInt64>
    ) -> Int? {
        var failed: UInt64 = 0
        for j in 0..<count {
            let a = addend(g[j])
            let l = low[j] &+ a.low
            let carry: Int64 = l < a.low ? 1 : 0
            let h0 = high[j]
            let h1 = h0 &+ a.high
            let h2 = h1 &+ carry
            // Signed overflow of either add, as addingReportingOverflow reports it.
            let overflow = ((h0 ^ h1) & (a.high ^ h1)) | ((h1 ^ h2) & (carry ^ h2))
            failed |= a.bad | UInt64(bitPattern: overflow) &>> 63
            low[j] = l
            high[j] = h2
        }
        if failed == 0 { return nil }
        // Rare (the callers check the range first): every entry holds its old value plus its
        // addend (wrapping), so take the addends off again and redo the row in order.
        for j in 0..<count {
            let a = addend(g[j])
            let (l, borrow) = low[j].subtractingReportingOverflow(a.low)
            low[j] = l
            high[j] = high[j] &- a.high &- (borrow ? 1 : 0)
        }
        for j in 0..<count where !accumulate(g[j], high: &high[j], low: &low[j]) { return j }
        return nil
    }

    /// The two's-complement fixed-point value `accumulate` adds for `v`, from its bits: the
    /// 24-bit significand shifted into place (right shifts round half away from zero), negated
    /// for negative v. bad is 1 (and the value 0) when |v| >= 2^62 or v is not finite.
    @inline(__always)
    static func addend(_ v: Float) -> (high: Int64, low: UInt64, bad: UInt64) {
        let bits = UInt64(v.bitPattern)
        let e = (bits &>> 23) & 0xFF
        let bad: UInt64 = e >= 189 ? 1 : 0  // 2^62 = 2^(189 - 127)
        let significand = (bits & 0x7F_FFFF) | (e != 0 ? 0x80_0000 : 0)
        // value = significand * 2^shift units of 2^-64 (subnormals: exponent field 1)
        let shift = Int64(bitPattern: e == 0 ? 1 : e) &- 86
        let s = min(0 &- shift, 63)  // right shifts of 25 or more leave 0 either way
        let right = (significand &+ (1 &<< UInt64(bitPattern: (s &- 1) & 63))) &>> UInt64(bitPattern: s & 63)
        let left = significand &<< UInt64(bitPattern: shift & 63)
        let carried = significand &>> UInt64(bitPattern: (64 &- shift) & 63)
        let high = significand &<< UInt64(bitPattern: (shift &- 64) & 63)
        var lo = shift < 0 ? right : (shift < 64 ? left : 0)
        var hi = shift <= 0 ? 0 : (shift < 64 ? carried : high)
        lo = bad != 0 ? 0 : lo
        hi = bad != 0 ? 0 : hi
        let negative = 0 &- (bits &>> 31)  // all ones for a negative v
        let borrow = lo == 0 ? negative & 1 : 0
        lo = (lo ^ negative) &- negative
        hi = (hi ^ negative) &+ borrow
        return (Int64(bitPattern: hi), lo, bad)
    }

    /// Sum, or nil on overflow of the 128-bit range.
    func adding(_ o: Fixed128) -> Fixed128? {
        let (lo, carry) = low.addingReportingOverflow(o.low)
        let (h1, o1) = high.addingReportingOverflow(o.high)
        let (h2, o2) = h1.addingReportingOverflow(carry ? 1 : 0)
        if o1 || o2 { return nil }
        return Fixed128(high: h2, low: lo)
    }

    /// The value as a Double, converted from the magnitude so that small negative values
    /// do not cancel (hi = -1 with lo near 2^64 would lose everything below 2^-53).
    var doubleValue: Double {
        if high >= 0 { return Double(high) + Double(low) * 0x1p-64 }
        let lo = ~low &+ 1
        let hi = ~UInt64(bitPattern: high) &+ (lo == 0 ? 1 : 0)
        return -(Double(hi) + Double(lo) * 0x1p-64)
    }
}

/// Per-channel (per input column) absmax, min and max over all tokens seen, and the sum
/// of |x| (AWQ's mean |x|). Merge is max/min and an exact fixed-point sum, so it is
/// order-independent. The arrays are empty until the first token arrives (so no
/// infinities need serializing).
public struct ChannelStatistics: Codable, Sendable, Equatable {
    public let columns: Int
    public private(set) var tokens: Int
    public private(set) var absMax: [Float]
    public private(set) var min: [Float]
    public private(set) var max: [Float]
    /// Sum of |x| per column as 128-bit fixed point (units of 2^-64, as the Hessian): each
    /// window's Float32 column sums (a function of the window alone) added exactly. Empty
    /// while tokens == 0, and in statistics from a version that did not gather it (merging
    /// such a part drops the sum: it would no longer cover every token).
    public private(set) var absSumHigh: [Int64]
    public private(set) var absSumLow: [UInt64]

    public init(columns: Int) {
        self.columns = columns
        self.tokens = 0
        self.absMax = []
        self.min = []
        self.max = []
        self.absSumHigh = []
        self.absSumLow = []
    }

    public init(
        columns: Int, tokens: Int, absMax: [Float], min: [Float], max: [Float], absSumHigh: [Int64] = [],
        absSumLow: [UInt64] = []
    ) throws {
        let expected = tokens > 0 ? columns : 0
        guard absMax.count == expected, min.count == expected, max.count == expected else {
            throw StatisticsError.invalidState(
                "channel statistics of \(columns) columns and \(tokens) tokens need \(expected) values per array")
        }
        guard absSumHigh.count == absSumLow.count, absSumHigh.isEmpty || absSumHigh.count == expected else {
            throw StatisticsError.invalidState(
                "channel statistics of \(columns) columns and \(tokens) tokens: |x| sums of \(absSumHigh.count)/\(absSumLow.count) words, expected none or \(expected)"
            )
        }
        if let c = absSumHigh.firstIndex(where: { $0 < 0 }) {
            throw StatisticsError.invalidState("channel statistics: the |x| sum of column \(c) is negative")
        }
        self.columns = columns
        self.tokens = tokens
        self.absMax = absMax
        self.min = min
        self.max = max
        self.absSumHigh = absSumHigh
        self.absSumLow = absSumLow
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            columns: c.decode(Int.self, forKey: .columns), tokens: c.decode(Int.self, forKey: .tokens),
            absMax: c.decode([Float].self, forKey: .absMax), min: c.decode([Float].self, forKey: .min),
            max: c.decode([Float].self, forKey: .max),
            absSumHigh: c.decodeIfPresent([Int64].self, forKey: .absSumHigh) ?? [],
            absSumLow: c.decodeIfPresent([UInt64].self, forKey: .absSumLow) ?? [])
    }

    /// Whether the |x| sums cover every token seen (always when there are none).
    public var hasAbsSum: Bool { tokens == 0 || absSumHigh.count == columns }

    /// mean |x| per column (the sum over the tokens), nil without tokens or sums.
    public var meanAbs: [Float]? {
        guard tokens > 0, absSumHigh.count == columns else { return nil }
        let t = Double(tokens)
        return (0..<columns).map { Float(Fixed128(high: absSumHigh[$0], low: absSumLow[$0]).doubleValue / t) }
    }

    public mutating func add(_ x: Matrix, name: String = "input") throws {
        guard x.cols == columns else {
            throw StatisticsError.columnMismatch(name: name, expected: columns, got: x.cols)
        }
        if x.rows == 0 { return }
        var lo = min.isEmpty ? Array(x.data[0..<columns]) : min
        var hi = max.isEmpty ? Array(x.data[0..<columns]) : max
        var sums = [Float](repeating: 0, count: columns)
        // Column-wise reductions over token rows (no BLAS routine computes a per-column
        // min/max), eight lanes at a time. `poison` collects v * 0, which is NaN exactly
        // when some v is NaN or infinite (min/max would silently drop a NaN).
        let n = columns
        let wide = n / 8 * 8
        var poison = SIMD8<Float>()
        x.data.withUnsafeBufferPointer { xp in
            lo.withUnsafeMutableBufferPointer { lp in
                hi.withUnsafeMutableBufferPointer { hp in
                    sums.withUnsafeMutableBufferPointer { sp in
                        let xr = UnsafeRawPointer(xp.baseAddress!)
                        let lr = UnsafeMutableRawPointer(lp.baseAddress!)
                        let hr = UnsafeMutableRawPointer(hp.baseAddress!)
                        let sr = UnsafeMutableRawPointer(sp.baseAddress!)
                        var c = 0
                        while c < wide {
                            var l = lr.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self)
                            var h = hr.loadUnaligned(fromByteOffset: c * 4, as: SIMD8<Float>.self)
                            var a = SIMD8<Float>()
                            for r in 0..<x.rows {
                                let v = xr.loadUnaligned(fromByteOffset: (r * n + c) * 4, as: SIMD8<Float>.self)
                                l = pointwiseMin(l, v)
                                h = pointwiseMax(h, v)
                                a += pointwiseMax(v, -v)
                                poison += v * 0
                            }
                            lr.storeBytes(of: l, toByteOffset: c * 4, as: SIMD8<Float>.self)
                            hr.storeBytes(of: h, toByteOffset: c * 4, as: SIMD8<Float>.self)
                            sr.storeBytes(of: a, toByteOffset: c * 4, as: SIMD8<Float>.self)
                            c += 8
                        }
                        for c in wide..<n {
                            for r in 0..<x.rows {
                                let v = xp[r * n + c]
                                lp[c] = Swift.min(lp[c], v)
                                hp[c] = Swift.max(hp[c], v)
                                sp[c] += v.magnitude
                                poison[0] += v * 0
                            }
                        }
                    }
                }
            }
        }
        if !poison.sum().isFinite {
            for r in 0..<x.rows {
                for c in 0..<n where !x.data[r * n + c].isFinite {
                    throw StatisticsError.nonFiniteActivation(name: name, row: r, column: c, value: x.data[r * n + c])
                }
            }
        }
        // The batch's sums added exactly (a window's sum is below 2^62 unless its
        // activations are absurd: checked like the Hessian's range).
        var sumHigh = tokens == 0 ? [Int64](repeating: 0, count: n) : absSumHigh
        var sumLow = tokens == 0 ? [UInt64](repeating: 0, count: n) : absSumLow
        let keepSums = tokens == 0 || absSumHigh.count == n
        if keepSums {
            for c in 0..<n where !Fixed128.accumulate(sums[c], high: &sumHigh[c], low: &sumLow[c]) {
                throw StatisticsError.fixedPointOverflow(name: name, row: c, column: c)
            }
        }
        min = lo
        max = hi
        absMax = (0..<columns).map { Swift.max(-lo[$0], hi[$0]) }
        absSumHigh = keepSums ? sumHigh : []
        absSumLow = keepSums ? sumLow : []
        tokens += x.rows
    }

    public mutating func merge(_ other: ChannelStatistics, name: String = "input") throws {
        guard other.columns == columns else {
            throw StatisticsError.columnMismatch(name: name, expected: columns, got: other.columns)
        }
        if other.tokens == 0 { return }
        if tokens == 0 {
            self = other
            return
        }
        var sumHigh = absSumHigh
        var sumLow = absSumLow
        if hasAbsSum && other.hasAbsSum {
            for c in 0..<columns {
                guard
                    let v = Fixed128(high: sumHigh[c], low: sumLow[c]).adding(
                        Fixed128(high: other.absSumHigh[c], low: other.absSumLow[c]))
                else { throw StatisticsError.fixedPointOverflow(name: name, row: c, column: c) }
                sumHigh[c] = v.high
                sumLow[c] = v.low
            }
        } else {
            sumHigh = []
            sumLow = []
        }
        for c in 0..<columns {
            min[c] = Swift.min(min[c], other.min[c])
            max[c] = Swift.max(max[c], other.max[c])
            absMax[c] = Swift.max(absMax[c], other.absMax[c])
        }
        absSumHigh = sumHigh
        absSumLow = sumLow
        tokens += other.tokens
    }
}

/// All statistics of one linear input (q, k, v share one; gate, up share one).
public struct LinearStatistics: Codable, Sendable, Equatable {
    /// Names the input in error messages, e.g. "blk.3.attn_qkv.input".
    public var name: String
    public private(set) var hessian: HessianAccumulator
    public private(set) var channels: ChannelStatistics

    public init(name: String, columns: Int) {
        self.name = name
        self.hessian = HessianAccumulator(columns: columns)
        self.channels = ChannelStatistics(columns: columns)
    }

    public init(name: String, hessian: HessianAccumulator, channels: ChannelStatistics) throws {
        guard hessian.columns == channels.columns, hessian.tokens == channels.tokens else {
            throw StatisticsError.invalidState(
                "'\(name)': Hessian (\(hessian.columns) columns, \(hessian.tokens) tokens) and channel statistics (\(channels.columns), \(channels.tokens)) disagree"
            )
        }
        self.name = name
        self.hessian = hessian
        self.channels = channels
    }

    public var columns: Int { hessian.columns }
    public var tokens: Int { hessian.tokens }
    public var samples: Int { hessian.samples }

    /// Adds a batch of token rows [tokens, columns]; `samples` as in `HessianAccumulator.add`.
    public mutating func add(_ x: Matrix, samples: Int = 1) throws {
        // The channel statistics into a copy first (small); the Hessian in place, and it
        // either adds everything or throws before changing anything.
        var c = channels
        try c.add(x, name: name)
        try hessian.add(x, samples: samples, name: name)
        channels = c
    }

    public mutating func merge(_ other: LinearStatistics) throws {
        var h = hessian
        var c = channels
        try h.merge(other.hessian, name: name)
        try c.merge(other.channels, name: name)
        hessian = h
        channels = c
    }

    /// Merges shards in the order given (the result does not depend on that order).
    public static func merged(_ parts: [LinearStatistics]) throws -> LinearStatistics {
        guard var out = parts.first else { throw StatisticsError.invalidState("nothing to merge") }
        for p in parts.dropFirst() { try out.merge(p) }
        return out
    }

    public func finalHessian(normalization: HessianNormalization = .referenceSamples) -> Matrix {
        hessian.hessian(normalization: normalization)
    }
}
