import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Atomic, buffered output file (shared by the writers)

#if canImport(Glibc)
private let sysWrite = Glibc.write
#else
private let sysWrite = Darwin.write
#endif

/// A file written under a fresh temporary name next to its destination and moved into
/// place by `commit()` (see `OutputPlacement`: an existing destination is replaced only
/// with `replace`). Until then the destination is untouched; `discard()` (or deinit
/// without commit) removes the temporary file, which no one else could have used.
final class WriterOutputFile {
    let url: URL
    let tempURL: URL
    let replace: Bool
    private var fd: Int32
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 20
    private(set) var offset: Int = 0
    private var done = false

    init(url: URL, replace: Bool = false) throws {
        self.url = url
        self.replace = replace
        (tempURL, fd) = try OutputPlacement.createTemporaryFile(for: url)
        buffer.reserveCapacity(bufferLimit)
    }

    deinit { if !done { discard() } }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!done, "write after commit/discard")
        offset += bytes.count
        if buffer.count + bytes.count <= bufferLimit {
            buffer.append(contentsOf: bytes)
            return
        }
        try flush()
        if bytes.count >= bufferLimit { try writeAll(bytes) } else { buffer.append(contentsOf: bytes) }
    }

    func write(_ data: Data) throws { try data.withUnsafeBytes { try write($0) } }
    func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
    func write(zeros n: Int) throws { if n > 0 { try write([UInt8](repeating: 0, count: n)) } }
    func write<T: FixedWidthInteger>(le v: T) throws { try withUnsafeBytes(of: v.littleEndian) { try write($0) } }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var p = 0
        while p < bytes.count {
            let n = sysWrite(fd, bytes.baseAddress! + p, bytes.count - p)
            if n < 0 {
                if errno == EINTR { continue }
                throw ModelIOError(file: url.path, "write failed: \(String(cString: strerror(errno)))")
            }
            p += n
        }
    }

    /// Flushes, syncs, closes and renames the temporary file onto `url`.
    func commit() throws {
        precondition(!done, "commit twice")
        do {
            try flush()
            if fsync(fd) != 0 {
                throw ModelIOError(file: url.path, "fsync failed: \(String(cString: strerror(errno)))")
            }
            let fdc = fd
            fd = -1
            if close(fdc) != 0 {
                throw ModelIOError(file: url.path, "close failed: \(String(cString: strerror(errno)))")
            }
            try OutputPlacement.placeFile(tempURL, at: url, replace: replace)
            done = true
        } catch {
            discard()
            throw error
        }
    }

    /// Closes and removes the temporary file; the destination is left as it was.
    func discard() {
        if fd >= 0 {
            _ = close(fd)
            fd = -1
        }
        if !done { _ = unlink(tempURL.path) }
        done = true
        buffer = []
    }
}

// MARK: - Safetensors writer

/// Streams a safetensors file: declare every tensor first (the header, with all
/// offsets, is computed from the declarations), then write each tensor's bytes in
/// declaration order. Only one tensor is held at a time. The file appears under its
/// name only when `finish()` succeeds; otherwise the temporary file is removed.
///
/// The header is JSON with the tensors in declaration order (deterministic output),
/// `__metadata__` first, padded with spaces to a multiple of 8 bytes.
public final class SafetensorsWriter {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var byteCount: Int
    }

    public let url: URL
    public private(set) var entries: [Entry] = []
    private var names: Set<String> = []
    private let metadata: [String: String]
    private var out: WriterOutputFile?
    private var next = 0
    private var started = false
    private var finished = false

    /// - metadata: `__metadata__` strings; defaults to {"format": "pt"}, which
    ///   transformers expects.
    public init(url: URL, metadata: [String: String] = ["format": "pt"]) {
        self.url = url
        self.metadata = metadata
    }

    deinit { out?.discard() }

    /// Safetensors dtype name of a DType, or nil for block-quantized types.
    public static func dtypeName(_ t: DType) -> String? {
        switch t {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f64: return "F64"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .u8: return "U8"
        default: return nil
        }
    }

    public static func elementSize(_ t: DType) -> Int? {
        switch t {
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .f64, .i64: return 8
        case .i8, .u8: return 1
        default: return nil
        }
    }

    public func declare(_ name: String, dtype: DType, shape: [Int]) throws {
        guard !started else { throw ModelIOError(file: url.path, "\(name): declared after tensor data started") }
        guard !name.isEmpty, name != "__metadata__" else {
            throw ModelIOError(file: url.path, "invalid tensor name \"\(name)\"")
        }
        guard !names.contains(name) else { throw ModelIOError(file: url.path, "\(name): declared twice") }
        guard let es = Self.elementSize(dtype) else {
            throw ModelIOError(file: url.path, "\(name): dtype \(dtype.rawValue) cannot be stored in safetensors")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw ModelIOError(file: url.path, "\(name): negative dimension in \(shape)")
        }
        names.insert(name)
        entries.append(Entry(name: name, dtype: dtype, shape: shape, byteCount: shape.reduce(1, *) * es))
    }

    /// Total bytes of the declared tensors' data.
    public var dataByteCount: Int { entries.reduce(0) { $0 + $1.byteCount } }

    /// The header bytes (8-byte length + JSON + space padding) for the declarations.
    public func headerBytes() -> [UInt8] {
        var json = "{"
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(writerJSONString($0)):\(writerJSONString(metadata[$0]!))" }.joined(
                separator: ",")
            json += "},"
        }
        var off = 0
        var parts: [String] = []
        for e in entries {
            let shape = e.shape.map(String.init).joined(separator: ",")
            parts.append(
                "\(writerJSONString(e.name)):{\"dtype\":\"\(Self.dtypeName(e.dtype)!)\",\"shape\":[\(shape)],\"data_offsets\":[\(off),\(off + e.byteCount)]}"
            )
            off += e.byteCount
        }
        json += parts.joined(separator: ",")
        if json.hasSuffix(",") { json.removeLast() }
        json += "}"
        var body = Array(json.utf8)
        while (8 + body.count) % 8 != 0 { body.append(0x20) }
        var header: [UInt8] = []
        withUnsafeBytes(of: UInt64(body.count).littleEndian) { header.append(contentsOf: $0) }
        return header + body
    }

    private func start() throws {
        guard !started else { return }
        started = true
        let o = try WriterOutputFile(url: url)
        out = o
        try o.write(headerBytes())
    }

    /// The name of the tensor `write` expects next, or nil when all are written.
    public var nextTensorName: String? { next < entries.count ? entries[next].name : nil }

    /// Writes the next declared tensor's bytes (little-endian, as stored).
    public func write(_ name: String, bytes: UnsafeRawBufferPointer) throws {
        try write(name, byteCount: bytes.count) { write in try write(bytes) }
    }

    /// Writes the next declared tensor's `byteCount` bytes, handed by `body` to its `write` in
    /// order (a large tensor copied a piece at a time; more or fewer bytes than declared fail).
    public func write(
        _ name: String, byteCount: Int, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        guard !finished else { throw ModelIOError(file: url.path, "\(name): written after finish") }
        guard next < entries.count else {
            throw ModelIOError(file: url.path, "\(name): not declared (all declared tensors already written)")
        }
        let e = entries[next]
        guard e.name == name else {
            fail()
            throw ModelIOError(file: url.path, "\(name): written out of order, expected \(e.name)")
        }
        guard byteCount == e.byteCount else {
            fail()
            throw ModelIOError(
                file: url.path,
                "\(name): \(byteCount) bytes, declared \(e.dtype.rawValue) \(e.shape) takes \(e.byteCount)")
        }
        do {
            try start()
            var written = 0
            try body { piece in
                guard written + piece.count <= byteCount else {
                    throw ModelIOError(file: url.path, "\(name): more than the declared \(byteCount) bytes")
                }
                try out!.write(piece)
                written += piece.count
            }
            guard written == byteCount else {
                throw ModelIOError(file: url.path, "\(name): \(written) bytes written, declared \(byteCount)")
            }
        } catch {
            fail()
            throw error
        }
        next += 1
    }

    public func write(_ name: String, bytes: Data) throws {
        try bytes.withUnsafeBytes { try write(name, bytes: $0) }
    }

    /// Converts Float32 values to the declared float dtype (F32, F16, BF16) and writes them.
    public func write(_ name: String, floats: [Float]) throws {
        guard next < entries.count, entries[next].name == name else {
            try write(name, bytes: Data())  // produces the ordering error
            return
        }
        guard let data = GGUFBlocks.packFloats(floats, as: entries[next].dtype) else {
            fail()
            throw ModelIOError(file: url.path, "\(name): cannot write floats as \(entries[next].dtype.rawValue)")
        }
        try write(name, bytes: data)
    }

    public func write(_ name: String, int32s: [Int32]) throws {
        var d = Data(count: int32s.count * 4)
        d.withUnsafeMutableBytes { p in
            for (i, v) in int32s.enumerated() { p.storeBytes(of: v.littleEndian, toByteOffset: 4 * i, as: Int32.self) }
        }
        try write(name, bytes: d)
    }

    /// Checks every declared tensor was written, then renames the file into place.
    public func finish() throws {
        guard !finished else { return }
        if next < entries.count {
            fail()
            throw ModelIOError(file: url.path, "\(entries[next].name): declared but never written")
        }
        try start()
        finished = true
        try out.take()!.commit()
    }

    /// Gives up: removes the temporary file.
    public func abandon() { fail() }

    private func fail() {
        finished = true
        out.take()?.discard()
    }
}

/// JSON string literal with the escapes JSON requires.
func writerJSONString(_ s: String) -> String {
    var r = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": r += "\\\""
        case "\\": r += "\\\\"
        case "\n": r += "\\n"
        case "\r": r += "\\r"
        case "\t": r += "\\t"
        default:
            if u.value < 0x20 { r += String(format: "\\u%04x", u.value) } else { r.unicodeScalars.append(u) }
        }
    }
    return r + "\""
}
