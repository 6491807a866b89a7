import Foundation
import Tensor

/// A GGUF (v2/v3) file: header, metadata, tensor table, validated on open;
/// tensor data is memory-mapped and read only when a tensor is asked for.
///
/// Layout: "GGUF", u32 version, u64 tensor count, u64 key-value count, the
/// key-values, the tensor infos (name, n_dims, ne[] innermost first, ggml type,
/// offset into the data section), padding to `general.alignment`, tensor data.
public final class GGUFFile: Sendable {
    public struct Tensor: Sendable {
        public var info: TensorInfo
        public var type: GGMLType
        /// ggml dimensions, innermost first.
        public var ne: [Int]
        /// Offset relative to the data section, as stored.
        public var relativeOffset: Int
        /// Absolute byte range in the file.
        public var range: Range<Int>
    }

    public static let defaultAlignment = 32
    /// Deepest nesting of metadata arrays accepted (guards the recursion).
    static let maxArrayDepth = 8

    public let url: URL
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensors in file (table) order.
    public let tensorTable: [Tensor]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataOffset: Int
    public var fileSize: Int { map.size }

    let map: MappedFile
    private let index: [String: Int]

    /// The tensor table's infos, built once (callers look tensors up often).
    public let tensors: [TensorInfo]

    public convenience init(_ url: URL) throws { try self.init(map: MappedFile(url)) }

    /// Reads GGUF bytes held in memory; `name` stands for the file in errors.
    public convenience init(bytes: Data, name: String) throws {
        try self.init(map: MappedFile(copying: bytes, name: name))
    }

    init(map: MappedFile) throws {
        url = map.url
        self.map = map
        let file = map.name
        var c = ByteCursor(map.bytes, file: file)
        let (version, tensorCount, kvCount) = try Self.readHeader(&c, size: map.size)
        self.version = version
        let (meta, keys) = try Self.readMetadata(&c, count: kvCount)
        metadata = meta
        metadataKeys = keys
        let raw = try Self.readTensorInfos(&c, count: tensorCount, size: map.size)
        alignment = try Self.alignment(meta, file: file)
        guard let start = alignUp(c.pos, alignment) else {
            throw ModelIOError(file: file, "data section offset overflows")
        }
        dataOffset = start
        let (table, index) = try Self.locate(raw, dataStart: start, alignment: alignment, map: map)
        tensorTable = table
        tensors = table.map(\.info)
        self.index = index
    }

    /// Magic, version, tensor count and metadata count.
    private static func readHeader(_ c: inout ByteCursor, size: Int) throws -> (UInt32, Int, Int) {
        let magic = try c.u32("magic")
        guard magic == 0x4655_4747 else {  // "GGUF" little-endian
            throw ModelIOError(file: c.file, String(format: "not a GGUF file (magic 0x%08x)", magic))
        }
        let version = try c.u32("version")
        guard version == 2 || version == 3 else {
            throw ModelIOError(file: c.file, "unsupported GGUF version \(version)")
        }
        let tensorCount = try c.count("tensor count")
        let kvCount = try c.count("metadata count")
        // Each key-value needs at least 13 bytes (key length, type, 1-byte value).
        guard kvCount <= c.remaining / 13 else {
            throw ModelIOError(file: c.file, "metadata count \(kvCount) cannot fit in the file (size \(size))")
        }
        return (version, tensorCount, kvCount)
    }

    /// The key-values and the keys in file order.
    private static func readMetadata(_ c: inout ByteCursor, count: Int) throws -> ([String: GGUFValue], [String]) {
        var meta: [String: GGUFValue] = [:]
        var keys: [String] = []
        keys.reserveCapacity(count)
        for i in 0..<count {
            let key = try c.string("metadata key #\(i)")
            let type = try c.u32("key '\(key)': type")
            let value = try readValue(&c, type: type, key: key, depth: 0)
            guard meta.updateValue(value, forKey: key) == nil else {
                throw ModelIOError(file: c.file, "key '\(key)': duplicate")
            }
            keys.append(key)
        }
        return (meta, keys)
    }

    /// A tensor info as stored: name, ne (innermost first), type and offset in the data section.
    private typealias RawTensorInfo = (name: String, ne: [Int], type: GGMLType, offset: Int)

    private static func readTensorInfos(_ c: inout ByteCursor, count: Int, size: Int) throws -> [RawTensorInfo] {
        // A tensor info needs at least 24 bytes (name length, n_dims, type, offset).
        guard count <= c.remaining / 24 else {
            throw ModelIOError(file: c.file, "tensor count \(count) cannot fit in the file (size \(size))")
        }
        var raw: [RawTensorInfo] = []
        raw.reserveCapacity(count)
        for i in 0..<count {
            let name = try c.string("tensor #\(i) name")
            let what = "tensor '\(name)'"
            let nDims = try c.u32("\(what): n_dims")
            guard nDims <= 4 else { throw ModelIOError(file: c.file, "\(what): \(nDims) dimensions (at most 4)") }
            var ne: [Int] = []
            for d in 0..<Int(nDims) { ne.append(try c.count("\(what): ne[\(d)]")) }
            let typeID = try c.u32("\(what): type")
            guard let type = GGMLType(rawValue: typeID) else {
                throw ModelIOError(file: c.file, "\(what): unknown ggml type id \(typeID)")
            }
            let offset = try c.count("\(what): offset")
            raw.append((name, ne, type, offset))
        }
        return raw
    }

    private static func alignment(_ meta: [String: GGUFValue], file: String) throws -> Int {
        guard let a = meta["general.alignment"] else { return defaultAlignment }
        guard let v = a.int, v > 0, v <= 1 << 30, v & (v - 1) == 0 else {
            throw ModelIOError(file: file, "key 'general.alignment': \(a) is not a power of two")
        }
        return v
    }

    /// Checks every tensor's type, shape and byte range and builds the table and name index.
    private static func locate(
        _ raw: [RawTensorInfo], dataStart start: Int, alignment: Int, map: MappedFile
    ) throws -> ([Tensor], [String: Int]) {
        let file = map.name
        var table: [Tensor] = []
        var index: [String: Int] = [:]
        table.reserveCapacity(raw.count)
        for t in raw {
            let what = "tensor '\(t.name)'"
            guard let dtype = t.type.dtype else {
                throw ModelIOError(
                    file: file, "\(what): ggml type \(t.type.name) (id \(t.type.rawValue)) is not supported")
            }
            let ne0 = t.ne.first ?? 1
            guard ne0 % t.type.blockSize == 0 else {
                throw ModelIOError(
                    file: file,
                    "\(what): ne[0] = \(ne0) is not a multiple of the \(t.type.name) block size \(t.type.blockSize)")
            }
            guard let elements = checkedProduct(t.ne), let rowBytes = t.type.rowBytes(ne0),
                let bytes = checkedMul(rowBytes, ne0 == 0 ? 0 : elements / ne0)
            else {
                throw ModelIOError(file: file, "\(what): shape \(t.ne) overflows")
            }
            guard t.offset % alignment == 0 else {
                throw ModelIOError(
                    file: file, "\(what): data offset \(t.offset) is not a multiple of the alignment \(alignment)")
            }
            guard let lo = checkedAdd(start, t.offset), let hi = checkedAdd(lo, bytes), hi <= map.size else {
                throw ModelIOError(
                    file: file,
                    "\(what): data [\(start &+ t.offset), \(start &+ t.offset &+ bytes)) past end of file (size \(map.size))"
                )
            }
            guard index.updateValue(table.count, forKey: t.name) == nil else {
                throw ModelIOError(file: file, "\(what): duplicate tensor name")
            }
            let info = TensorInfo(name: t.name, dtype: dtype, shape: t.ne.reversed(), byteCount: bytes, file: map.url)
            table.append(Tensor(info: info, type: t.type, ne: t.ne, relativeOffset: t.offset, range: lo..<hi))
        }
        try checkNoOverlap(table, file: file)
        return (table, index)
    }

    /// Tensor data must not overlap (a sign of a corrupt or hostile table).
    private static func checkNoOverlap(_ table: [Tensor], file: String) throws {
        let byStart = table.filter { !$0.range.isEmpty }.sorted { $0.range.lowerBound < $1.range.lowerBound }
        for (a, b) in zip(byStart, byStart.dropFirst()) where a.range.upperBound > b.range.lowerBound {
            throw ModelIOError(
                file: file,
                "tensor '\(b.info.name)': data [\(b.range.lowerBound), \(b.range.upperBound)) overlaps tensor '\(a.info.name)' [\(a.range.lowerBound), \(a.range.upperBound))"
            )
        }
    }

    /// One metadata value of GGUF value type `type` (ids 0...12).
    static func readValue(_ c: inout ByteCursor, type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        let what = "key '\(key)'"
        switch type {
        case 0: return .uint8(try c.u8(what))
        case 1: return .int8(Int8(bitPattern: try c.u8(what)))
        case 2: return .uint16(try c.load(UInt16.self, what))
        case 3: return .int16(try c.load(Int16.self, what))
        case 4: return .uint32(try c.u32(what))
        case 5: return .int32(try c.load(Int32.self, what))
        case 6: return .float32(Float(bitPattern: try c.u32(what)))
        case 7: return .bool(try c.u8(what) != 0)
        case 8: return .string(try c.string(what))
        case 9:
            guard depth < maxArrayDepth else {
                throw ModelIOError(file: c.file, "\(what): arrays nested deeper than \(maxArrayDepth)")
            }
            let elementType = try c.u32("\(what): array element type")
            let count = try c.count("\(what): array length")
            guard let size = minValueSize(elementType) else {
                throw ModelIOError(file: c.file, "\(what): unknown array element type \(elementType)")
            }
            guard count <= c.remaining / size else {
                throw ModelIOError(
                    file: c.file, "\(what): array of \(count) elements runs past end of file (size \(c.buf.count))")
            }
            var values: [GGUFValue] = []
            values.reserveCapacity(count)
            for _ in 0..<count { values.append(try readValue(&c, type: elementType, key: key, depth: depth + 1)) }
            return .array(values)
        case 10: return .uint64(try c.u64(what))
        case 11: return .int64(try c.load(Int64.self, what))
        case 12: return .float64(Double(bitPattern: try c.u64(what)))
        default: throw ModelIOError(file: c.file, "\(what): unknown value type \(type)")
        }
    }

    /// Fewest bytes one value of a type occupies (for bounding array lengths).
    static func minValueSize(_ type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 8: return 8
        case 9: return 12
        case 10, 11, 12: return 8
        default: return nil
        }
    }

    public func tensor(_ name: String) -> Tensor? { index[name].map { tensorTable[$0] } }

    /// The tensor dequantized to Float32 (see `MappedFile.load`).
    public func load(_ name: String) throws -> Matrix { try map.load(map.entry(tensor(name), name)) }

    /// The tensor's stored bytes.
    public func rawBytes(_ name: String) throws -> Data { map.data(try map.entry(tensor(name), name).range) }

    /// Calls `body` with the tensor's stored bytes in place (no copy).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try body(map.bytes(of: map.entry(tensor(name), name)))
    }
}
