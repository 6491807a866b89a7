// ggml's K-quant super-blocks (llama.cpp ggml/src/ggml-common.h, block_q{2..6}_K): 256 values in
// 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 8 of 32 (Q4_K, Q5_K), each with a small integer scale
// (and, for Q2_K/Q4_K/Q5_K, a min) that multiplies the fp16 super-block d (dmin). Layouts, all
// little-endian, no padding:
//
//   Q2_K  84 B: scales[16] (low nibble scale, high nibble min), qs[64] (2-bit), d, dmin
//               x = d*sc * q - dmin*m
//   Q3_K 110 B: hmask[32] (third bit), qs[64] (low 2 bits), scales[12] (16 x 6 bit), d
//               x = d*(sc - 32) * (q - 4)
//   Q4_K 144 B: d, dmin, scales[12] (8 x 6-bit scale + 8 x 6-bit min), qs[128] (nibbles)
//               x = d*sc * q - dmin*m
//   Q5_K 176 B: d, dmin, scales[12], qh[32] (fifth bit), qs[128]
//   Q6_K 210 B: ql[128] (low nibbles), qh[64] (high 2 bits), scales[16] (int8), d
//               x = d*sc * (q - 32)
//
// Where the codes of value j sit: the 2-bit planes (Q2_K, Q3_K's qs, Q6_K's qh) hold, for each
// half of 128 values, byte l = values l, l+32, l+64, l+96 at bit 0, 2, 4, 6; nibble planes hold
// byte l = value l (low), l+32 (high) of each 64; Q3_K's hmask bit j/32 of byte j%32; Q5_K's qh
// bit 2g (value 64g + l) and 2g+1 (value 64g + 32 + l) of byte l. Every packing is a bijection
// on the block's bits, so any bytes unpack and pack back unchanged.

/// The five K-quant types Kiln writes.
public enum KQuantType: String, Sendable, CaseIterable, Equatable {
    case q2_K = "Q2_K", q3_K = "Q3_K", q4_K = "Q4_K", q5_K = "Q5_K", q6_K = "Q6_K"

    /// Values per super-block (ggml's QK_K).
    public static let superBlockSize = 256

    public var bits: Int {
        switch self {
        case .q2_K: return 2
        case .q3_K: return 3
        case .q4_K: return 4
        case .q5_K: return 5
        case .q6_K: return 6
        }
    }

    public var subBlockSize: Int { self == .q4_K || self == .q5_K ? 32 : 16 }
    public var subBlockCount: Int { Self.superBlockSize / subBlockSize }
    public var maxCode: Int { (1 << bits) - 1 }
    /// Q3_K and Q6_K are symmetric: value = (code - offset) * scale. The others subtract a min.
    public var codeOffset: Int {
        switch self {
        case .q3_K: return 4
        case .q6_K: return 32
        default: return 0
        }
    }
    public var hasMins: Bool { codeOffset == 0 }

    public var blockBytes: Int {
        switch self {
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        }
    }
}

/// One K-quant super-block, decoded: the fp16 fields as bit patterns and every integer as the
/// dequantizer uses it. `pack` writes ggml's bytes; `init(type:packed:)` reads them.
public struct KQuantBlock: Sendable, Equatable {
    public var type: KQuantType
    /// Super-block scale d (fp16 bits).
    public var d: UInt16
    /// Super-block min scale dmin (fp16 bits); 0 for Q3_K and Q6_K, which have none.
    public var dmin: UInt16
    /// One per sub-block, the signed factor of d: Q2_K 0...15, Q3_K -32...31, Q4_K/Q5_K 0...63,
    /// Q6_K -128...127.
    public var scales: [Int8]
    /// One per sub-block, the factor of dmin (Q2_K 0...15, Q4_K/Q5_K 0...63); empty for Q3_K, Q6_K.
    public var mins: [UInt8]
    /// 256 codes, 0...maxCode (Q3_K and Q6_K stored with their offset added).
    public var codes: [UInt8]

    public init(type: KQuantType, d: UInt16, dmin: UInt16 = 0, scales: [Int8], mins: [UInt8] = [], codes: [UInt8]) {
        self.type = type
        self.d = d
        self.dmin = dmin
        self.scales = scales
        self.mins = mins
        self.codes = codes
    }

    /// Each sub-block's effective parameters as `KQuantGrid` reads them: value = code * scale - zero
    /// (zero = dmin * m) for Q2_K/Q4_K/Q5_K, (code - zero) * scale (zero = the code offset) for
    /// Q3_K/Q6_K; scale = d * sc. The same Float32 products as ggml's dequantize_row_q*_K.
    public var groupParameters: [GroupParameters] {
        let dd = Float(Float16(bitPattern: d))
        let dm = Float(Float16(bitPattern: dmin))
        return (0..<type.subBlockCount).map { j in
            GroupParameters(
                scale: dd * Float(scales[j]), zero: type.hasMins ? dm * Float(mins[j]) : Float(type.codeOffset))
        }
    }

    /// The 256 values the block decodes to (equal to ggml's dequantizer's).
    public var values: [Float] {
        let grid = KQuantGrid(type)
        let params = groupParameters
        return (0..<KQuantType.superBlockSize).map { i in grid.value(codes[i], params[i / type.subBlockSize]) }
    }
}

extension KQuantBlock {
    /// ggml's bytes of the block (`type.blockBytes` of them) at `out`. Fields out of their range
    /// are stored masked to their bits.
    public func pack(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= type.blockBytes && codes.count == 256 && scales.count == type.subBlockCount)
        out.initializeMemory(as: UInt8.self, repeating: 0)
        func put16(_ v: UInt16, _ o: Int) {
            out[o] = UInt8(v & 0xFF)
            out[o + 1] = UInt8(v >> 8)
        }
        let q = codes
        switch type {
        case .q2_K:
            for j in 0..<16 { out[j] = (UInt8(bitPattern: scales[j]) & 0xF) | (mins[j] &<< 4) }
            KQuantLayout.putPlanes2(q, mask: 3, into: out, at: 16)
            put16(d, 80)
            put16(dmin, 82)
        case .q3_K:
            for j in 0..<256 where q[j] & 4 != 0 { out[j % 32] |= 1 << (j / 32) }
            KQuantLayout.putPlanes2(q, mask: 3, into: out, at: 32)
            let stored = scales.map { UInt8(truncatingIfNeeded: Int($0) + 32) & 63 }
            for (k, b) in KQuantLayout.scaleBytes3(stored).enumerated() { out[96 + k] = b }
            put16(d, 108)
        case .q4_K, .q5_K:
            put16(d, 0)
            put16(dmin, 2)
            let ls = scales.map { UInt8(bitPattern: $0) & 63 }
            for (k, b) in KQuantLayout.scaleMinBytes(ls, mins.map { $0 & 63 }).enumerated() { out[4 + k] = b }
            let qs = type == .q5_K ? 48 : 16
            for g in 0..<4 {
                for l in 0..<32 {
                    let a = q[64 * g + l]
                    let b = q[64 * g + 32 + l]
                    out[qs + 32 * g + l] = (a & 0xF) | (b &<< 4)
                    if type == .q5_K { out[16 + l] |= ((a >> 4) & 1) << (2 * g) | ((b >> 4) & 1) << (2 * g + 1) }
                }
            }
        case .q6_K:
            for h in 0..<2 {
                for l in 0..<32 {
                    let c = (0..<4).map { q[128 * h + l + 32 * $0] }
                    out[64 * h + l] = (c[0] & 0xF) | (c[2] &<< 4)
                    out[64 * h + l + 32] = (c[1] & 0xF) | (c[3] &<< 4)
                    out[128 + 32 * h + l] =
                        (c[0] >> 4 & 3) | (c[1] >> 4 & 3) << 2 | (c[2] >> 4 & 3) << 4 | (c[3] >> 4) << 6
                }
            }
            for j in 0..<16 { out[192 + j] = UInt8(bitPattern: scales[j]) }
            put16(d, 208)
        }
    }

    public var packed: [UInt8] {
        var b = [UInt8](repeating: 0, count: type.blockBytes)
        b.withUnsafeMutableBytes { pack(into: $0) }
        return b
    }

    /// Decodes the `type.blockBytes` bytes at `p`.
    public init(type: KQuantType, packed p: UnsafeRawBufferPointer) {
        precondition(p.count >= type.blockBytes)
        func get16(_ o: Int) -> UInt16 { UInt16(p[o]) | UInt16(p[o + 1]) << 8 }
        var codes = [UInt8](repeating: 0, count: 256)
        var scales: [Int8] = []
        var mins: [UInt8] = []
        var d: UInt16 = 0
        var dmin: UInt16 = 0
        switch type {
        case .q2_K:
            scales = (0..<16).map { Int8(p[$0] & 0xF) }
            mins = (0..<16).map { p[$0] >> 4 }
            KQuantLayout.getPlanes2(p, at: 16, into: &codes)
            d = get16(80)
            dmin = get16(82)
        case .q3_K:
            KQuantLayout.getPlanes2(p, at: 32, into: &codes)
            for j in 0..<256 where p[j % 32] & (1 << (j / 32)) != 0 { codes[j] |= 4 }
            scales = KQuantLayout.scales3(Array(p[96..<108])).map { Int8($0) - 32 }
            d = get16(108)
        case .q4_K, .q5_K:
            d = get16(0)
            dmin = get16(2)
            let (ls, lm) = KQuantLayout.scalesMins(Array(p[4..<16]))
            scales = ls.map { Int8($0) }
            mins = lm
            let qs = type == .q5_K ? 48 : 16
            for g in 0..<4 {
                for l in 0..<32 {
                    let v = p[qs + 32 * g + l]
                    let h: UInt8 = type == .q5_K ? p[16 + l] >> (2 * g) : 0
                    codes[64 * g + l] = (v & 0xF) | (h & 1) << 4
                    codes[64 * g + 32 + l] = (v >> 4) | (h >> 1 & 1) << 4
                }
            }
        case .q6_K:
            for h in 0..<2 {
                for l in 0..<32 {
                    let a = p[64 * h + l]
                    let b = p[64 * h + l + 32]
                    let hi = p[128 + 32 * h + l]
                    codes[128 * h + l] = (a & 0xF) | (hi & 3) << 4
                    codes[128 * h + l + 32] = (b & 0xF) | (hi >> 2 & 3) << 4
                    codes[128 * h + l + 64] = (a >> 4) | (hi >> 4 & 3) << 4
                    codes[128 * h + l + 96] = (b >> 4) | (hi >> 6) << 4
                }
            }
            scales = (0..<16).map { Int8(bitPattern: p[192 + $0]) }
            d = get16(208)
        }
        self.init(type: type, d: d, dmin: dmin, scales: scales, mins: mins, codes: codes)
    }
}

/// The bit-level pieces shared by packing, unpacking and the quantizers (which build the scale
/// bytes exactly as ggml's C does, wrap-arounds included, then decode them).
enum KQuantLayout {
    /// 2-bit planes: for each half of 128 values, byte l holds values l, l+32, l+64, l+96.
    static func putPlanes2(_ q: [UInt8], mask: UInt8, into out: UnsafeMutableRawBufferPointer, at o: Int) {
        for h in 0..<2 {
            for l in 0..<32 {
                let base = 128 * h + l
                out[o + 32 * h + l] =
                    (q[base] & mask) | (q[base + 32] & mask) << 2 | (q[base + 64] & mask) << 4 | (q[base + 96] & mask)
                    << 6
            }
        }
    }

    static func getPlanes2(_ p: UnsafeRawBufferPointer, at o: Int, into codes: inout [UInt8]) {
        for h in 0..<2 {
            for l in 0..<32 {
                let v = p[o + 32 * h + l]
                for k in 0..<4 { codes[128 * h + l + 32 * k] = v >> (2 * k) & 3 }
            }
        }
    }

    /// Q4_K/Q5_K's 12 bytes of eight 6-bit scales and mins, as quantize_row_q4_K_ref packs them
    /// (C's int arithmetic stored into uint8: out-of-range inputs wrap as they do there).
    static func scaleMinBytes(_ ls: [UInt8], _ lm: [UInt8]) -> [UInt8] {
        var s = [UInt8](repeating: 0, count: 12)
        for j in 0..<8 {
            if j < 4 {
                s[j] = ls[j]
                s[j + 4] = lm[j]
            } else {
                s[j + 4] = (ls[j] & 0xF) | (lm[j] & 0xF) &<< 4
                s[j - 4] |= (ls[j] >> 4) &<< 6
                s[j] |= (lm[j] >> 4) &<< 6
            }
        }
        return s
    }

    /// The inverse of `scaleMinBytes` (ggml's get_scale_min_k4).
    static func scalesMins(_ s: [UInt8]) -> ([UInt8], [UInt8]) {
        var ls = [UInt8](repeating: 0, count: 8)
        var lm = [UInt8](repeating: 0, count: 8)
        for j in 0..<8 {
            if j < 4 {
                ls[j] = s[j] & 63
                lm[j] = s[j + 4] & 63
            } else {
                ls[j] = (s[j + 4] & 0xF) | (s[j - 4] >> 6) << 4
                lm[j] = (s[j + 4] >> 4) | (s[j] >> 6) << 4
            }
        }
        return (ls, lm)
    }

    /// Q3_K's 12 bytes of sixteen 6-bit stored scales (sc + 32): low nibbles of j < 8 in byte j,
    /// of j >= 8 in the high nibble of byte j - 8, the top two bits in byte 8 + j%4 at bit 2*(j/4).
    static func scaleBytes3(_ stored: [UInt8]) -> [UInt8] {
        var s = [UInt8](repeating: 0, count: 12)
        for j in 0..<16 {
            let l = stored[j]
            if j < 8 { s[j] = l & 0xF } else { s[j - 8] |= (l & 0xF) << 4 }
            s[8 + j % 4] |= (l >> 4) &<< (2 * (j / 4))
        }
        return s
    }

    static func scales3(_ s: [UInt8]) -> [UInt8] {
        (0..<16).map { j in
            let low = j < 8 ? s[j] & 0xF : s[j - 8] >> 4
            return low | (s[8 + j % 4] >> (2 * (j / 4)) & 3) << 4
        }
    }
}
