import Foundation

/// A parsed JSON value. Decoding through Codable keeps integers exact (a
/// fractional or out-of-range number is never an `.int`), and non-finite or
/// unrepresentable numbers such as 1e400 fail to parse.
enum JSONValue: Decodable, Equatable {
    case null, bool(Bool), int(Int), double(Double), string(String)
    case array([JSONValue]), object([String: JSONValue])

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    // Containers are decoded with `try`, not `try?`, so an error deep inside
    // (such as 1e400) surfaces with its coding path, which names the tensor.
    init(from decoder: Decoder) throws {
        if let k = try? decoder.container(keyedBy: Key.self) {
            var o: [String: JSONValue] = [:]
            for key in k.allKeys { o[key.stringValue] = try k.decode(JSONValue.self, forKey: key) }
            self = .object(o)
        } else if var u = try? decoder.unkeyedContainer() {
            var a: [JSONValue] = []
            while !u.isAtEnd { a.append(try u.decode(JSONValue.self)) }
            self = .array(a)
        } else {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() {
                self = .null
            } else if let b = try? c.decode(Bool.self) {
                self = .bool(b)
            } else if let i = try? c.decode(Int.self) {
                self = .int(i)
            } else if let d = try? c.decode(Double.self), d.isFinite {
                self = .double(d)
            } else if let s = try? c.decode(String.self) {
                self = .string(s)
            } else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "number out of range")
            }
        }
    }

    static func parse(_ data: Data) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: data) }

    /// Parses, turning any failure into a ModelIOError naming `file` and, when
    /// known, the key path of the bad value.
    static func parse(_ data: Data, file: String, what: String) throws -> JSONValue {
        do {
            return try parse(data)
        } catch let e as DecodingError {
            let path: [CodingKey]
            switch e {
            case let .dataCorrupted(c), let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c):
                path = c.codingPath
            @unknown default: path = []
            }
            let key = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            throw ModelIOError(
                file: file, key.isEmpty ? "\(what) is not valid JSON" : "\(what): key '\(key)': invalid JSON value")
        } catch {
            throw ModelIOError(file: file, "\(what) is not valid JSON")
        }
    }

    var object: [String: JSONValue]? {
        if case let .object(o) = self { return o }
        return nil
    }
    var array: [JSONValue]? {
        if case let .array(a) = self { return a }
        return nil
    }
    var string: String? {
        if case let .string(s) = self { return s }
        return nil
    }
    var bool: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }
    /// Integers, and doubles that are exactly integral.
    var int: Int? {
        switch self {
        case let .int(i): return i
        case let .double(d): return d.isFinite && d.rounded() == d && abs(d) < 9e15 ? Int(d) : nil
        default: return nil
        }
    }
    var double: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d.isFinite ? d : nil
        default: return nil
        }
    }

    /// As GGUF metadata: objects flatten to dotted keys, nulls are dropped.
    func flatten(prefix: String, into out: inout [String: GGUFValue]) {
        if case let .object(o) = self {
            for (k, v) in o { v.flatten(prefix: prefix.isEmpty ? k : "\(prefix).\(k)", into: &out) }
        } else if let g = gguf {
            out[prefix] = g
        }
    }

    var gguf: GGUFValue? {
        switch self {
        case .null, .object: return nil
        case let .bool(b): return .bool(b)
        case let .int(i): return .int64(Int64(i))
        case let .double(d): return .float64(d)
        case let .string(s): return .string(s)
        case let .array(a): return .array(a.compactMap(\.gguf))
        }
    }
}
