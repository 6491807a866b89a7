import Foundation

/// A deliberately small reader for the reference fixtures (safetensors with F32 and
/// I32 tensors), independent of ModelIO so that tests of ModelIO and of other layers
/// compare against data read by a second implementation.
public struct FixtureTensors: Sendable {
    public struct Entry: Sendable {
        public var dtype: String
        public var shape: [Int]
        public var range: Range<Int>
    }
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let bytes: Data

    public init(_ url: URL) throws {
        bytes = try Data(contentsOf: url)
        let n = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + n))) as! [String: Any]
        var entries: [String: Entry] = [:]
        var meta: [String: String] = [:]
        for (k, v) in header {
            if k == "__metadata__" {
                meta = v as? [String: String] ?? [:]
                continue
            }
            let d = v as! [String: Any]
            let off = d["data_offsets"] as! [Int]
            entries[k] = Entry(
                dtype: d["dtype"] as! String, shape: d["shape"] as! [Int],
                range: (8 + n + off[0])..<(8 + n + off[1]))
        }
        self.entries = entries
        self.metadata = meta
    }

    public func floats(_ name: String) -> [Float] {
        let e = entries[name]!
        precondition(e.dtype == "F32", "\(name) is \(e.dtype)")
        return bytes.subdata(in: e.range).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    public func ints(_ name: String) -> [Int32] {
        let e = entries[name]!
        precondition(e.dtype == "I32", "\(name) is \(e.dtype)")
        return bytes.subdata(in: e.range).withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
    }

    public func shape(_ name: String) -> [Int] { entries[name]!.shape }
}

/// Reads a JSON fixture.
public func fixtureJSON(_ relative: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: Paths.fixture(relative))) as! [String: Any]
}
