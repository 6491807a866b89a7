// GPT-2's byte-to-character map: byte-level BPE vocabularies spell every byte
// as one printable character (printable Latin-1 bytes as themselves, the rest
// as U+0100 onwards, in byte order), so a token's text maps back to bytes.

enum ByteLevel {
    /// Character for each byte value.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// Byte for each mapped character (indexed by scalar value < 512), -1 if none.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 512)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    /// The bytes a vocabulary entry spells, or nil if it is not in the mapped alphabet.
    static func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for s in token.unicodeScalars {
            guard s.value < 512, scalarToByte[Int(s.value)] >= 0 else { return nil }
            out.append(UInt8(scalarToByte[Int(s.value)]))
        }
        return out
    }

    /// The mapped spelling of some bytes.
    static func encode<C: Sequence>(_ bytes: C) -> String where C.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }
}
