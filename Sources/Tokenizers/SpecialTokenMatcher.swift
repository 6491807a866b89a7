// Finds special tokens written in the text (llama.cpp's tokenizer_st_partition,
// HF's added-token split): leftmost match, longest first, matched on UTF-8 bytes
// so the rest of the text can be tokenized piece by piece.

struct SpecialTokenMatcher {
    /// Candidates by first byte, longest first.
    private var byFirstByte: [[(bytes: [UInt8], id: Int)]] = Array(repeating: [], count: 256)
    private(set) var isEmpty = true

    init(_ tokens: [(text: String, id: Int)]) {
        for (text, id) in tokens where !text.isEmpty {
            let b = Array(text.utf8)
            byFirstByte[Int(b[0])].append((b, id))
            isEmpty = false
        }
        for i in 0..<256 { byFirstByte[i].sort { $0.bytes.count > $1.bytes.count } }
    }

    enum Segment { case text(Range<Int>), special(Int) }

    /// Splits `bytes` into plain ranges and special ids, in order.
    func segments(_ bytes: [UInt8]) -> [Segment] {
        if isEmpty { return bytes.isEmpty ? [] : [.text(0..<bytes.count)] }
        var out: [Segment] = []
        var start = 0
        var i = 0
        let n = bytes.count
        while i < n {
            let cands = byFirstByte[Int(bytes[i])]
            var matched: (len: Int, id: Int)? = nil
            for c in cands where c.bytes.count <= n - i {
                var k = 1
                while k < c.bytes.count && bytes[i + k] == c.bytes[k] { k += 1 }
                if k == c.bytes.count {
                    matched = (k, c.id)
                    break
                }
            }
            if let m = matched {
                if start < i { out.append(.text(start..<i)) }
                out.append(.special(m.id))
                i += m.len
                start = i
            } else {
                i += 1
            }
        }
        if start < n { out.append(.text(start..<n)) }
        return out
    }
}
