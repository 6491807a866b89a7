import Calibration
import Foundation
import KilnProtocol
import SwiftProtobuf

/// reconstruct(b, g)'s task input written straight from the block's collect files: group
/// g's statistics summed over them a piece of the triangle at a time, so a coordinator
/// never holds a Hessian (a 7B model's down_proj triangle alone is 970 MB). The sums are
/// exact, and the bytes are those `TaskPayload.encode` gives for the same merged
/// statistics, so the worker cannot tell the difference.
public enum MergedStatisticsInput {
    /// Writes the input into `out` (empty); returns its size. `parts` must cover each shard once.
    @discardableResult
    public static func write(
        group g: Int, of parts: [CollectFile], to out: SpoolFile, tile: Int = 1 << 16
    ) throws
        -> Int
    {
        guard !parts.isEmpty, parts.allSatisfy({ g < $0.groups.count }) else {
            throw PayloadError("merged statistics of group \(g): no collect result holds it")
        }
        let groups = parts.map { $0.groups[g] }
        let name = groups[0].name
        let columns = groups[0].columns
        guard groups.allSatisfy({ $0.columns == columns }) else {
            throw PayloadError("\(name): the collect results disagree on its columns: \(groups.map(\.columns))")
        }
        var channels = groups[0].channels
        var samples = groups[0].samples
        var tokens = groups[0].tokens
        for p in groups.dropFirst() {
            try channels.merge(p.channels, name: name)
            let (s, o1) = samples.addingReportingOverflow(p.samples)
            let (t, o2) = tokens.addingReportingOverflow(p.tokens)
            guard !o1, !o2 else { throw PayloadError("\(name): sample or token counts overflow") }
            samples = s
            tokens = t
        }
        // Field by field as SwiftProtobuf orders them (by number), so the bytes match its encoding.
        var header = Kiln_V1_HessianAccumulator()
        header.columns = UInt64(columns)
        header.samples = UInt64(samples)
        header.tokens = UInt64(tokens)
        let hessianHead: Data = try header.serializedBytes()
        let channelBytes: Data = try Kiln_V1_ChannelStatistics(channels).serializedBytes()
        let packed = columns * (columns + 1) / 2
        let blob = packed * 8
        let highKey = field(4, length: blob)
        let lowKey = field(5, length: blob)
        let hessianLength = hessianHead.count + highKey.count + blob + lowKey.count + blob
        let nameBytes = Data(name.utf8)
        let nameField = nameBytes.isEmpty ? Data() : field(1, length: nameBytes.count) + nameBytes
        let channelField = field(3, length: channelBytes.count) + channelBytes
        let statisticsLength =
            nameField.count + field(2, length: hessianLength).count + hessianLength + channelField.count
        let head =
            field(1, length: statisticsLength) + nameField + field(2, length: hessianLength) + hessianHead + highKey
        let highAt = head.count
        let lowAt = highAt + blob + lowKey.count
        try out.write(head, at: 0)
        try out.write(lowKey, at: highAt + blob)
        try out.write(channelField, at: lowAt + blob)
        // The triangles, a tile at a time: the first part's words, then each other part's added.
        let step = max(1, tile)
        var sumHigh = [Int64](repeating: 0, count: min(step, packed))
        var sumLow = [UInt64](repeating: 0, count: min(step, packed))
        var partHigh = sumHigh
        var partLow = sumLow
        var k0 = 0
        while k0 < packed {
            let n = min(step, packed - k0)
            for (i, p) in groups.enumerated() {
                // The first part's words are the running sum; each other part's are added in.
                try readTile(parts[i].file, p, from: k0, count: n, into: &partHigh, &partLow)
                if i == 0 {
                    swap(&sumHigh, &partHigh)
                    swap(&sumLow, &partLow)
                    continue
                }
                try sumHigh.withUnsafeMutableBufferPointer { sh in
                    try sumLow.withUnsafeMutableBufferPointer { sl in
                        try partHigh.withUnsafeBufferPointer { ph in
                            try partLow.withUnsafeBufferPointer { pl in
                                try HessianAccumulator.addPacked(
                                    high: .init(rebasing: ph[0..<n]), low: .init(rebasing: pl[0..<n]),
                                    into: .init(rebasing: sh[0..<n]), .init(rebasing: sl[0..<n]),
                                    first: k0, columns: columns, name: name)
                            }
                        }
                    }
                }
            }
            try sumHigh.withUnsafeBytes { try out.write(.init(rebasing: $0[0..<(n * 8)]), at: highAt + k0 * 8) }
            try sumLow.withUnsafeBytes { try out.write(.init(rebasing: $0[0..<(n * 8)]), at: lowAt + k0 * 8) }
            k0 += n
        }
        return lowAt + blob + channelField.count
    }

    /// Entries `first ..< first + count` of a part's triangle words, into the arrays' fronts.
    static func readTile(
        _ file: SpoolFile, _ g: CollectFile.Group, from first: Int, count: Int, into high: inout [Int64],
        _ low: inout [UInt64]
    ) throws {
        try high.withUnsafeMutableBytes {
            try file.read(into: .init(rebasing: $0[0..<(count * 8)]), at: g.high + first * 8)
        }
        try low.withUnsafeMutableBytes {
            try file.read(into: .init(rebasing: $0[0..<(count * 8)]), at: g.low + first * 8)
        }
    }

    /// A length-delimited field's key and length.
    static func field(_ number: Int, length: Int) -> Data {
        varint(UInt64(number << 3 | 2)) + varint(UInt64(length))
    }

    static func varint(_ value: UInt64) -> Data {
        var v = value
        var out = Data()
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
        return out
    }
}
