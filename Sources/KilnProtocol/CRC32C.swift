import Foundation

#if os(Linux) && arch(x86_64)
// SSE4.2's crc32 instruction computes exactly this CRC (Castagnoli), ~10x the tables'
// speed; Package.swift builds for Haswell on Linux, which has it.
import _Builtin_intrinsics.intel
#endif

/// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and
/// final xor 0xFFFFFFFF, the checksum of Kiln's tensor frames
/// (CHECKSUM_KIND_CRC32C). Table-driven, slicing by 8: eight 256-entry tables
/// let the loop consume 8 bytes per step.
public struct CRC32C: Sendable {
    /// The running value (already final-xored, so `value` is always a valid
    /// checksum of the bytes seen so far).
    public private(set) var value: UInt32 = 0

    public init() {}

    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            var c = t[i]
            for k in 1..<8 {
                c = t[Int(c & 0xFF)] ^ (c >> 8)
                t[k * 256 + i] = c
            }
        }
        return t
    }()

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        #if os(Linux) && arch(x86_64)
        value = Self.hardwareUpdate(~value, base, bytes.count)
        #else
        value = Self.tableUpdate(value, bytes)
        #endif
    }

    /// The portable path (slicing by 8), also what the test checks the instruction against.
    public static func tableUpdate(_ value: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return value }
        return CRC32C.tables.withUnsafeBufferPointer { tp in Self.update(~value, base, bytes.count, tp.baseAddress!) }
    }

    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// Checksum of `data` in one call.
    public static func checksum(_ data: Data) -> UInt32 {
        var c = CRC32C()
        c.update(data)
        return c.value
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = CRC32C()
        c.update(bytes)
        return c.value
    }

    #if os(Linux) && arch(x86_64)
    private static func hardwareUpdate(_ start: UInt32, _ base: UnsafeRawPointer, _ count: Int) -> UInt32 {
        var crc = UInt64(start)
        var p = base
        var n = count
        while n >= 8 {
            crc = _mm_crc32_u64(crc, p.loadUnaligned(as: UInt64.self))
            p += 8
            n -= 8
        }
        var c = UInt32(truncatingIfNeeded: crc)
        while n > 0 {
            c = _mm_crc32_u8(c, p.load(as: UInt8.self))
            p += 1
            n -= 1
        }
        return ~c
    }
    #endif

    @_optimize(speed)
    private static func update(
        _ start: UInt32, _ base: UnsafeRawPointer, _ count: Int,
        _ t: UnsafePointer<UInt32>
    ) -> UInt32 {
        var crc = start
        var p = base
        var n = count
        // Head: align to 8 bytes.
        while n > 0 && UInt(bitPattern: p) & 7 != 0 {
            crc = t[Int((crc ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
            p += 1
            n -= 1
        }
        let t1 = t + 256
        let t2 = t + 512
        let t3 = t + 768
        let t4 = t + 1024
        let t5 = t + 1280
        let t6 = t + 1536
        let t7 = t + 1792
        while n >= 8 {
            let w = UInt64(littleEndian: p.load(as: UInt64.self))
            let lo = UInt32(truncatingIfNeeded: w) ^ crc
            let hi = UInt32(truncatingIfNeeded: w >> 32)
            crc =
                t7[Int(lo & 0xFF)] ^ t6[Int((lo >> 8) & 0xFF)] ^ t5[Int((lo >> 16) & 0xFF)] ^ t4[Int(lo >> 24)]
                ^ t3[Int(hi & 0xFF)] ^ t2[Int((hi >> 8) & 0xFF)] ^ t1[Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
            p += 8
            n -= 8
        }
        while n > 0 {
            crc = t[Int((crc ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
            p += 1
            n -= 1
        }
        return ~crc
    }

    // MARK: combining

    /// The CRC-32C of `a || b` from `checksum(a)`, `checksum(b)` and b's
    /// length, without touching the bytes (O(log n) polynomial arithmetic
    /// modulo the CRC polynomial). Lets a receiver check a whole chunked tensor
    /// from its chunks' checksums.
    public static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthB: Int) -> UInt32 {
        precondition(lengthB >= 0)
        return multiplyModP(xPowerModP(UInt64(lengthB), 3), crcA) ^ crcB
    }

    /// a(x) * b(x) modulo P(x), bit-reflected.
    private static func multiplyModP(_ a: UInt32, _ b: UInt32) -> UInt32 {
        var b = b
        var m: UInt32 = 1 << 31
        var p: UInt32 = 0
        while true {
            if a & m != 0 {
                p ^= b
                if a & (m - 1) == 0 { break }
            }
            m >>= 1
            b = b & 1 != 0 ? (b >> 1) ^ 0x82F6_3B78 : b >> 1
        }
        return p
    }

    /// x^(2^k) mod P for k = 0..<32.
    private static let x2n: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 32)
        var p: UInt32 = 1 << 30  // x^1
        t[0] = p
        for n in 1..<32 {
            p = multiplyModP(p, p)
            t[n] = p
        }
        return t
    }()

    /// x^(n * 2^k) mod P.
    private static func xPowerModP(_ n: UInt64, _ k: Int) -> UInt32 {
        var n = n
        var k = k
        var p: UInt32 = 1 << 31  // x^0
        while n != 0 {
            if n & 1 != 0 { p = multiplyModP(x2n[k & 31], p) }
            n >>= 1
            k += 1
        }
        return p
    }
}
