// MT19937 seeded and drawn exactly as CPython's `random` module does it, so that
// `--sampler random --seed S` picks the same windows as the GPTQ reference's data
// loader (`random.seed(S)`, then `random.randint(0, T - L - 1)` per sample) and as
// scripts written against it. Reimplemented from the published MT19937 algorithm
// (Matsumoto & Nishimura 1998, init_by_array of 2002-01-26) and CPython's documented
// seeding of an int (its 32-bit words, least significant first) and randbelow
// (rejection sampling on getrandbits(bit_length(n))).

/// Python-compatible Mersenne Twister.
public struct PythonRandom: Sendable {
    private var mt = [UInt32](repeating: 0, count: 624)
    private var index = 624

    /// `random.seed(seed)` for a non-negative int.
    public init(seed: UInt64) {
        var key: [UInt32] = []
        var s = seed
        while s != 0 {
            key.append(UInt32(truncatingIfNeeded: s))
            s >>= 32
        }
        if key.isEmpty { key = [0] }
        initByArray(key)
    }

    private mutating func initGenrand(_ s: UInt32) {
        mt[0] = s
        for i in 1..<624 {
            mt[i] = 1_812_433_253 &* (mt[i - 1] ^ (mt[i - 1] >> 30)) &+ UInt32(i)
        }
        index = 624
    }

    private mutating func initByArray(_ key: [UInt32]) {
        initGenrand(19_650_218)
        var i = 1
        var j = 0
        for _ in 0..<max(624, key.count) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) &* 1_664_525)) &+ key[j] &+ UInt32(j)
            i += 1
            j += 1
            if i >= 624 {
                mt[0] = mt[623]
                i = 1
            }
            if j >= key.count { j = 0 }
        }
        for _ in 0..<623 {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) &* 1_566_083_941)) &- UInt32(i)
            i += 1
            if i >= 624 {
                mt[0] = mt[623]
                i = 1
            }
        }
        mt[0] = 0x8000_0000
    }

    private mutating func twist() {
        for i in 0..<624 {
            let y = (mt[i] & 0x8000_0000) | (mt[(i + 1) % 624] & 0x7FFF_FFFF)
            mt[i] = mt[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1) == 0 ? 0 : 0x9908_B0DF)
        }
        index = 0
    }

    /// `genrand_uint32`: the next 32 random bits.
    public mutating func next32() -> UInt32 {
        if index >= 624 { twist() }
        var y = mt[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// `random.getrandbits(k)` for 1 <= k <= 64 (32-bit words, least significant first).
    public mutating func bits(_ k: Int) -> UInt64 {
        precondition((1...64).contains(k), "getrandbits: k must be in 1...64")
        if k <= 32 { return UInt64(next32() >> (32 - k)) }
        let low = UInt64(next32())
        let high = UInt64(next32() >> (64 - k))
        return high << 32 | low
    }

    /// `random.randint(0, upper)`: uniform in 0...upper.
    public mutating func int(through upper: UInt64) -> UInt64 {
        precondition(upper < UInt64.max, "randint: upper bound too large")
        let n = upper + 1
        let k = 64 - n.leadingZeroBitCount
        while true {
            let r = bits(k)
            if r < n { return r }
        }
    }
}
