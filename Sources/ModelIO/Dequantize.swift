import Foundation
import Tensor

/// Dequantization of stored tensors to Float32: the one decoder of every storage type
/// Kiln reads. Block layouts follow ggml's `block_q*` structs (all little-endian, no
/// padding); each kernel turns `n` consecutive blocks at `src` into `n * blockSize` floats
/// at `dst`. Q4_0, Q4_1 and Q8_0 values come from their grids (Tensor/Grid.swift).
public enum Dequantize {
    /// Dequantizes `count` elements stored as `type` in `bytes` (exactly their
    /// storage size). Nil when the sizes disagree.
    public static func floats(_ bytes: UnsafeRawBufferPointer, type: DType, count: Int) -> [Float]? {
        if type == .u8 {  // safetensors only; ggml has no such type
            return count == bytes.count ? bytes.map { Float($0) } : nil
        }
        guard let g = GGMLType(type) else { return nil }
        return floats(bytes, ggmlType: g, count: count)
    }

    /// Whether `floats` decodes `type`: a model's header can be judged without its data.
    public static func canDecode(_ type: DType) -> Bool {
        type == .u8 || GGMLType(type).flatMap(kernel(for:)) != nil
    }

    public static func floats(_ data: Data, type: DType, count: Int) -> [Float]? {
        data.withUnsafeBytes { floats($0, type: type, count: count) }
    }

    static func floats(_ bytes: UnsafeRawBufferPointer, ggmlType type: GGMLType, count: Int) -> [Float]? {
        guard count >= 0, let kernel = kernel(for: type), let need = type.rowBytes(count), need == bytes.count else {
            return nil
        }
        if count == 0 { return [] }
        guard let src = bytes.baseAddress else { return nil }
        let blocks = count / type.blockSize
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            let dst = out.baseAddress!  // count > 0, so the buffer exists
            // Large tensors are split over the cores; the split is by block, so
            // the result does not depend on the number of chunks.
            let chunk = 16_384
            let chunks = (blocks + chunk - 1) / chunk
            if chunks <= 1 {
                kernel(src, dst, blocks)
            } else {
                // Pointers cross into the concurrent closure as addresses: each chunk reads and
                // writes its own disjoint range, and both buffers outlive the call.
                let srcAddress = UInt(bitPattern: src)
                let dstAddress = UInt(bitPattern: dst)
                DispatchQueue.concurrentPerform(iterations: chunks) { c in
                    let b0 = c * chunk
                    let n = min(chunk, blocks - b0)
                    let s = UnsafeRawPointer(bitPattern: srcAddress)!
                    let d = UnsafeMutablePointer<Float>(bitPattern: dstAddress)!
                    kernel(s + b0 * type.typeSize, d + b0 * type.blockSize, n)
                }
            }
            initialized = count
        }
    }

    typealias Kernel = @Sendable (UnsafeRawPointer, UnsafeMutablePointer<Float>, Int) -> Void

    static func kernel(for type: GGMLType) -> Kernel? {
        switch type {
        case .f32: return { s, d, n in UnsafeMutableRawPointer(d).copyMemory(from: s, byteCount: n * 4) }
        case .f16: return f16
        case .bf16: return bf16
        case .f64: return { s, d, n in for i in 0..<n { d[i] = Float(Double(bitPattern: le64(s, 8 * i))) } }
        case .i8:
            return { s, d, n in
                for i in 0..<n { d[i] = Float(Int8(bitPattern: s.load(fromByteOffset: i, as: UInt8.self))) }
            }
        case .i16: return { s, d, n in for i in 0..<n { d[i] = Float(Int16(bitPattern: le16(s, 2 * i))) } }
        case .i32: return { s, d, n in for i in 0..<n { d[i] = Float(Int32(bitPattern: le32(s, 4 * i))) } }
        case .i64: return { s, d, n in for i in 0..<n { d[i] = Float(Int64(bitPattern: le64(s, 8 * i))) } }
        case .q8_0: return q8_0
        case .q4_0: return q4_0
        case .q4_1: return q4_1
        case .q5_0: return q5_0
        case .q5_1: return q5_1
        case .q2_K: return q2_K
        case .q3_K: return q3_K
        case .q4_K: return q4_K
        case .q5_K: return q5_K
        case .q6_K: return q6_K
        default: return nil
        }
    }

    // MARK: loads (unaligned: blocks are 18, 20, 22... bytes, so fields are not aligned)

    @inline(__always) static func le16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 {
        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))
    }
    @inline(__always) static func le32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 {
        UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }
    @inline(__always) static func le64(_ p: UnsafeRawPointer, _ o: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self))
    }
    @inline(__always) static func half(_ p: UnsafeRawPointer, _ o: Int) -> Float {
        HalfConversion.f16ToF32(le16(p, o))
    }
    @inline(__always) static func byte(_ p: UnsafeRawPointer, _ o: Int) -> UInt8 {
        p.load(fromByteOffset: o, as: UInt8.self)
    }

    // MARK: plain 16-bit floats

    static func f16(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { d[i] = HalfConversion.f16ToF32(le16(s, 2 * i)) }
    }

    static func bf16(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { d[i] = HalfConversion.bf16ToF32(le16(s, 2 * i)) }
    }

    // MARK: 32-element blocks

    /// Q8_0: fp16 d, 32 int8 codes; values on `GGUFQ8_0Grid`.
    static func q8_0(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        let grid = GGUFQ8_0Grid()
        for b in 0..<n {
            let p = s + b * 34
            let y = d + b * 32
            let params = GroupParameters(scale: half(p, 0), zero: 0)
            for j in 0..<32 { y[j] = grid.value(byte(p, 2 + j), params) }
        }
    }

    /// Q4_0: x = (q - 8) * d, on `GGUFQ4_0Grid`.
    static func q4_0(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        let grid = GGUFQ4_0Grid()
        legacyBlocks(s, d, n, hasMin: false, hasHighBits: false) { q, scale, _ in
            grid.value(q, GroupParameters(scale: scale, zero: 8))
        }
    }

    /// Q4_1: x = q * d + m, on `GGUFQ4_1Grid`.
    static func q4_1(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        let grid = GGUFQ4_1Grid()
        legacyBlocks(s, d, n, hasMin: true, hasHighBits: false) { q, scale, minimum in
            grid.value(q, GroupParameters(scale: scale, zero: minimum))
        }
    }

    /// Q5_0: x = d * (q - 16).
    static func q5_0(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        legacyBlocks(s, d, n, hasMin: false, hasHighBits: true) { q, scale, _ in scale * Float(Int(q) - 16) }
    }

    /// Q5_1: as Q5_0 without the offset; x = d * q + m.
    static func q5_1(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        legacyBlocks(s, d, n, hasMin: true, hasHighBits: true) { q, scale, minimum in scale * Float(q) + minimum }
    }

    /// The 32-element blocks of Q4_0, Q4_1, Q5_0 and Q5_1: fp16 d, fp16 m (with a min), 32
    /// high bits (5-bit types: bit j is the fifth bit of element j), then 16 bytes where byte j
    /// holds element j (low nibble) and j+16 (high). `value(q, d, m)` maps a code to its value.
    @inline(__always) static func legacyBlocks(
        _ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int, hasMin: Bool, hasHighBits: Bool,
        value: (UInt8, Float, Float) -> Float
    ) {
        let highOffset = hasMin ? 4 : 2
        let codeOffset = highOffset + (hasHighBits ? 4 : 0)
        let blockBytes = codeOffset + 16
        for b in 0..<n {
            let p = s + b * blockBytes
            let y = d + b * 32
            let scale = half(p, 0)
            let minimum = hasMin ? half(p, 2) : 0
            let qh = hasHighBits ? le32(p, highOffset) : 0
            for j in 0..<16 {
                let q = byte(p, codeOffset + j)
                let h0 = UInt8((qh >> UInt32(j)) & 1) << 4
                let h1 = UInt8((qh >> UInt32(j + 16)) & 1) << 4
                y[j] = value((q & 0x0F) | h0, scale, minimum)
                y[j + 16] = value((q >> 4) | h1, scale, minimum)
            }
        }
    }

    // MARK: K-quants (256-element super-blocks)

    /// The 6-bit scale and min of sub-block j (0..<8) packed in 12 bytes at `q`:
    /// j < 4 in the low 6 bits of bytes j and j+4; j >= 4 split between the
    /// nibbles of byte j+4 and the top 2 bits of bytes j-4 and j.
    @inline(__always) static func scaleMin(_ j: Int, _ q: UnsafeRawPointer) -> (Float, Float) {
        if j < 4 {
            return (Float(byte(q, j) & 63), Float(byte(q, j + 4) & 63))
        }
        let sc = (byte(q, j + 4) & 0x0F) | ((byte(q, j - 4) >> 6) << 4)
        let m = (byte(q, j + 4) >> 4) | ((byte(q, j) >> 6) << 4)
        return (Float(sc), Float(m))
    }

    /// Q2_K: scales[16] (low nibble scale, high nibble min), 64 bytes of 2-bit codes, fp16 d,
    /// fp16 dmin; x = d * sc * q - dmin * m over 16 sub-blocks of 16. Each 32 bytes of codes hold
    /// 128 values, byte l values l, l+32, l+64, l+96 at bits 0, 2, 4, 6.
    static func q2_K(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        for b in 0..<n {
            let p = s + b * 84
            let y = d + b * 256
            let dd = half(p, 80)
            let dmin = half(p, 82)
            for i in 0..<256 {
                let sc = byte(p, i / 16)
                let dl = dd * Float(sc & 0x0F)
                let ml = dmin * Float(sc >> 4)
                let q = (byte(p, 16 + 32 * (i / 128) + i % 32) >> UInt8(2 * (i % 128 / 32))) & 3
                y[i] = dl * Float(q) - ml
            }
        }
    }

    /// Q3_K: 32 bytes of high bits (value i's at bit i/32 of byte i%32), 64 bytes of low 2 bits
    /// (as Q2_K), 12 bytes of sixteen 6-bit scales, fp16 d; x = d * (sc - 32) * (q - 4).
    static func q3_K(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        for b in 0..<n {
            let p = s + b * 110
            let y = d + b * 256
            let dd = half(p, 108)
            for i in 0..<256 {
                let j = i / 16
                let low = j < 8 ? byte(p, 96 + j) & 0x0F : byte(p, 88 + j) >> 4
                let sc = Int(low | ((byte(p, 104 + j % 4) >> UInt8(2 * (j / 4))) & 3) << 4) - 32
                let dl = dd * Float(sc)
                let q = (byte(p, 32 + 32 * (i / 128) + i % 32) >> UInt8(2 * (i % 128 / 32))) & 3
                let h = (byte(p, i % 32) >> UInt8(i / 32)) & 1
                y[i] = dl * Float(Int(q) - (h != 0 ? 0 : 4))
            }
        }
    }

    /// Q4_K: 8 sub-blocks of 32; x = d * sc * q - dmin * m. Each 32 bytes of
    /// nibbles hold two sub-blocks (low nibbles first).
    static func q4_K(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        scaleMinBlocks(s, d, n, hasHighBits: false)
    }

    /// Q5_K: Q4_K plus a fifth bit per element from 32 bytes of qh (bit 2g for the
    /// low nibble sub-block of group g, bit 2g+1 for the high one).
    static func q5_K(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        scaleMinBlocks(s, d, n, hasHighBits: true)
    }

    /// Q4_K and Q5_K: fp16 d, fp16 dmin, 12 bytes of packed scales and mins, the high
    /// bits (Q5_K), then 128 bytes of nibbles.
    @inline(__always) static func scaleMinBlocks(
        _ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int, hasHighBits: Bool
    ) {
        let codeOffset = hasHighBits ? 48 : 16
        for b in 0..<n {
            let p = s + b * (codeOffset + 128)
            let y = d + b * 256
            let dd = half(p, 0)
            let dmin = half(p, 2)
            let scales = p + 4
            let qh = p + 16
            let qs = p + codeOffset
            for g in 0..<4 {
                let (sc1, m1) = scaleMin(2 * g, scales)
                let (sc2, m2) = scaleMin(2 * g + 1, scales)
                let d1 = dd * sc1
                let o1 = dmin * m1
                let d2 = dd * sc2
                let o2 = dmin * m2
                let q = qs + 32 * g
                let out = y + 64 * g
                let u1 = UInt8(1) << UInt8(2 * g)
                let u2 = UInt8(2) << UInt8(2 * g)
                for l in 0..<32 {
                    let v = byte(q, l)
                    let h = hasHighBits ? byte(qh, l) : 0
                    out[l] = d1 * Float((v & 0x0F) + (h & u1 != 0 ? 16 : 0)) - o1
                    out[l + 32] = d2 * Float((v >> 4) + (h & u2 != 0 ? 16 : 0)) - o2
                }
            }
        }
    }

    /// Q6_K: 16 sub-blocks of 16 with int8 scales; 6-bit q = low nibble (ql) |
    /// 2 high bits (qh) << 4, x = d * sc * (q - 32). Two halves of 128 elements.
    static func q6_K(_ s: UnsafeRawPointer, _ d: UnsafeMutablePointer<Float>, _ n: Int) {
        for b in 0..<n {
            let p = s + b * 210
            let y = d + b * 256
            let dd = half(p, 208)
            for half in 0..<2 {
                let ql = p + 64 * half
                let qh = p + 128 + 32 * half
                let sc = p + 192 + 8 * half
                let out = y + 128 * half
                for l in 0..<32 {
                    let i = l / 16
                    let h = byte(qh, l)
                    let a = byte(ql, l)
                    let c = byte(ql, l + 32)
                    let q1 = Int((a & 0x0F) | ((h & 3) << 4)) - 32
                    let q2 = Int((c & 0x0F) | (((h >> 2) & 3) << 4)) - 32
                    let q3 = Int((a >> 4) | (((h >> 4) & 3) << 4)) - 32
                    let q4 = Int((c >> 4) | (((h >> 6) & 3) << 4)) - 32
                    out[l] = dd * Float(Int8(bitPattern: byte(sc, i))) * Float(q1)
                    out[l + 32] = dd * Float(Int8(bitPattern: byte(sc, i + 2))) * Float(q2)
                    out[l + 64] = dd * Float(Int8(bitPattern: byte(sc, i + 4))) * Float(q3)
                    out[l + 96] = dd * Float(Int8(bitPattern: byte(sc, i + 6))) * Float(q4)
                }
            }
        }
    }
}
