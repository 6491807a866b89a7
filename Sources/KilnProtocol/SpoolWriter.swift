import Foundation

/// Appends to a `SpoolFile` from its start: small pieces gathered in a buffer, large ones
/// written straight from the caller's memory, so a multi-gigabyte payload is written
/// without a second copy of it. It keeps the CRC-32C of each `chunkSize` piece as the
/// bytes go by: `ChunkSender.init(file:checksums:)` then sends the file without reading it
/// back for them.
public struct SpoolWriter {
    public let file: SpoolFile
    public let chunkSize: Int
    /// Bytes appended so far (written or buffered).
    public private(set) var count = 0
    private var written = 0
    private var buffer: [UInt8] = []
    private let bufferBytes: Int
    private var sums: [UInt32] = []
    private var chunk = CRC32C()
    private var chunkFilled = 0

    public init(_ file: SpoolFile, chunkSize: Int, bufferBytes: Int = 1 << 20) {
        self.file = file
        self.chunkSize = max(1, chunkSize)
        self.bufferBytes = max(1, bufferBytes)
        buffer.reserveCapacity(self.bufferBytes)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard !bytes.isEmpty else { return }
        checksum(bytes)
        count += bytes.count
        if buffer.count + bytes.count <= bufferBytes {
            buffer.append(contentsOf: bytes)
            return
        }
        try flush()
        if bytes.count < bufferBytes {
            buffer.append(contentsOf: bytes)
        } else {
            try file.write(bytes, at: written)
            written += bytes.count
        }
    }

    public mutating func append(_ data: Data) throws {
        try data.withUnsafeBytes { try append($0) }
    }

    /// The elements' bytes as they lie in memory (little-endian numbers on every supported host).
    public mutating func append<T>(contentsOf a: [T]) throws {
        try a.withUnsafeBytes { try append($0) }
    }

    /// Writes what is buffered; returns the CRC-32C of each `chunkSize` piece of the file
    /// (the last one possibly shorter), as `ChunkSender.checksums(of:chunkSize:)` gives them.
    public mutating func finish() throws -> [UInt32] {
        try flush()
        if chunkFilled > 0 {
            sums.append(chunk.value)
            chunk = CRC32C()
            chunkFilled = 0
        }
        return sums
    }

    private mutating func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try file.write($0, at: written) }
        written += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }

    private mutating func checksum(_ bytes: UnsafeRawBufferPointer) {
        var at = 0
        while at < bytes.count {
            let n = min(chunkSize - chunkFilled, bytes.count - at)
            chunk.update(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]))
            chunkFilled += n
            at += n
            if chunkFilled == chunkSize {
                sums.append(chunk.value)
                chunk = CRC32C()
                chunkFilled = 0
            }
        }
    }
}
