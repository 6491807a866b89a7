import Calibration
import Cluster
import Foundation
import Jobs
import KilnProtocol
import Tensor
import TestSupport
import XCTest

/// Collect results read in place from their files, and reconstruct inputs summed from
/// them a tile at a time: the bytes must be those of the in-memory merge and encoding,
/// and a damaged file must be refused with the field named, whatever its size claims.
final class CollectFileTests: XCTestCase {
    /// One shard's collect result: two groups of real activations (a seeded stream).
    func collect(block: Int = 2, shards: [Int], columns: [Int] = [24, 40], seed: UInt64) throws -> CollectResult {
        var rng = PythonRandom(seed: seed)
        var stats: [LinearStatistics] = []
        for (g, n) in columns.enumerated() {
            var s = LinearStatistics(name: "blk.\(block).group\(g).input", columns: n)
            for _ in 0..<2 {
                try s.add(
                    Matrix(
                        rows: 5, cols: n, data: (0..<5 * n).map { _ in Float(rng.next32() >> 8) / Float(1 << 23) - 1 }))
            }
            stats.append(s)
        }
        return CollectResult(block: block, shard: shards.last!, statistics: stats, tokens: 10, shards: shards)
    }

    func file(_ c: CollectResult, _ dir: URL, _ name: String) throws -> SpoolFile {
        let url = dir.appendingPathComponent(name)
        try TaskPayload.encode(.collect(c)).write(to: url)
        return try SpoolFile(reading: url)
    }

    func testTheStreamedMergeIsTheInMemoryEncodingByteForByte() throws {
        let dir = Paths.tempDir("kiln-collect-file")
        // A worker's sum of shards 0 and 2, and shard 1 alone.
        let parts = [try collect(shards: [0, 2], seed: 1), try collect(shards: [1], seed: 2)]
        let files = try parts.enumerated().map { try CollectFile(file($1, dir, "c\($0).bin")) }
        XCTAssertEqual(files[0].coveredTasks, [.collect(block: 2, shard: 0), .collect(block: 2, shard: 2)])
        XCTAssertEqual(files[1].taskID, .collect(block: 2, shard: 1))
        XCTAssertEqual(files.map(\.groups.count), [2, 2])
        XCTAssertEqual(files[0].groups[1].columns, 40)
        XCTAssertEqual(files[0].groups[1].channels, parts[0].statistics[1].channels)
        let merged = try Tasks.combine(parts[0], parts[1])
        for g in 0..<2 {
            let expected = try TaskPayload.encode(ClusterTaskInput(statistics: merged.statistics[g]))
            // Tiles that do not divide the triangle (820 entries for 40 columns), and one tile.
            for tile in [7, 1 << 20] {
                let out = try SpoolFile(creating: dir.appendingPathComponent("in-\(g)-\(tile).bin"))
                let size = try MergedStatisticsInput.write(group: g, of: files, to: out, tile: tile)
                XCTAssertEqual(size, expected.count)
                XCTAssertEqual(try out.read(at: 0, count: size), expected, "group \(g), tile \(tile)")
                XCTAssertEqual(
                    try TaskPayload.decodeInput(try out.read(at: 0, count: size)).statistics,
                    merged.statistics[g])
                // A worker reads it in place, straight into the arrays: the same statistics.
                XCTAssertEqual(
                    try TaskPayload.decodeInput(file: out), ClusterTaskInput(statistics: merged.statistics[g]))
            }
        }
    }

    /// Inputs that are not a lone statistics message are read whole and decoded as usual;
    /// a damaged statistics input is refused with the field named.
    func testInputFilesOfOtherShapesAndDamagedOnes() throws {
        let dir = Paths.tempDir("kiln-collect-file")
        let stats = try collect(shards: [0], seed: 6).statistics[0]
        for (i, input) in [
            ClusterTaskInput(statistics: stats, replayAllowed: true), ClusterTaskInput(replayAllowed: true),
            ClusterTaskInput(),
        ].enumerated() {
            let url = dir.appendingPathComponent("input-\(i).bin")
            try TaskPayload.encode(input).write(to: url)
            XCTAssertEqual(try TaskPayload.decodeInput(file: try SpoolFile(reading: url)), input)
        }
        var p = try Kiln_V1_TaskInput(serializedBytes: try TaskPayload.encode(ClusterTaskInput(statistics: stats)))
        p.statistics.hessian.low = p.statistics.hessian.low.dropLast(8)
        let url = dir.appendingPathComponent("damaged.bin")
        try (p.serializedBytes() as Data).write(to: url)
        XCTAssertThrowsError(try TaskPayload.decodeInput(file: try SpoolFile(reading: url))) { e in
            XCTAssertTrue("\(e)".contains("task_input.statistics.hessian.low"), "\(e)")
        }
    }

    func testDamagedCollectFilesAreRefusedWithTheFieldNamed() throws {
        let dir = Paths.tempDir("kiln-collect-file")
        let good = try TaskPayload.encode(.collect(try collect(shards: [0], seed: 3)))
        func refused(_ bytes: Data, _ fragment: String, line: UInt = #line) {
            let url = dir.appendingPathComponent("bad-\(line).bin")
            try? bytes.write(to: url)
            XCTAssertThrowsError(try CollectFile(try SpoolFile(reading: url)), line: line) { e in
                XCTAssertTrue("\(e)".contains(fragment), "'\(e)' does not mention '\(fragment)'", line: line)
            }
        }
        // Cut anywhere: a length that overruns its message, or a truncated varint.
        for cut in [1, 3, 40, good.count / 2, good.count - 1] {
            refused(good.prefix(cut), "task_output")
        }
        // A Hessian triangle one word short: re-encoded with a shorter blob.
        var p = try Kiln_V1_TaskOutput(serializedBytes: good)
        p.collect.statistics[1].hessian.high = p.collect.statistics[1].hessian.high.dropLast(8)
        refused(try p.serializedBytes(), "statistics[1].hessian.high")
        // Columns beyond the limit (the triangle would be terabytes): refused before any read.
        p = try Kiln_V1_TaskOutput(serializedBytes: good)
        p.collect.statistics[0].hessian.columns = 1 << 40
        refused(try p.serializedBytes(), "statistics[0].hessian.columns")
        // Channel statistics of another width.
        p = try Kiln_V1_TaskOutput(serializedBytes: good)
        p.collect.statistics[0].channels.columns = 3
        refused(try p.serializedBytes(), "statistics[0].channels")
        // Not a collect result at all.
        var r = Kiln_V1_TaskOutput()
        r.propagate.block = 1
        refused(try r.serializedBytes(), "not a collect result")
        // Shards out of order.
        p = try Kiln_V1_TaskOutput(serializedBytes: good)
        p.collect.shards = [2, 0]
        p.collect.shard = 0
        refused(try p.serializedBytes(), "collect.shards")
    }

    func testPartsThatDisagreeOnColumnsAreNotSummed() throws {
        let dir = Paths.tempDir("kiln-collect-file")
        let a = try CollectFile(file(try collect(shards: [0], seed: 4), dir, "a.bin"))
        let b = try CollectFile(file(try collect(shards: [1], columns: [24, 48], seed: 5), dir, "b.bin"))
        let out = try SpoolFile(creating: dir.appendingPathComponent("in.bin"))
        XCTAssertThrowsError(try MergedStatisticsInput.write(group: 1, of: [a, b], to: out)) { e in
            XCTAssertTrue("\(e)".contains("disagree on its columns"), "\(e)")
        }
    }
}
