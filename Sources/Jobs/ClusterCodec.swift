import Foundation

// A compact, exact binary form of the Codable task payloads, for the cluster's wire
// and its durable result files. JSON would be too slow and too large for Hessians
// (millions of fixed-point words) and quantized codes, and it does not keep every
// Float bit pattern. Numbers are stored bit-exactly; arrays of fixed-width numbers
// are stored as one raw little-endian blob. Decoding trusts no length: every count
// is checked against the bytes that remain.

public enum ClusterCodec {
    static let magic: [UInt8] = Array("KLNB".utf8) + [1]
    /// Deepest nesting accepted when decoding (payloads nest a few levels).
    static let maxDepth = 64

    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        var w = Writer()
        w.bytes.append(contentsOf: magic)
        w.write(try BinEncoder.box(value, path: []))
        return Data(w.bytes)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        var r = Reader(bytes: [UInt8](data))
        guard r.bytes.count >= magic.count, Array(r.bytes[0..<magic.count]) == magic else {
            throw ClusterCodecError("payload does not start with the KLNB v1 magic")
        }
        r.offset = magic.count
        let v = try r.read(depth: 0)
        guard r.offset == r.bytes.count else {
            throw ClusterCodecError("\(r.bytes.count - r.offset) trailing bytes after the payload")
        }
        return try BinDecoder.unbox(T.self, from: v, path: [])
    }
}

public struct ClusterCodecError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = "payload: " + d }
}

// MARK: value tree

enum BlobKind: UInt8 { case u8 = 1, i8, u16, i16, u32, i32, u64, i64, f32, f64 }

final class ArrayRef { var items: [BinValue] = [] }
final class ObjectRef {
    var items: [(String, BinValue)] = []
    var index: [String: BinValue] = [:]
}

enum BinValue {
    case null, bool(Bool), int(Int64), uint(UInt64), float(Float), double(Double), string(String)
    case blob(BlobKind, [UInt8])
    case array(ArrayRef)
    case object(ObjectRef)

    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "bool"
        case .int, .uint: return "integer"
        case .float, .double: return "number"
        case .string: return "string"
        case .blob: return "number array"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

struct Writer {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func str(_ s: String) {
        let u = Array(s.utf8)
        u64(UInt64(u.count))
        bytes.append(contentsOf: u)
    }

    mutating func write(_ v: BinValue) {
        switch v {
        case .null: u8(0)
        case .bool(let b): u8(b ? 2 : 1)
        case .int(let i):
            u8(3)
            u64(UInt64(bitPattern: i))
        case .uint(let u):
            u8(4)
            u64(u)
        case .float(let f):
            u8(5)
            u64(UInt64(f.bitPattern))
        case .double(let d):
            u8(6)
            u64(d.bitPattern)
        case .string(let s):
            u8(7)
            str(s)
        case .blob(let k, let b):
            u8(8)
            u8(k.rawValue)
            u64(UInt64(b.count))
            bytes.append(contentsOf: b)
        case .array(let a):
            u8(9)
            u64(UInt64(a.items.count))
            for x in a.items { write(x) }
        case .object(let o):
            u8(10)
            u64(UInt64(o.items.count))
            for (k, x) in o.items {
                str(k)
                write(x)
            }
        }
    }
}

struct Reader {
    var bytes: [UInt8]
    var offset = 0

    mutating func take(_ n: UInt64, _ what: String) throws -> ArraySlice<UInt8> {
        guard n <= UInt64(bytes.count - offset) else {
            throw ClusterCodecError("\(what): \(n) bytes announced at offset \(offset), \(bytes.count - offset) remain")
        }
        let s = bytes[offset..<offset + Int(n)]
        offset += Int(n)
        return s
    }
    mutating func u8(_ what: String) throws -> UInt8 { try take(1, what).first! }
    mutating func u64(_ what: String) throws -> UInt64 {
        let s = try take(8, what)
        var v: UInt64 = 0
        for (i, b) in s.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }
    mutating func str(_ what: String) throws -> String {
        let n = try u64(what + " length")
        guard let s = String(bytes: try take(n, what), encoding: .utf8) else {
            throw ClusterCodecError("\(what) is not UTF-8")
        }
        return s
    }

    mutating func read(depth: Int) throws -> BinValue {
        guard depth <= ClusterCodec.maxDepth else {
            throw ClusterCodecError("nesting deeper than \(ClusterCodec.maxDepth)")
        }
        let tag = try u8("tag")
        switch tag {
        case 0: return .null
        case 1: return .bool(false)
        case 2: return .bool(true)
        case 3: return .int(Int64(bitPattern: try u64("int")))
        case 4: return .uint(try u64("uint"))
        case 5:
            let b = try u64("float")
            guard b <= UInt64(UInt32.max) else { throw ClusterCodecError("float bit pattern \(b) over 32 bits") }
            return .float(Float(bitPattern: UInt32(b)))
        case 6: return .double(Double(bitPattern: try u64("double")))
        case 7: return .string(try str("string"))
        case 8:
            guard let k = BlobKind(rawValue: try u8("blob kind")) else {
                throw ClusterCodecError("unknown number array kind")
            }
            let n = try u64("blob length")
            return .blob(k, Array(try take(n, "number array")))
        case 9:
            let n = try u64("array count")
            // Each item takes at least one byte: a count beyond the remaining bytes is a lie.
            guard n <= UInt64(bytes.count - offset) else {
                throw ClusterCodecError("array count \(n) exceeds the remaining bytes")
            }
            let a = ArrayRef()
            // Capped: every nesting level may announce the whole remainder, and 64 levels
            // of full reservations would allocate ~1000x the payload before reading an item.
            a.items.reserveCapacity(Int(min(n, 4096)))
            for _ in 0..<n { a.items.append(try read(depth: depth + 1)) }
            return .array(a)
        case 10:
            let n = try u64("object count")
            guard n <= UInt64(bytes.count - offset) else {
                throw ClusterCodecError("object count \(n) exceeds the remaining bytes")
            }
            let o = ObjectRef()
            for _ in 0..<n {
                let k = try str("key")
                let v = try read(depth: depth + 1)
                o.items.append((k, v))
                o.index[k] = v
            }
            return .object(o)
        default:
            throw ClusterCodecError("unknown tag \(tag) at offset \(offset - 1)")
        }
    }
}

// MARK: fixed-width number arrays as blobs

private func blob<E>(_ a: [E], _ k: BlobKind) -> BinValue {
    .blob(k, a.withUnsafeBytes { Array($0) })
}

private func unblob<E>(_ b: [UInt8], as _: E.Type) throws -> [E] {
    let stride = MemoryLayout<E>.stride
    guard b.count % stride == 0 else {
        throw ClusterCodecError("number array of \(b.count) bytes is not a multiple of \(stride)")
    }
    return b.withUnsafeBytes { raw in
        Array(UnsafeBufferPointer(start: raw.baseAddress?.assumingMemoryBound(to: E.self), count: b.count / stride))
    }
}

// Exact type tests (not `as?` casts: an empty array of any element type casts to [UInt8]).
private func fastBox<T>(_ v: T) -> BinValue? {
    if T.self == [UInt8].self { return .blob(.u8, v as! [UInt8]) }
    if T.self == Data.self { return .blob(.u8, [UInt8](v as! Data)) }
    if T.self == [Int8].self { return blob(v as! [Int8], .i8) }
    if T.self == [UInt16].self { return blob(v as! [UInt16], .u16) }
    if T.self == [Int16].self { return blob(v as! [Int16], .i16) }
    if T.self == [UInt32].self { return blob(v as! [UInt32], .u32) }
    if T.self == [Int32].self { return blob(v as! [Int32], .i32) }
    if T.self == [UInt64].self { return blob(v as! [UInt64], .u64) }
    if T.self == [Int64].self { return blob(v as! [Int64], .i64) }
    if T.self == [Float].self { return blob(v as! [Float], .f32) }
    if T.self == [Double].self { return blob(v as! [Double], .f64) }
    return nil
}

private func fastUnbox<T>(_ t: T.Type, _ v: BinValue) throws -> T? {
    guard case let .blob(k, b) = v else { return nil }
    func want(_ expected: BlobKind) throws {
        guard k == expected else { throw ClusterCodecError("number array of kind \(k), expected \(expected)") }
    }
    if T.self == [UInt8].self {
        try want(.u8)
        return b as? T
    }
    if T.self == Data.self {
        try want(.u8)
        return Data(b) as? T
    }
    if T.self == [Int8].self {
        try want(.i8)
        return try unblob(b, as: Int8.self) as? T
    }
    if T.self == [UInt16].self {
        try want(.u16)
        return try unblob(b, as: UInt16.self) as? T
    }
    if T.self == [Int16].self {
        try want(.i16)
        return try unblob(b, as: Int16.self) as? T
    }
    if T.self == [UInt32].self {
        try want(.u32)
        return try unblob(b, as: UInt32.self) as? T
    }
    if T.self == [Int32].self {
        try want(.i32)
        return try unblob(b, as: Int32.self) as? T
    }
    if T.self == [UInt64].self {
        try want(.u64)
        return try unblob(b, as: UInt64.self) as? T
    }
    if T.self == [Int64].self {
        try want(.i64)
        return try unblob(b, as: Int64.self) as? T
    }
    if T.self == [Float].self {
        try want(.f32)
        return try unblob(b, as: Float.self) as? T
    }
    if T.self == [Double].self {
        try want(.f64)
        return try unblob(b, as: Double.self) as? T
    }
    throw ClusterCodecError("a number array where \(T.self) was expected")
}

// MARK: encoder

final class BinEncoder: Encoder {
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] = [:]
    var root: BinValue?

    init(path: [CodingKey]) { codingPath = path }

    static func box<T: Encodable>(_ v: T, path: [CodingKey]) throws -> BinValue {
        if let f = fastBox(v) { return f }
        let e = BinEncoder(path: path)
        try v.encode(to: e)
        return e.root ?? .object(ObjectRef())
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let o: ObjectRef
        if case .object(let existing)? = root {
            o = existing
        } else {
            o = ObjectRef()
            root = .object(o)
        }
        return KeyedEncodingContainer(KeyedEnc<Key>(obj: o, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        let a: ArrayRef
        if case .array(let existing)? = root {
            a = existing
        } else {
            a = ArrayRef()
            root = .array(a)
        }
        return UnkeyedEnc(arr: a, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { SingleEnc(enc: self) }
}

struct KeyedEnc<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let obj: ObjectRef
    var codingPath: [CodingKey]

    func put(_ v: BinValue, _ key: Key) { obj.items.append((key.stringValue, v)) }
    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(.double(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(.float(value), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(.int(value), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(.uint(value), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(.int(Int64(value)), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(.uint(UInt64(value)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(.uint(UInt64(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(.uint(UInt64(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(.uint(UInt64(value)), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        put(try BinEncoder.box(value, path: codingPath + [key]), key)
    }
    mutating func nestedContainer<NK: CodingKey>(
        keyedBy keyType: NK.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NK> {
        let o = ObjectRef()
        put(.object(o), key)
        return KeyedEncodingContainer(KeyedEnc<NK>(obj: o, codingPath: codingPath + [key]))
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        let a = ArrayRef()
        put(.array(a), key)
        return UnkeyedEnc(arr: a, codingPath: codingPath + [key])
    }
    mutating func superEncoder() -> Encoder { SuperEnc(obj: obj, key: "super", codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> Encoder {
        SuperEnc(obj: obj, key: key.stringValue, codingPath: codingPath)
    }
}

/// An encoder whose value lands in a parent object under `key` (for superEncoder).
final class SuperEnc: Encoder {
    let inner: BinEncoder
    var codingPath: [CodingKey] { inner.codingPath }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    init(obj: ObjectRef, key: String, codingPath: [CodingKey]) {
        inner = BinEncoder(path: codingPath)
        let o = ObjectRef()
        inner.root = .object(o)
        obj.items.append((key, .object(o)))
    }
    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        inner.container(keyedBy: type)
    }
    func unkeyedContainer() -> UnkeyedEncodingContainer { inner.unkeyedContainer() }
    func singleValueContainer() -> SingleValueEncodingContainer { inner.singleValueContainer() }
}

struct UnkeyedEnc: UnkeyedEncodingContainer {
    let arr: ArrayRef
    var codingPath: [CodingKey]
    var count: Int { arr.items.count }

    mutating func encodeNil() throws { arr.items.append(.null) }
    mutating func encode(_ value: Bool) throws { arr.items.append(.bool(value)) }
    mutating func encode(_ value: String) throws { arr.items.append(.string(value)) }
    mutating func encode(_ value: Double) throws { arr.items.append(.double(value)) }
    mutating func encode(_ value: Float) throws { arr.items.append(.float(value)) }
    mutating func encode(_ value: Int) throws { arr.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int64) throws { arr.items.append(.int(value)) }
    mutating func encode(_ value: UInt64) throws { arr.items.append(.uint(value)) }
    mutating func encode(_ value: Int8) throws { arr.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int16) throws { arr.items.append(.int(Int64(value))) }
    mutating func encode(_ value: Int32) throws { arr.items.append(.int(Int64(value))) }
    mutating func encode(_ value: UInt) throws { arr.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt8) throws { arr.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt16) throws { arr.items.append(.uint(UInt64(value))) }
    mutating func encode(_ value: UInt32) throws { arr.items.append(.uint(UInt64(value))) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        arr.items.append(try BinEncoder.box(value, path: codingPath))
    }
    mutating func nestedContainer<NK: CodingKey>(keyedBy keyType: NK.Type) -> KeyedEncodingContainer<NK> {
        let o = ObjectRef()
        arr.items.append(.object(o))
        return KeyedEncodingContainer(KeyedEnc<NK>(obj: o, codingPath: codingPath))
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        let a = ArrayRef()
        arr.items.append(.array(a))
        return UnkeyedEnc(arr: a, codingPath: codingPath)
    }
    mutating func superEncoder() -> Encoder {
        let e = BinEncoder(path: codingPath)
        let o = ObjectRef()
        e.root = .object(o)
        arr.items.append(.object(o))
        return e
    }
}

struct SingleEnc: SingleValueEncodingContainer {
    let enc: BinEncoder
    var codingPath: [CodingKey] { enc.codingPath }
    func encodeNil() throws { enc.root = .null }
    func encode(_ value: Bool) throws { enc.root = .bool(value) }
    func encode(_ value: String) throws { enc.root = .string(value) }
    func encode(_ value: Double) throws { enc.root = .double(value) }
    func encode(_ value: Float) throws { enc.root = .float(value) }
    func encode(_ value: Int) throws { enc.root = .int(Int64(value)) }
    func encode(_ value: Int8) throws { enc.root = .int(Int64(value)) }
    func encode(_ value: Int16) throws { enc.root = .int(Int64(value)) }
    func encode(_ value: Int32) throws { enc.root = .int(Int64(value)) }
    func encode(_ value: Int64) throws { enc.root = .int(value) }
    func encode(_ value: UInt) throws { enc.root = .uint(UInt64(value)) }
    func encode(_ value: UInt8) throws { enc.root = .uint(UInt64(value)) }
    func encode(_ value: UInt16) throws { enc.root = .uint(UInt64(value)) }
    func encode(_ value: UInt32) throws { enc.root = .uint(UInt64(value)) }
    func encode(_ value: UInt64) throws { enc.root = .uint(value) }
    func encode<T: Encodable>(_ value: T) throws { enc.root = try BinEncoder.box(value, path: codingPath) }
}

// MARK: decoder

final class BinDecoder: Decoder {
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] = [:]
    let value: BinValue

    init(_ v: BinValue, path: [CodingKey]) {
        value = v
        codingPath = path
    }

    static func unbox<T: Decodable>(_ t: T.Type, from v: BinValue, path: [CodingKey]) throws -> T {
        if let f = try fastUnbox(t, v) { return f }
        return try T(from: BinDecoder(v, path: path))
    }

    static func pathString(_ p: [CodingKey]) -> String {
        p.isEmpty ? "(root)" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let o) = value else {
            throw ClusterCodecError("\(Self.pathString(codingPath)): expected an object, found \(value.kindName)")
        }
        return KeyedDecodingContainer(KeyedDec<Key>(obj: o, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case .array(let a) = value else {
            throw ClusterCodecError("\(Self.pathString(codingPath)): expected an array, found \(value.kindName)")
        }
        return UnkeyedDec(arr: a, codingPath: codingPath)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer {
        SingleDec(value: value, codingPath: codingPath)
    }
}

/// Scalar conversions with range checks (a peer's number never traps).
struct Scalars {
    static func int<I: FixedWidthInteger>(_ v: BinValue, _ path: [CodingKey]) throws -> I {
        switch v {
        case .int(let i): if let r = I(exactly: i) { return r }
        case .uint(let u): if let r = I(exactly: u) { return r }
        default: break
        }
        throw ClusterCodecError("\(BinDecoder.pathString(path)): \(v.kindName) does not fit \(I.self)")
    }
    static func bool(_ v: BinValue, _ path: [CodingKey]) throws -> Bool {
        if case .bool(let b) = v { return b }
        throw ClusterCodecError("\(BinDecoder.pathString(path)): expected a bool, found \(v.kindName)")
    }
    static func string(_ v: BinValue, _ path: [CodingKey]) throws -> String {
        if case .string(let s) = v { return s }
        throw ClusterCodecError("\(BinDecoder.pathString(path)): expected a string, found \(v.kindName)")
    }
    static func double(_ v: BinValue, _ path: [CodingKey]) throws -> Double {
        switch v {
        case .double(let d): return d
        case .float(let f): return Double(f)
        default: throw ClusterCodecError("\(BinDecoder.pathString(path)): expected a number, found \(v.kindName)")
        }
    }
    static func float(_ v: BinValue, _ path: [CodingKey]) throws -> Float {
        if case .float(let f) = v { return f }
        throw ClusterCodecError("\(BinDecoder.pathString(path)): expected a float, found \(v.kindName)")
    }
}

struct KeyedDec<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let obj: ObjectRef
    var codingPath: [CodingKey]
    var allKeys: [Key] { obj.items.compactMap { Key(stringValue: $0.0) } }

    func contains(_ key: Key) -> Bool { obj.index[key.stringValue] != nil }
    func get(_ key: Key) throws -> BinValue {
        guard let v = obj.index[key.stringValue] else {
            throw ClusterCodecError("\(BinDecoder.pathString(codingPath + [key])): missing")
        }
        return v
    }
    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try get(key) { return true }
        return false
    }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
        try Scalars.bool(try get(key), codingPath + [key])
    }
    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        try Scalars.string(try get(key), codingPath + [key])
    }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        try Scalars.double(try get(key), codingPath + [key])
    }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        try Scalars.float(try get(key), codingPath + [key])
    }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try Scalars.int(try get(key), codingPath + [key]) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 {
        try Scalars.int(try get(key), codingPath + [key])
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
        try Scalars.int(try get(key), codingPath + [key])
    }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try Scalars.int(try get(key), codingPath + [key]) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 {
        try Scalars.int(try get(key), codingPath + [key])
    }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 {
        try Scalars.int(try get(key), codingPath + [key])
    }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try Scalars.int(try get(key), codingPath + [key]) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 {
        try Scalars.int(try get(key), codingPath + [key])
    }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 {
        try Scalars.int(try get(key), codingPath + [key])
    }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 {
        try Scalars.int(try get(key), codingPath + [key])
    }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try BinDecoder.unbox(type, from: try get(key), path: codingPath + [key])
    }
    func nestedContainer<NK: CodingKey>(keyedBy type: NK.Type, forKey key: Key) throws -> KeyedDecodingContainer<NK> {
        try BinDecoder(try get(key), path: codingPath + [key]).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        try BinDecoder(try get(key), path: codingPath + [key]).unkeyedContainer()
    }
    func superDecoder() throws -> Decoder { BinDecoder(obj.index["super"] ?? .null, path: codingPath) }
    func superDecoder(forKey key: Key) throws -> Decoder { BinDecoder(try get(key), path: codingPath + [key]) }
}

struct IndexKey: CodingKey {
    var stringValue: String { "\(intValue!)" }
    var intValue: Int?
    init(_ i: Int) { intValue = i }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}

struct UnkeyedDec: UnkeyedDecodingContainer {
    let arr: ArrayRef
    var codingPath: [CodingKey]
    var count: Int? { arr.items.count }
    var isAtEnd: Bool { currentIndex >= arr.items.count }
    var currentIndex = 0

    init(arr: ArrayRef, codingPath: [CodingKey]) {
        self.arr = arr
        self.codingPath = codingPath
    }

    mutating func next() throws -> (BinValue, [CodingKey]) {
        guard !isAtEnd else { throw ClusterCodecError("\(BinDecoder.pathString(codingPath)): array too short") }
        defer { currentIndex += 1 }
        return (arr.items[currentIndex], codingPath + [IndexKey(currentIndex)])
    }
    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        if case .null = arr.items[currentIndex] {
            currentIndex += 1
            return true
        }
        return false
    }
    mutating func decode(_ type: Bool.Type) throws -> Bool {
        let (v, p) = try next()
        return try Scalars.bool(v, p)
    }
    mutating func decode(_ type: String.Type) throws -> String {
        let (v, p) = try next()
        return try Scalars.string(v, p)
    }
    mutating func decode(_ type: Double.Type) throws -> Double {
        let (v, p) = try next()
        return try Scalars.double(v, p)
    }
    mutating func decode(_ type: Float.Type) throws -> Float {
        let (v, p) = try next()
        return try Scalars.float(v, p)
    }
    mutating func decode(_ type: Int.Type) throws -> Int {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: Int64.Type) throws -> Int64 {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: Int8.Type) throws -> Int8 {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: Int16.Type) throws -> Int16 {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: Int32.Type) throws -> Int32 {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: UInt.Type) throws -> UInt {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 {
        let (v, p) = try next()
        return try Scalars.int(v, p)
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (v, p) = try next()
        return try BinDecoder.unbox(type, from: v, path: p)
    }
    mutating func nestedContainer<NK: CodingKey>(keyedBy type: NK.Type) throws -> KeyedDecodingContainer<NK> {
        let (v, p) = try next()
        return try BinDecoder(v, path: p).container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
        let (v, p) = try next()
        return try BinDecoder(v, path: p).unkeyedContainer()
    }
    mutating func superDecoder() throws -> Decoder {
        let (v, p) = try next()
        return BinDecoder(v, path: p)
    }
}

struct SingleDec: SingleValueDecodingContainer {
    let value: BinValue
    var codingPath: [CodingKey]
    func decodeNil() -> Bool {
        if case .null = value { return true }
        return false
    }
    func decode(_ type: Bool.Type) throws -> Bool { try Scalars.bool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try Scalars.string(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try Scalars.double(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try Scalars.float(value, codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try Scalars.int(value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try Scalars.int(value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try Scalars.int(value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try Scalars.int(value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try Scalars.int(value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try Scalars.int(value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try Scalars.int(value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try Scalars.int(value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try Scalars.int(value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try Scalars.int(value, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try BinDecoder.unbox(type, from: value, path: codingPath) }
}
