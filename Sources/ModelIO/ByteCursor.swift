import Foundation

/// Sequential little-endian reader over a mapped file that checks every read
/// against the end of the file, so a truncated or lying header gives an error
/// naming the field being read.
public struct ByteCursor {
    public let buf: UnsafeRawBufferPointer
    public let file: String
    public private(set) var pos: Int = 0

    public init(_ buf: UnsafeRawBufferPointer, file: String) {
        self.buf = buf
        self.file = file
    }

    public var remaining: Int { buf.count - pos }

    /// Reserves `n` bytes and returns their start offset.
    public mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> Int {
        guard n >= 0, n <= remaining else {
            throw ModelIOError(
                file: file, "\(what()): truncated (needs \(n) bytes at offset \(pos), file size \(buf.count))")
        }
        defer { pos += n }
        return pos
    }

    public mutating func load<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        let at = try take(MemoryLayout<T>.size, what())
        return T(littleEndian: buf.loadUnaligned(fromByteOffset: at, as: T.self))
    }

    mutating func u8(_ what: @autoclosure () -> String) throws -> UInt8 { try load(UInt8.self, what()) }
    public mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try load(UInt32.self, what()) }
    public mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try load(UInt64.self, what()) }

    /// A u64 that must fit in Int (every GGUF length and count).
    mutating func count(_ what: @autoclosure () -> String) throws -> Int {
        let v = try u64(what())
        guard v <= UInt64(Int.max) else { throw ModelIOError(file: file, "\(what()): value \(v) is out of range") }
        return Int(v)
    }

    /// GGUF string: u64 length then UTF-8 bytes (invalid sequences are replaced).
    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let n = try u64(what() + " length")
        guard n <= UInt64(remaining) else {
            throw ModelIOError(
                file: file,
                "\(what()): string length \(n) at offset \(pos - 8) runs past end of file (size \(buf.count))")
        }
        let at = try take(Int(n), what())
        return String(decoding: UnsafeRawBufferPointer(rebasing: buf[at..<(at + Int(n))]), as: UTF8.self)
    }
}
