import Calibration
import Foundation
import Jobs
import KilnProtocol
import SwiftProtobuf

/// A collect result (a kiln.v1.TaskOutput) read in place from its file: every count and
/// small field decoded and checked as `TaskPayload.decodeOutput` checks them, but the
/// Hessian triangles, the bulk (1.4 GB per block of a 7B model), left in the file as byte
/// offsets, so a coordinator can check and sum them a piece at a time.
public struct CollectFile: Sendable {
    public struct Group: Sendable {
        public let name: String
        public let columns: Int
        public let samples: Int
        public let tokens: Int
        public let channels: ChannelStatistics
        /// File offsets of the packed triangle's words: `packed` Int64 high, `packed` UInt64 low.
        public let high: Int
        public let low: Int
        public var packed: Int { columns * (columns + 1) / 2 }
    }

    public let file: SpoolFile
    public let block: Int
    public let shard: Int
    /// Every shard summed in, strictly increasing, `shard` among them.
    public let shards: [Int]
    public let tokens: Int
    public let groups: [Group]

    public var taskID: TaskID { .collect(block: block, shard: shard) }
    public var coveredTasks: [TaskID] { shards.map { .collect(block: block, shard: $0) } }

    public init(_ file: SpoolFile) throws {
        self.file = file
        let r = try ProtoFileReader(file)
        let size = r.size
        // A message field that occurs more than once is the merge of its occurrences (as
        // the protobuf decoders read it): the parts are walked in order.
        var collect: [Range<Int>] = []
        try r.fields(0..<size, "task_output") { number, value in
            switch (number, value) {
            case (1, .bytes(let range)):
                guard collect.count < 16 else { throw PayloadError("task_output.collect: repeated too often") }
                collect.append(range)
            case (2...4, _): throw PayloadError("task_output: not a collect result (field \(number))")
            default: break
            }
        }
        guard !collect.isEmpty else { throw PayloadError("task_output.result: missing") }
        let limit = TaskPayload.maxIndex
        var block: UInt64 = 0
        var shard: UInt64 = 0
        var tokens: UInt64 = 0
        var shards: [UInt64] = []
        var stats: [Range<Int>] = []
        for part in collect {
            try r.fields(part, "task_output.collect") { number, value in
                switch (number, value) {
                case (1, .varint(let v)): block = v
                case (2, .varint(let v)): shard = v
                case (3, .bytes(let range)):
                    guard stats.count < limit else {
                        throw PayloadError("task_output.collect.statistics: more than \(limit) entries")
                    }
                    stats.append(range)
                case (4, .varint(let v)): tokens = v
                case (5, .varint(let v)): shards.append(v)
                case (5, .bytes(let range)): shards += try r.packedVarints(range, "task_output.collect.shards")
                default: break
                }
                guard shards.count <= limit else { throw PayloadError("task_output.collect.shards: too many entries") }
            }
        }
        self.block = try checkedInt(block, "task_output.collect.block", max: limit)
        self.shard = try checkedInt(shard, "task_output.collect.shard", max: limit)
        self.tokens = try checkedInt(tokens, "task_output.collect.tokens", max: Int.max)
        self.shards = try ClusterTaskOutput.shards(shards, carrier: self.shard)
        self.groups = try stats.enumerated().map { i, range in
            try Self.group(r, range, "task_output.collect.statistics[\(i)]")
        }
    }

    /// One LinearStatistics: its small fields decoded, its triangles located and sized.
    static func group(_ r: ProtoFileReader, _ range: Range<Int>, _ field: String) throws -> Group {
        var name = Data()
        var hessian: [Range<Int>] = []
        var channels: [Range<Int>] = []
        try r.fields(range, field) { number, value in
            switch (number, value) {
            case (1, .bytes(let v)):
                guard v.count <= 4096 else { throw PayloadError("\(field).name: \(v.count) bytes is too long") }
                name = try r.read(v)
            case (2, .bytes(let v)): hessian.append(v)
            case (3, .bytes(let v)): channels.append(v)
            default: break
            }
            guard hessian.count + channels.count <= 32 else { throw PayloadError("\(field): repeated too often") }
        }
        guard !hessian.isEmpty, !channels.isEmpty else { throw PayloadError("\(field): hessian or channels missing") }
        var columns: UInt64 = 0
        var samples: UInt64 = 0
        var tokens: UInt64 = 0
        var high: Range<Int>?
        var low: Range<Int>?
        for part in hessian {
            try r.fields(part, "\(field).hessian") { number, value in
                switch (number, value) {
                case (1, .varint(let v)): columns = v
                case (2, .varint(let v)): samples = v
                case (3, .varint(let v)): tokens = v
                case (4, .bytes(let v)): high = v
                case (5, .bytes(let v)): low = v
                default: break
                }
            }
        }
        let n = try checkedInt(columns, "\(field).hessian.columns", max: TaskPayload.maxColumns)
        let t = try checkedInt(tokens, "\(field).hessian.tokens", max: Int.max)
        let s = try checkedInt(samples, "\(field).hessian.samples", max: Int.max)
        let bytes = n * (n + 1) / 2 * 8  // columns <= 2^20: no overflow
        for (part, range) in [("high", high), ("low", low)] where (range?.count ?? 0) != bytes {
            throw PayloadError("\(field).hessian.\(part): \(range?.count ?? 0) bytes, expected \(bytes)")
        }
        // Channels: 3 floats and the |x| sum's two 64-bit words per column, plus field headers
        // (per occurrence; occurrences concatenated are their merge).
        let channelBytes = channels.reduce(0) { $0 + $1.count }
        guard channelBytes <= (28 * n + 96) * channels.count else {
            throw PayloadError("\(field).channels: \(channelBytes) bytes for \(n) columns")
        }
        let c: Kiln_V1_ChannelStatistics
        do {
            c = try Kiln_V1_ChannelStatistics(serializedBytes: try channels.reduce(Data()) { $0 + (try r.read($1)) })
        } catch let e as PayloadError {
            throw e
        } catch {
            throw PayloadError("\(field).channels: not a kiln.v1.ChannelStatistics (\(error))")
        }
        guard c.columns == columns else {
            throw PayloadError("\(field).channels.columns: \(c.columns), but the Hessian has \(n)")
        }
        guard c.tokens == tokens else {
            throw PayloadError("\(field).channels.tokens: \(c.tokens), but the Hessian saw \(t)")
        }
        return Group(
            name: String(decoding: name, as: UTF8.self), columns: n, samples: s, tokens: t,
            channels: try ChannelStatistics(c, columns: n, tokens: t, field),
            high: high?.lowerBound ?? 0, low: low?.lowerBound ?? 0)
    }
}

/// Protocol-buffer wire format read from a file by offset: field keys, varints and the
/// ranges of length-delimited fields, each bounded by its enclosing message.
final class ProtoFileReader {
    enum Value {
        case varint(UInt64)
        case bytes(Range<Int>)
        case fixed
    }

    let file: SpoolFile
    private var window = Data()
    private var windowStart = 0

    let size: Int

    init(_ file: SpoolFile) throws {
        self.file = file
        size = try file.size()
    }

    func read(_ range: Range<Int>) throws -> Data {
        try file.read(at: range.lowerBound, count: range.count)
    }

    private func byte(at pos: Int) throws -> UInt8 {
        if pos < windowStart || pos >= windowStart + window.count {
            windowStart = pos
            window = try file.read(at: pos, count: max(0, min(64 << 10, size - pos)))
            guard !window.isEmpty else { throw PayloadError("\(file.url.path): ends at byte \(pos)") }
        }
        return window[window.startIndex + pos - windowStart]
    }

    private func varint(_ pos: inout Int, end: Int, _ field: String) throws -> UInt64 {
        var v: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            guard pos < end else { throw PayloadError("\(field): truncated varint at byte \(pos)") }
            let b = try byte(at: pos)
            pos += 1
            v |= UInt64(b & 0x7F) << UInt64(shift)
            if b < 0x80 { return v }
        }
        throw PayloadError("\(field): varint longer than 10 bytes at byte \(pos)")
    }

    /// Calls `body` with each field of the message in `range`, in file order.
    func fields(_ range: Range<Int>, _ field: String, _ body: (Int, Value) throws -> Void) throws {
        var pos = range.lowerBound
        let end = range.upperBound
        while pos < end {
            let key = try varint(&pos, end: end, field)
            let number = Int(truncatingIfNeeded: key >> 3)
            guard number > 0, number < 1 << 29 else { throw PayloadError("\(field): field number \(key >> 3)") }
            switch key & 7 {
            case 0: try body(number, .varint(try varint(&pos, end: end, field)))
            case 1, 5:
                let n = key & 7 == 1 ? 8 : 4
                guard end - pos >= n else { throw PayloadError("\(field): truncated fixed field \(number)") }
                pos += n
                try body(number, .fixed)
            case 2:
                let n = try varint(&pos, end: end, field)
                guard n <= UInt64(end - pos) else {
                    throw PayloadError("\(field): field \(number) of \(n) bytes overruns its message")
                }
                let value = pos..<(pos + Int(n))
                pos += Int(n)
                try body(number, .bytes(value))
            default:
                throw PayloadError("\(field): wire type \(key & 7) of field \(number) is not supported")
            }
        }
    }

    /// A packed repeated varint field.
    func packedVarints(_ range: Range<Int>, _ field: String) throws -> [UInt64] {
        var out: [UInt64] = []
        var pos = range.lowerBound
        while pos < range.upperBound {
            guard out.count < TaskPayload.maxIndex else { throw PayloadError("\(field): too many entries") }
            out.append(try varint(&pos, end: range.upperBound, field))
        }
        return out
    }
}
