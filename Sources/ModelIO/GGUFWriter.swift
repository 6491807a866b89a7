import Foundation

/// Streams a GGUF v3 file.
///
///     let w = try GGUFWriter(url: out)
///     try w.addMetadata("general.architecture", .string("llama"))
///     try w.declareTensor("token_embd.weight", type: .q8_0, shape: [vocab, hidden])
///     ...                                   // every tensor, in file order
///     try w.writeTensor("token_embd.weight", bytes: packed)   // in declaration order
///     ...
///     try w.finish()                        // moves the temporary file to <out>
///
/// Metadata and the tensor table are fixed by the declarations, so every offset in
/// the header is computed before any tensor data is written; the writer holds one
/// tensor at a time. Shapes are PyTorch order (outermost first); GGUF's ne[] is the
/// reverse. Tensor data starts at a multiple of `general.alignment` (default 32) and
/// each tensor is padded with zeros to that alignment.
///
/// The file is written under a fresh temporary sibling name and moved onto `<out>` by
/// `finish()`; an existing `<out>` is an error unless `replace` (see OutputPlacement).
/// Any error while streaming, `abandon()`, or dropping the writer before `finish()`
/// removes the temporary file and leaves `<out>` untouched.
public final class GGUFWriter {
    public struct DeclaredTensor: Sendable, Equatable {
        public var name: String
        public var type: DType
        /// PyTorch order.
        public var shape: [Int]
        public var byteCount: Int
        /// Offset from the start of the data section (a multiple of the alignment).
        public var offset: Int
    }

    public let url: URL
    public let alignment: Int
    /// Replace an existing regular file at `url` (otherwise `finish()` refuses).
    public let replace: Bool
    public private(set) var metadata: [(key: String, value: GGUFValue)] = []
    public private(set) var tensors: [DeclaredTensor] = []
    private var keys: Set<String> = []
    private var tensorIndex: [String: Int] = [:]
    private var out: WriterOutputFile?
    private var next = 0
    private var headerSize = 0
    private var headerWritten = false
    private var closed = false

    /// - alignment: data alignment, written as `general.alignment` (uint32) unless
    ///   the caller sets that key to the same value.
    public init(url: URL, alignment: Int = 32, replace: Bool = false) throws {
        guard alignment > 0, alignment % 8 == 0, alignment <= Int(UInt32.max) else {
            throw ModelIOError(file: url.path, "general.alignment \(alignment) must be a positive multiple of 8")
        }
        self.url = url
        self.alignment = alignment
        self.replace = replace
    }

    deinit { out?.discard() }

    // MARK: Declarations

    public func addMetadata(_ key: String, _ value: GGUFValue) throws {
        guard !headerWritten, !closed else {
            throw ModelIOError(file: url.path, "metadata \(key): added after tensor data started")
        }
        guard !key.isEmpty, key.utf8.count <= 65535 else {
            throw ModelIOError(file: url.path, "metadata key \"\(key)\" is empty or too long")
        }
        guard !keys.contains(key) else { throw ModelIOError(file: url.path, "metadata \(key): added twice") }
        if key == "general.alignment" {
            guard case let .uint32(a) = value, Int(a) == alignment else {
                throw ModelIOError(
                    file: url.path,
                    "metadata general.alignment must be uint32 \(alignment) (the writer's alignment), got \(value)")
            }
        }
        try validate(value, key: key)
        keys.insert(key)
        metadata.append((key, value))
    }

    public func addMetadata(_ pairs: [(String, GGUFValue)]) throws {
        for (k, v) in pairs { try addMetadata(k, v) }
    }

    private func validate(_ v: GGUFValue, key: String) throws {
        guard case let .array(items) = v else { return }
        guard let first = items.first else { return }
        let t = Self.typeCode(first)
        for item in items {
            guard Self.typeCode(item) == t else {
                throw ModelIOError(file: url.path, "metadata \(key): array mixes value types (\(first) and \(item))")
            }
            try validate(item, key: key)
        }
    }

    /// Declares the next tensor of the file. `shape` is PyTorch order, 1 to 4 dims.
    public func declareTensor(_ name: String, type: DType, shape: [Int]) throws {
        guard !headerWritten, !closed else {
            throw ModelIOError(file: url.path, "tensor \(name): declared after tensor data started")
        }
        guard !name.isEmpty, name.utf8.count < 64 else {
            throw ModelIOError(file: url.path, "tensor \"\(name)\": name must be 1 to 63 bytes (ggml's limit)")
        }
        guard tensorIndex[name] == nil else { throw ModelIOError(file: url.path, "tensor \(name): declared twice") }
        guard (1...4).contains(shape.count) else {
            throw ModelIOError(file: url.path, "tensor \(name): \(shape.count) dimensions (GGUF takes 1 to 4)")
        }
        guard GGUFBlocks.ggmlTypeID(type) != nil else {
            throw ModelIOError(file: url.path, "tensor \(name): type \(type.rawValue) has no GGUF encoding")
        }
        let size: Int
        do { size = try GGUFBlocks.byteCount(type: type, shape: shape, name: name) } catch let e as ModelIOError {
            throw ModelIOError(file: url.path, "tensor \(e.file): \(e.what)")
        }
        let start: Int
        if let last = tensors.last { start = Self.align(last.offset + last.byteCount, alignment) } else { start = 0 }
        tensorIndex[name] = tensors.count
        tensors.append(DeclaredTensor(name: name, type: type, shape: shape, byteCount: size, offset: start))
    }

    // MARK: Layout

    static func align(_ x: Int, _ a: Int) -> Int { (x + a - 1) / a * a }

    /// Bytes of the header (up to the aligned start of tensor data), from the declarations.
    public var headerByteCount: Int { Self.align(headerBytes().count, alignment) }

    /// Size of the finished file.
    public var fileByteCount: Int {
        let data = tensors.last.map { Self.align($0.offset + $0.byteCount, alignment) } ?? 0
        return headerByteCount + data
    }

    private var allMetadata: [(key: String, value: GGUFValue)] {
        keys.contains("general.alignment") ? metadata : metadata + [("general.alignment", .uint32(UInt32(alignment)))]
    }

    /// The serialized header: magic, version, counts, key-values, tensor infos (unpadded).
    func headerBytes() -> [UInt8] {
        var b = GGUFByteBuffer()
        b.u32(0x4655_4747)  // "GGUF"
        b.u32(3)
        let kvs = allMetadata
        b.u64(UInt64(tensors.count))
        b.u64(UInt64(kvs.count))
        for (k, v) in kvs {
            b.string(k)
            b.u32(Self.typeCode(v))
            b.value(v)
        }
        for t in tensors {
            b.string(t.name)
            b.u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { b.u64(UInt64(d)) }
            b.u32(GGUFBlocks.ggmlTypeID(t.type)!)
            b.u64(UInt64(t.offset))
        }
        return b.bytes
    }

    /// GGUF value type id of a metadata value.
    public static func typeCode(_ v: GGUFValue) -> UInt32 {
        switch v {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    // MARK: Streaming

    private func writeHeaderIfNeeded() throws {
        guard !headerWritten else { return }
        headerWritten = true
        let o = try WriterOutputFile(url: url, replace: replace)
        out = o
        let h = headerBytes()
        headerSize = Self.align(h.count, alignment)
        try o.write(h)
        try o.write(zeros: headerSize - h.count)
    }

    /// The tensor `writeTensor` expects next, or nil when all are written.
    public var nextTensor: DeclaredTensor? { next < tensors.count ? tensors[next] : nil }

    /// Writes the next declared tensor's data as stored (already encoded as its type).
    /// Tensors must come in declaration order; the byte count must match the declaration.
    public func writeTensor(_ name: String, bytes: UnsafeRawBufferPointer) throws {
        try writeTensor(name, byteCount: bytes.count) { write in try write(bytes) }
    }

    /// Writes the next declared tensor's data (as stored) copied from bytes `range` of
    /// `file`, read a piece at a time: a large tensor (a 7B model's F16 token_embd is 262 MB)
    /// passes through without being held in memory or mapped (mapped pages would stay in
    /// the process's resident memory).
    public func writeTensor(_ name: String, copying range: Range<Int>, of file: URL) throws {
        try writeTensor(name, byteCount: range.count) { write in
            try FileRange(url: file, range: range).forEachPiece { try write($0) }
        }
    }

    /// The next tensor's `byteCount` bytes, handed by `body` to its `write` in order.
    private func writeTensor(
        _ name: String, byteCount: Int, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        guard !closed else {
            throw ModelIOError(file: url.path, "tensor \(name): written after the writer was finished or failed")
        }
        guard next < tensors.count else {
            fail()
            throw ModelIOError(
                file: url.path, "tensor \(name): not declared (all \(tensors.count) declared tensors already written)")
        }
        let t = tensors[next]
        guard t.name == name else {
            fail()
            let what = tensorIndex[name] == nil ? "not declared" : "written out of order"
            throw ModelIOError(file: url.path, "tensor \(name): \(what), expected \(t.name)")
        }
        guard byteCount == t.byteCount else {
            fail()
            throw ModelIOError(
                file: url.path,
                "tensor \(name): \(byteCount) bytes, but declared \(t.type.rawValue) \(t.shape) takes \(t.byteCount)")
        }
        do {
            try writeHeaderIfNeeded()
            let o = out!
            precondition(o.offset == headerSize + t.offset, "GGUFWriter: offset bookkeeping broken")
            try body { try o.write($0) }
            guard o.offset == headerSize + t.offset + t.byteCount else {
                throw ModelIOError(file: url.path, "tensor \(name): its source gave a wrong number of bytes")
            }
            try o.write(zeros: Self.align(t.byteCount, alignment) - t.byteCount)
        } catch {
            fail()
            throw error
        }
        next += 1
    }

    public func writeTensor(_ name: String, bytes: Data) throws {
        try bytes.withUnsafeBytes { try writeTensor(name, bytes: $0) }
    }

    /// Packs quantized blocks and writes them; type and shape must match the declaration.
    public func writeTensor(_ name: String, quantized q: GGUFQuantizedTensor) throws {
        try checkNext(name, type: q.type, shape: q.shape)
        let data: Data
        do { data = try GGUFBlocks.pack(q, name: name) } catch let e as ModelIOError {
            fail()
            throw ModelIOError(file: url.path, "tensor \(e.file): \(e.what)")
        }
        try writeTensor(name, bytes: data)
    }

    /// Encodes Float32 values (row-major, the declared shape) as the declared type:
    /// F32/F16/BF16 directly, Q8_0/Q4_0/Q4_1 with ggml's reference round-to-nearest.
    public func writeTensor(_ name: String, floats: [Float]) throws {
        guard next < tensors.count, tensors[next].name == name else {
            try writeTensor(name, bytes: Data())  // the ordering error
            return
        }
        let t = tensors[next]
        let data: Data
        do { data = try GGUFBlocks.encode(floats, shape: t.shape, type: t.type, name: name) } catch let e
            as ModelIOError
        {
            fail()
            throw ModelIOError(file: url.path, "tensor \(e.file): \(e.what)")
        }
        try writeTensor(name, bytes: data)
    }

    private func checkNext(_ name: String, type: DType, shape: [Int]) throws {
        guard next < tensors.count, tensors[next].name == name else {
            try writeTensor(name, bytes: Data())  // the ordering error
            return
        }
        let t = tensors[next]
        guard t.type == type, t.shape == shape else {
            fail()
            throw ModelIOError(
                file: url.path,
                "tensor \(name): given \(type.rawValue) \(shape), declared \(t.type.rawValue) \(t.shape)")
        }
    }

    /// Checks that every declared tensor was written, then renames the file into place.
    public func finish() throws {
        guard !closed else { throw ModelIOError(file: url.path, "finish after the writer was finished or failed") }
        if next < tensors.count {
            let missing = tensors[next].name
            fail()
            throw ModelIOError(file: url.path, "tensor \(missing): declared but never written")
        }
        do { try writeHeaderIfNeeded() } catch {
            fail()
            throw error
        }
        closed = true
        let o = out.take()!
        precondition(o.offset == fileByteCount, "GGUFWriter: size bookkeeping broken")
        try o.commit()
    }

    /// Gives up: removes the temporary file, leaves `url` untouched.
    public func abandon() { fail() }

    private func fail() {
        closed = true
        out.take()?.discard()
    }
}

/// Little-endian serialization of GGUF header items.
struct GGUFByteBuffer {
    var bytes: [UInt8] = []

    mutating func int<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func u32(_ v: UInt32) { int(v) }
    mutating func u64(_ v: UInt64) { int(v) }
    mutating func string(_ s: String) {
        let u = Array(s.utf8)
        u64(UInt64(u.count))
        bytes.append(contentsOf: u)
    }

    mutating func value(_ v: GGUFValue) {
        switch v {
        case let .uint8(x): int(x)
        case let .int8(x): int(x)
        case let .uint16(x): int(x)
        case let .int16(x): int(x)
        case let .uint32(x): int(x)
        case let .int32(x): int(x)
        case let .uint64(x): int(x)
        case let .int64(x): int(x)
        case let .float32(x): int(x.bitPattern)
        case let .float64(x): int(x.bitPattern)
        case let .bool(x): bytes.append(x ? 1 : 0)
        case let .string(s): string(s)
        case let .array(items):
            // An array value is its element type, count, then the elements (arrays of
            // arrays nest the same way). An empty array's element type is not
            // recoverable; uint8 is as good as any.
            u32(items.first.map(GGUFWriter.typeCode) ?? 0)
            u64(UInt64(items.count))
            for item in items { value(item) }
        }
    }
}
