import Calibration
import Foundation
import KilnProtocol

extension TaskPayload {
    /// A task input (kiln.v1.TaskInput) that arrived into a file. A reconstruct's merged
    /// statistics, the bulk, are read from the file straight into their arrays, with no
    /// encoded copy in memory beside them (a 7B down_proj's triangles are 970 MB); any
    /// other input is read whole and decoded as usual. Checks as `decodeInput`.
    public static func decodeInput(file: SpoolFile) throws -> ClusterTaskInput {
        let r = try ProtoFileReader(file)
        var statistics: [Range<Int>] = []
        var replay = false
        var other = false
        try r.fields(0..<r.size, "task_input") { number, value in
            switch (number, value) {
            case (1, .bytes(let range)): statistics.append(range)
            case (4, .varint(let v)): replay = v != 0
            default: other = true
            }
        }
        // One statistics message and nothing else but the flag: the reconstruct input.
        guard statistics.count == 1, !other else {
            return try decodeInput(try file.read(at: 0, count: r.size))
        }
        let field = "task_input.statistics"
        let g = try CollectFile.group(r, statistics[0], field)
        let high = try words(file, at: g.high, count: g.packed, as: Int64.self)
        let low = try words(file, at: g.low, count: g.packed, as: UInt64.self)
        do {
            let stats = try LinearStatistics(
                name: g.name,
                hessian: HessianAccumulator(
                    columns: g.columns, samples: g.samples, tokens: g.tokens, high: high, low: low),
                channels: g.channels)
            return ClusterTaskInput(statistics: stats, replayAllowed: replay)
        } catch {
            throw PayloadError("\(field): \(error)")
        }
    }

    /// `count` little-endian words of `T` from `offset` (the range was checked by the walker).
    static func words<T>(_ file: SpoolFile, at offset: Int, count: Int, as _: T.Type) throws -> [T] {
        try [T](unsafeUninitializedCapacity: count) { buf, n in
            try file.read(into: UnsafeMutableRawBufferPointer(buf), at: offset)
            n = count
        }
    }
}
