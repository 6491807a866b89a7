import Foundation
import Tensor

/// One safetensors file: u64 header length, a JSON header mapping tensor names
/// to {dtype, shape, data_offsets [begin, end)} relative to the end of the
/// header (plus an optional string map "__metadata__"), then the data.
/// Validated on open; data is memory-mapped and read per tensor.
public final class SafeTensorsFile: Sendable {
    public struct Tensor: Sendable {
        public var info: TensorInfo
        /// Absolute byte range in the file.
        public var range: Range<Int>
    }

    /// The reference implementation refuses headers above 100 MB; so do we.
    static let maxHeaderBytes = 100_000_000

    public let url: URL
    /// Tensors in data order.
    public let tensorTable: [Tensor]
    /// The "__metadata__" strings.
    public let metadata: [String: String]
    public let dataOffset: Int
    public var fileSize: Int { map.size }

    let map: MappedFile
    private let index: [String: Int]

    public var tensors: [TensorInfo] { tensorTable.map(\.info) }

    static let dtypes: [String: DType] = [
        "F32": .f32, "F16": .f16, "BF16": .bf16, "F64": .f64,
        "I64": .i64, "I32": .i32, "I16": .i16, "I8": .i8, "U8": .u8,
    ]

    static func elementSize(_ t: DType) -> Int {
        switch t {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        default: return 1
        }
    }

    public init(_ url: URL) throws {
        self.url = url
        map = try MappedFile(url)
        let file = map.name
        guard map.size >= 8 else { throw ModelIOError(file: file, "truncated: \(map.size) bytes, no header length") }
        let n = UInt64(littleEndian: map.bytes.loadUnaligned(as: UInt64.self))
        guard n <= UInt64(map.size - 8) else {
            throw ModelIOError(file: file, "header length \(n) past end of file (size \(map.size))")
        }
        guard n >= 2, n <= UInt64(Self.maxHeaderBytes) else {
            throw ModelIOError(file: file, "header length \(n) out of range")
        }
        let headerBytes = Int(n)
        dataOffset = 8 + headerBytes

        let json = try JSONValue.parse(map.data(8..<dataOffset), file: file, what: "header")
        guard let header = json.object else { throw ModelIOError(file: file, "header is not a JSON object") }

        var meta: [String: String] = [:]
        var table: [Tensor] = []
        // Sorted, so the first error reported does not depend on hash order.
        for (name, v) in header.sorted(by: { $0.key < $1.key }) {
            if name == "__metadata__" {
                meta = try Self.metadata(v, file: file)
            } else {
                table.append(try Self.entry(name, v, dataOffset: dataOffset, file: file, url: url))
            }
        }
        try Self.checkExtents(&table, fileSize: map.size, file: file)
        tensorTable = table
        metadata = meta
        index = Dictionary(table.enumerated().map { ($1.info.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// `__metadata__`: an object of strings.
    private static func metadata(_ v: JSONValue, file: String) throws -> [String: String] {
        guard let o = v.object else { throw ModelIOError(file: file, "key '__metadata__': not an object") }
        var meta: [String: String] = [:]
        for (k, x) in o {
            guard let s = x.string else { throw ModelIOError(file: file, "key '__metadata__.\(k)': not a string") }
            meta[k] = s
        }
        return meta
    }

    /// One tensor's header entry, every field checked; offsets made absolute.
    private static func entry(
        _ name: String, _ v: JSONValue, dataOffset: Int, file: String, url: URL
    ) throws
        -> Tensor
    {
        let what = "tensor '\(name)'"
        guard let o = v.object else { throw ModelIOError(file: file, "\(what): entry is not an object") }
        guard let dtypeName = o["dtype"]?.string else { throw ModelIOError(file: file, "\(what): missing dtype") }
        guard let dtype = Self.dtypes[dtypeName] else {
            throw ModelIOError(file: file, "\(what): unsupported dtype '\(dtypeName)'")
        }
        guard let shapeJSON = o["shape"]?.array else { throw ModelIOError(file: file, "\(what): missing shape") }
        var shape: [Int] = []
        for d in shapeJSON {
            guard let i = d.int, i >= 0 else {
                throw ModelIOError(
                    file: file, "\(what): shape \(shapeJSON.map(\.description)) is not a list of non-negative integers")
            }
            shape.append(i)
        }
        guard let offs = o["data_offsets"]?.array, offs.count == 2, let begin = offs[0].int, let end = offs[1].int
        else {
            throw ModelIOError(file: file, "\(what): data_offsets is not a pair of integers")
        }
        guard 0 <= begin, begin <= end else {
            throw ModelIOError(
                file: file, "\(what): data_offsets [\(begin), \(end)] are not an ordered pair of non-negative offsets")
        }
        guard end <= Int.max - dataOffset else {
            throw ModelIOError(file: file, "\(what): data_offsets [\(begin), \(end)] overflow")
        }
        guard let count = checkedProduct(shape), let bytes = checkedMul(count, Self.elementSize(dtype)) else {
            throw ModelIOError(file: file, "\(what): shape \(shape) overflows")
        }
        guard bytes == end - begin else {
            throw ModelIOError(
                file: file,
                "\(what): shape \(shape) of \(dtypeName) needs \(bytes) bytes but data_offsets span \(end - begin)")
        }
        let info = TensorInfo(name: name, dtype: dtype, shape: shape, byteCount: bytes, file: url)
        return Tensor(info: info, range: (dataOffset + begin)..<(dataOffset + end))
    }

    /// Structure first, then the file's extent (a truncated file still reports a bad entry);
    /// then no two tensors overlap. Leaves `table` in file order.
    private static func checkExtents(_ table: inout [Tensor], fileSize: Int, file: String) throws {
        for t in table where t.range.upperBound > fileSize {
            throw ModelIOError(
                file: file,
                "tensor '\(t.info.name)': data [\(t.range.lowerBound), \(t.range.upperBound)) past end of file (size \(fileSize))"
            )
        }
        table.sort { ($0.range.lowerBound, $0.info.name) < ($1.range.lowerBound, $1.info.name) }
        for (a, b) in zip(table, table.dropFirst()) where a.range.upperBound > b.range.lowerBound && !b.range.isEmpty {
            throw ModelIOError(
                file: file,
                "tensor '\(b.info.name)': data [\(b.range.lowerBound), \(b.range.upperBound)) overlaps tensor '\(a.info.name)' [\(a.range.lowerBound), \(a.range.upperBound))"
            )
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

extension JSONValue: CustomStringConvertible {
    var description: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return "\(b)"
        case let .int(i): return "\(i)"
        case let .double(d): return "\(d)"
        case let .string(s): return "\"\(s)\""
        case let .array(a): return "[\(a.map(\.description).joined(separator: ", "))]"
        case .object: return "{...}"
        }
    }
}
