import Calibration
import Cluster
import Foundation
import Jobs
import KilnProtocol
import Quantization
import SwiftProtobuf
import Tensor
import TestSupport
import XCTest

/// Task payloads travel and rest as kiln.v1 TaskInput / TaskOutput messages. The
/// decoder sees bytes from any peer or a damaged result file: every malformed payload
/// must give a PayloadError naming the field, never a trap or an allocation the bytes
/// do not back; a well-formed one comes back bit for bit.
final class TaskPayloadProtoTests: XCTestCase {
    func statistics(columns: Int = 4) throws -> LinearStatistics {
        var s = LinearStatistics(name: "blk.0.attn_qkv.input", columns: columns)
        try s.add(Matrix(rows: 3, cols: columns, data: (0..<3 * columns).map { Float($0) / 3 - 1 }))
        return s
    }

    /// A 2x4 linear in two groups of 2, with Floats and Doubles whose bit patterns a
    /// lossy encoding would change (a NaN payload, a subnormal, negative zero).
    func linear() -> QuantizedLinear {
        let weight = QuantizedTensor(
            rows: 2, columns: 4, recipe: QuantRecipe(bits: 4, groupSize: 2), groupSize: 2, groupCount: 2,
            codes: [0, 15, 7, 8, 1, 2, 3, 4],
            parameters: [
                GroupParameters(scale: Float(bitPattern: 0x7FC0_1234), zero: -0.0, inverse: .leastNonzeroMagnitude),
                GroupParameters(scale: 0.1, zero: 3, inverse: 10, minimum: -1),
                GroupParameters(scale: .greatestFiniteMagnitude, zero: 1),
                GroupParameters(scale: 1 / 3, zero: 7, inverse: 3, minimum: .infinity),
            ],
            groupIndex: [0, 0, 1, 1])
        return QuantizedLinear(
            linear: "attn_q", block: 1, tensor: "blk.1.attn_q.weight", weight: weight,
            outputError: Double(bitPattern: 0x7FF8_0000_0000_BEEF), relativeError: 1e-300, gptqLoss: -0.0,
            deadColumns: 1, seconds: 0.1)
    }

    func reconstructBytes() throws -> Data {
        try TaskPayload.encode(
            ClusterTaskOutput.reconstruct(ReconstructResult(block: 1, group: 0, linears: [linear()])))
    }

    func assertRefused(
        _ data: Data, _ fragments: [String], input: Bool = false, file: StaticString = #filePath, line: UInt = #line
    ) {
        let decode: () throws -> Void = {
            if input { _ = try TaskPayload.decodeInput(data) } else { _ = try TaskPayload.decodeOutput(data) }
        }
        XCTAssertThrowsError(try decode(), file: file, line: line) { error in
            XCTAssertTrue(error is PayloadError, "\(error)", file: file, line: line)
            for f in fragments {
                XCTAssertTrue("\(error)".contains(f), "'\(error)' does not mention '\(f)'", file: file, line: line)
            }
        }
    }

    /// The reconstruct message with `change` applied to its one linear.
    func linearVariant(_ change: (inout Kiln_V1_QuantizedLinear) -> Void) throws -> Data {
        var m = try Kiln_V1_TaskOutput(serializedBytes: try reconstructBytes())
        change(&m.reconstruct.linears[0])
        return try m.serializedBytes()
    }

    /// The collect message with `change` applied to its one statistics entry.
    func statisticsVariant(_ change: (inout Kiln_V1_LinearStatistics) -> Void) throws -> Data {
        var m = Kiln_V1_TaskOutput(
            ClusterTaskOutput.collect(CollectResult(block: 0, shard: 1, statistics: [try statistics()], tokens: 3)))
        change(&m.collect.statistics[0])
        return try m.serializedBytes()
    }

    // MARK: round trips

    func testFloatsAndDoublesRoundTripBitExactly() throws {
        guard case let .reconstruct(back) = try TaskPayload.decodeOutput(try reconstructBytes()) else {
            return XCTFail("not a reconstruct result")
        }
        let a = linear()
        let b = try XCTUnwrap(back.linears.first)
        func bits(_ p: [GroupParameters]) -> [UInt32] {
            p.flatMap { [$0.scale, $0.zero, $0.inverse, $0.minimum].map(\.bitPattern) }
        }
        XCTAssertEqual(bits(b.weight.parameters), bits(a.weight.parameters))
        XCTAssertEqual(
            [b.outputError, b.relativeError, b.gptqLoss, b.seconds].map(\.bitPattern),
            [a.outputError, a.relativeError, a.gptqLoss, a.seconds].map(\.bitPattern))
        XCTAssertEqual(b.weight.codes, a.weight.codes)
        XCTAssertEqual(b.weight.groupIndex, a.weight.groupIndex)
        XCTAssertEqual(b.weight.recipe, a.weight.recipe)
        let w = b.weight
        XCTAssertEqual([w.rows, w.columns, w.groupSize, w.groupCount, b.deadColumns, b.block], [2, 4, 2, 2, 1, 1])
        XCTAssertEqual([b.linear, b.tensor], [a.linear, a.tensor])
    }

    func testInputsAndOutputsRoundTrip() throws {
        let inputs = [
            ClusterTaskInput(),
            ClusterTaskInput(statistics: try statistics(), replayAllowed: true),
            ClusterTaskInput(quantized: [linear()], lineage: [], replayAllowed: true),
            ClusterTaskInput(quantized: [], lineage: [[linear()], []]),
        ]
        for i in inputs {
            let back = try TaskPayload.decodeInput(try TaskPayload.encode(i))
            XCTAssertEqual(back.statistics, i.statistics)
            XCTAssertEqual(back.quantized?.count, i.quantized?.count)
            XCTAssertEqual(back.lineage?.map(\.count), i.lineage?.map(\.count))
            XCTAssertEqual(back.replayAllowed, i.replayAllowed)
        }
        let outputs: [ClusterTaskOutput] = [
            .collect(
                CollectResult(
                    block: 2, shard: 1, statistics: [try statistics(), try statistics(columns: 8)], tokens: 3)),
            .merge(MergeResult(block: 3, statistics: [LinearStatistics(name: "empty", columns: 5)])),
            .propagate(PropagateResult(block: 4, shard: 5, tokens: 6)),
        ]
        for o in outputs { XCTAssertEqual(try TaskPayload.decodeOutput(try TaskPayload.encode(o)), o) }
    }

    /// Real payloads of a truncated SmolLM2: collect, merge, reconstruct through the
    /// protobuf form give the same results as without it.
    func testRealPayloadsRoundTrip() throws {
        let model = try ClusterAssets.smolLM2(blocks: 1)
        let s = ClusterAssets.spec(
            model: model, out: Paths.tempDir("kiln-payload").appendingPathComponent("x.gguf"), method: .gptq, samples: 2
        )
        let ctx = try JobContext.open(s)
        let c = try Tasks.collect(ctx, store: InMemoryActivationStore(), block: 0, shard: 0)
        let back = try TaskPayload.decodeOutput(try TaskPayload.encode(.collect(c)))
        XCTAssertEqual(back, .collect(c))
        let m = try Tasks.merge(block: 0, parts: [c])
        let input = try TaskPayload.decodeInput(try TaskPayload.encode(ClusterTaskInput(statistics: m.statistics[1])))
        let r = try Tasks.reconstruct(
            ctx,
            ReconstructInput(block: 0, group: 1, linears: Tasks.groups[1], statistics: try XCTUnwrap(input.statistics)))
        XCTAssertEqual(try TaskPayload.decodeOutput(try TaskPayload.encode(.reconstruct(r))), .reconstruct(r))
        // Recomputed from the statistics that did not travel: the same result (timings aside).
        func untimed(_ x: ReconstructResult) -> ReconstructResult {
            var y = x
            for i in y.linears.indices { y.linears[i].seconds = 0 }
            return y
        }
        let direct = try Tasks.reconstruct(
            ctx, ReconstructInput(block: 0, group: 1, linears: Tasks.groups[1], statistics: m.statistics[1]))
        XCTAssertTrue(untimed(r) == untimed(direct))
    }

    // MARK: hostile inputs

    /// Inputs Fuzz/codec.swift once crashed on (Tests/Fixtures/fuzz/codec/): refused as both payload kinds.
    func testRecordedFuzzInputsAreRefused() throws {
        for url in Paths.fuzzInputs("codec") {
            let data = try Data(contentsOf: url)
            XCTAssertThrowsError(try TaskPayload.decodeInput(data), url.lastPathComponent)
            XCTAssertThrowsError(try TaskPayload.decodeOutput(data), url.lastPathComponent)
        }
    }

    func testTruncatedPayloadsAreRefused() throws {
        let full = try reconstructBytes()
        for n in 0..<full.count {
            // Every proper prefix cuts a field or leaves the linear inconsistent.
            XCTAssertThrowsError(try TaskPayload.decodeOutput(full.prefix(n)), "prefix \(n)") { error in
                XCTAssertTrue(error is PayloadError, "prefix \(n): \(error)")
            }
        }
        assertRefused(Data(), ["task_output.result: missing"])
        assertRefused(Data([0xFF, 0xFF]), ["not a kiln.v1.TaskOutput"])
        assertRefused(Data([0x0A, 0x80, 0x80, 0x80, 0x80, 0x10]), ["not a kiln.v1.TaskInput"], input: true)
    }

    func testOversizedCountsAreRefused() throws {
        assertRefused(try linearVariant { $0.rows = 1 << 40 }, ["linears[0].rows: 1099511627776 exceeds"])
        assertRefused(try linearVariant { $0.columns = .max }, ["linears[0].columns: 18446744073709551615 exceeds"])
        assertRefused(try linearVariant { $0.groupCount = 3 }, ["group_count: 3", "make 2"])
        assertRefused(try linearVariant { $0.groupSize = 0 }, ["group_size: 0"])
        assertRefused(try linearVariant { $0.deadColumns = 5 }, ["dead_columns: 5 exceeds the limit of 4"])
        assertRefused(try statisticsVariant { $0.hessian.columns = 1 << 21 }, ["hessian.columns: 2097152 exceeds"])
        assertRefused(
            try TaskPayload.encode(.propagate(PropagateResult(block: 1 << 21, shard: 0, tokens: 0))),
            ["task_output.propagate.block: 2097152 exceeds"])
    }

    func testWrongLengthsAreRefused() throws {
        assertRefused(try linearVariant { $0.rows = 3 }, ["linears[0].codes: 8 elements, expected 12"])
        assertRefused(try linearVariant { $0.codes.removeLast() }, ["codes: 7 elements, expected 8"])
        assertRefused(try linearVariant { $0.groupIndex.append(0) }, ["group_index: 17 bytes is not a whole number"])
        assertRefused(
            try linearVariant { $0.groupIndex.append(Data(count: 4)) }, ["group_index: 5 elements, expected 4"])
        assertRefused(try linearVariant { $0.parameters.removeLast(16) }, ["parameters: 12 elements, expected 16"])
        assertRefused(
            try statisticsVariant { $0.hessian.high.removeLast(8) }, ["hessian.high: 9 elements, expected 10"])
        assertRefused(
            try statisticsVariant { $0.hessian.low.append(1) }, ["hessian.low: 81 bytes is not a whole number"])
        assertRefused(try statisticsVariant { $0.channels.min.removeLast(4) }, ["channels.min: 3 elements, expected 4"])
        assertRefused(try statisticsVariant { $0.channels.columns = 5 }, ["channels.columns: 5"])
        assertRefused(try statisticsVariant { $0.channels.tokens = 2 }, ["channels.tokens: 2"])
        assertRefused(try statisticsVariant { $0.clearHessian() }, ["hessian or channels missing"])
    }

    /// A worker's sum of several shards: the shards round-trip; a list that is not strictly
    /// increasing or leaves out the carrying shard is refused; sums that share a shard are not made.
    func testSummedCollectShards() throws {
        let a = CollectResult(block: 0, shard: 0, statistics: [try statistics()], tokens: 3)
        let b = CollectResult(block: 0, shard: 2, statistics: [try statistics()], tokens: 3)
        let sum = try Tasks.combine(a, b)
        XCTAssertEqual(sum.shards, [0, 2])
        XCTAssertEqual(sum.shard, 2)
        XCTAssertEqual(sum.tokens, 6)
        XCTAssertEqual(try TaskPayload.decodeOutput(try TaskPayload.encode(.collect(sum))), .collect(sum))
        XCTAssertEqual(
            ClusterTaskOutput.collect(sum).coveredTasks, [.collect(block: 0, shard: 0), .collect(block: 0, shard: 2)])
        // The same bits as merging the two in shard order.
        XCTAssertEqual(try Tasks.merge(block: 0, parts: [b, a]).statistics, sum.statistics)
        XCTAssertThrowsError(try Tasks.combine(sum, a)) {
            XCTAssertTrue("\($0)".contains("both hold a shard"), "\($0)")
        }
        func variant(_ shards: [UInt64]) throws -> Data {
            var m = Kiln_V1_TaskOutput(ClusterTaskOutput.collect(sum))
            m.collect.shards = shards
            return try m.serializedBytes()
        }
        assertRefused(try variant([2, 0]), ["task_output.collect.shards", "not strictly increasing"])
        assertRefused(try variant([0, 0, 2]), ["not strictly increasing"])
        assertRefused(try variant([0, 1]), ["does not hold the carrying shard 2"])
        assertRefused(try variant([0, 2, UInt64(1) << 40]), ["exceeds the limit"])
    }

    func testValuesOutOfRangeAreRefused() throws {
        assertRefused(
            try linearVariant { $0.groupIndex = Data([0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]) },
            ["group_index[1]: 2 is not a group of 2"])
        assertRefused(
            try linearVariant { $0.groupIndex = Data([0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 12)) },
            ["group_index[0]: -1"])
        assertRefused(try linearVariant { $0.codes = Data([16] + [UInt8](repeating: 0, count: 7)) }, ["codes[0]: 16"])
        assertRefused(try linearVariant { $0.recipe.bits = 9 }, ["recipe: recipe: bits must be in 2...8, got 9"])
        assertRefused(try linearVariant { $0.recipe.format = .unspecified }, ["recipe.format"])
        assertRefused(try linearVariant { $0.clearRecipe() }, ["recipe: missing"])
        assertRefused(try linearVariant { $0.recipe.percentDamp = .nan }, ["dampening fraction must be finite"])
    }

    /// Channel statistics never hold NaN or infinity (gathering refuses them): a payload that does is damaged.
    func testNonFiniteChannelStatisticsAreRefused() throws {
        var nan = Data(count: 16)
        nan.replaceSubrange(8..<12, with: withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { Data($0) })
        assertRefused(try statisticsVariant { $0.channels.absMax = nan }, ["channels.abs_max[2]: nan is not finite"])
        let below = [Float](repeating: -2, count: 4).withUnsafeBytes { Data($0) }
        assertRefused(try statisticsVariant { $0.channels.max = below }, ["channels: min -1.0 > max -2.0 at column 0"])
    }
}
