// Open-addressing tables for the two hot look-ups of BPE encoding. Swift's
// Dictionary hashes with SipHash and a [UInt8] key costs an allocation per
// word; these hash cheaply and look words up straight from the input bytes.

/// (left id, right id) -> merge (rank << 32 | merged id).
struct PairTable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = Array(repeating: Self.empty, count: size)
        values = Array(repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always) private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Keeps the first value stored for a key (the lowest rank).
    mutating func insertIfAbsent(_ key: UInt64, _ value: UInt64) {
        var i = slot(key)
        while keys[i] != Self.empty {
            if keys[i] == key { return }
            i = (i + 1) & mask
        }
        keys[i] = key
        values[i] = value
    }

    @inline(__always) func get(_ left: Int, _ right: Int) -> UInt64? {
        let key = UInt64(truncatingIfNeeded: left) << 32 | UInt64(truncatingIfNeeded: right)
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { return values[i] }
            if k == Self.empty { return nil }
            i = (i + 1) & mask
        }
    }
}

/// Word bytes -> token ids, with keys and values in flat buffers.
struct WordCache {
    private struct Entry {
        var hash: UInt64
        var key: Range<Int32>
        var value: Range<Int32>
    }
    private var slots: [Int32]  // entry index + 1; 0 = empty
    private var entries: [Entry] = []
    private var keyBytes: [UInt8] = []
    private var values: [Int32] = []
    private let limit: Int

    init(limit: Int = 1 << 18) {
        self.limit = limit
        slots = Array(repeating: 0, count: 1 << 12)
    }

    var count: Int { entries.count }

    /// FNV-1a.
    @inline(__always) static func hash(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// Appends the cached ids of `word` to `out`; false if absent.
    func append(_ word: ArraySlice<UInt8>, hash: UInt64, to out: inout [Int]) -> Bool {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i] != 0 {
            let e = entries[Int(slots[i]) - 1]
            if e.hash == hash && e.key.count == word.count
                && keyBytes[Int(e.key.lowerBound)..<Int(e.key.upperBound)].elementsEqual(word)
            {
                for k in e.value { out.append(Int(values[Int(k)])) }
                return true
            }
            i = (i + 1) & mask
        }
        return false
    }

    mutating func insert(_ word: ArraySlice<UInt8>, hash: UInt64, ids: [Int]) {
        if entries.count >= limit { self = WordCache(limit: limit) }
        if (entries.count + 1) * 2 > slots.count { grow() }
        let k0 = Int32(keyBytes.count)
        let v0 = Int32(values.count)
        keyBytes += word
        for id in ids { values.append(Int32(truncatingIfNeeded: id)) }
        entries.append(Entry(hash: hash, key: k0..<Int32(keyBytes.count), value: v0..<Int32(values.count)))
        place(entries.count - 1)
    }

    private mutating func place(_ index: Int) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: entries[index].hash) & mask
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = Int32(index + 1)
    }

    private mutating func grow() {
        slots = Array(repeating: 0, count: slots.count * 2)
        for i in entries.indices { place(i) }
    }
}
