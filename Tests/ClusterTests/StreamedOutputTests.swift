import Calibration
import Cluster
import Coordinator
import Foundation
import Jobs
import KilnProtocol
import Quantization
import Tensor
import TestSupport
import XCTest

/// A worker encodes a collect result straight into a file, and the coordinator's output
/// writer reads a reconstruct result's linears in place: the bytes must be those of the
/// in-memory encoding, the chunk checksums those a ChunkSender computes, each linear the
/// one the in-memory decoder gives, and a damaged file refused with the field named.
final class StreamedOutputTests: XCTestCase {
    func collect(shards: [Int], names: [String] = ["blk.2.attn_qkv.input", ""], seed: UInt64) throws -> CollectResult {
        var rng = PythonRandom(seed: seed)
        var stats: [LinearStatistics] = []
        for (g, n) in [24, 40].enumerated() {
            var s = LinearStatistics(name: names[g], columns: n)
            try s.add(
                Matrix(rows: 5, cols: n, data: (0..<5 * n).map { _ in Float(rng.next32() >> 8) / Float(1 << 23) - 1 })
            )
            stats.append(s)
        }
        return CollectResult(block: 2, shard: shards.last!, statistics: stats, tokens: 5, shards: shards)
    }

    func spooled(_ o: ClusterTaskOutput, _ dir: URL, chunkSize: Int, buffer: Int) throws -> (Data, [UInt32], SpoolFile)
    {
        let file = try SpoolFile(creating: dir.appendingPathComponent(UUID().uuidString))
        var w = SpoolWriter(file, chunkSize: chunkSize, bufferBytes: buffer)
        try TaskPayload.write(o, to: &w)
        let sums = try w.finish()
        XCTAssertEqual(try file.size(), w.count)
        return (try file.read(at: 0, count: w.count), sums, file)
    }

    func testStreamedOutputsAreTheInMemoryEncodingByteForByte() throws {
        let dir = Paths.tempDir("kiln-streamed-output")
        let outputs: [ClusterTaskOutput] = [
            .collect(try collect(shards: [0], seed: 1)),
            .collect(try collect(shards: [0, 3, 5], seed: 2)),  // a worker's sum of three shards
            .collect(CollectResult(block: 0, shard: 0, statistics: [], tokens: 0)),  // every field at its default
            .collect(
                CollectResult(
                    block: 1, shard: 0, statistics: [LinearStatistics(name: "", columns: 0)], tokens: 0)),
            .propagate(PropagateResult(block: 1, shard: 2, tokens: 9)),
            .reconstruct(
                ReconstructResult(
                    block: 3, group: 1,
                    linears: [
                        linear("blk.3.ffn_gate.weight", rows: 3, seed: 5),
                        linear("blk.3.ffn_up.weight", rows: 4, seed: 6),
                    ])),
            .reconstruct(ReconstructResult(block: 0, group: 0, linears: [])),
        ]
        for (i, o) in outputs.enumerated() {
            let expected = try TaskPayload.encode(o)
            // Chunks and buffers smaller than a triangle, not dividing it, and larger than the payload.
            for (chunk, buffer) in [(7, 5), (1000, 64), (1 << 20, 1 << 20)] {
                let (bytes, sums, file) = try spooled(o, dir, chunkSize: chunk, buffer: buffer)
                XCTAssertEqual(bytes, expected, "output \(i), chunk \(chunk), buffer \(buffer)")
                XCTAssertEqual(sums, try ChunkSender.checksums(of: file, chunkSize: chunk), "output \(i)")
                XCTAssertEqual(try TaskPayload.decodeOutput(bytes), o)
            }
        }
        // What the coordinator reads in place from such a file.
        let (_, _, file) = try spooled(outputs[1], dir, chunkSize: 1 << 20, buffer: 1 << 20)
        XCTAssertEqual(try CollectFile(file).shards, [0, 3, 5])
    }

    func testStreamedInputsAreTheInMemoryEncodingByteForByte() throws {
        let dir = Paths.tempDir("kiln-streamed-output")
        let stats = try collect(shards: [0], seed: 8).statistics[1]
        let block = [
            linear("blk.0.attn_q.weight", rows: 3, seed: 9),
            linear("blk.0.attn_k.weight", rows: 2, seed: 11, odd: true),
        ]
        let inputs = [
            ClusterTaskInput(statistics: stats), ClusterTaskInput(quantized: block),
            ClusterTaskInput(quantized: [], lineage: [], replayAllowed: true),
            ClusterTaskInput(
                lineage: [block, [], [linear("blk.2.ffn_down.weight", rows: 2, seed: 10)]], replayAllowed: true),
            ClusterTaskInput(),
        ]
        for (i, input) in inputs.enumerated() {
            let file = try SpoolFile(creating: dir.appendingPathComponent(UUID().uuidString))
            var w = SpoolWriter(file, chunkSize: 100, bufferBytes: 33)
            try TaskPayload.write(input, to: &w)
            let sums = try w.finish()
            let bytes = try file.read(at: 0, count: w.count)
            XCTAssertEqual(bytes, try TaskPayload.encode(input), "input \(i)")
            XCTAssertEqual(sums, try ChunkSender.checksums(of: file, chunkSize: 100), "input \(i)")
        }
    }

    /// A real collect of a truncated SmolLM2 block (576 and 1536 inputs).
    func testARealCollectStreamsToTheSameBytes() throws {
        let model = try ClusterAssets.smolLM2(blocks: 1)
        let s = ClusterAssets.spec(
            model: model, out: Paths.tempDir("kiln-streamed-output").appendingPathComponent("x.gguf"), method: .gptq,
            samples: 2)
        let c = try Tasks.collect(try JobContext.open(s), store: InMemoryActivationStore(), block: 0, shard: 0)
        let (bytes, sums, file) = try spooled(
            .collect(c), Paths.tempDir("kiln-streamed-output"), chunkSize: 8 << 20, buffer: 1 << 20)
        XCTAssertEqual(bytes, try TaskPayload.encode(.collect(c)))
        XCTAssertEqual(sums, try ChunkSender.checksums(of: file, chunkSize: 8 << 20))
    }

    /// `odd`: parameters whose bit patterns a lossy encoding would change (a NaN payload,
    /// a subnormal, negative zero).
    func linear(_ tensor: String, rows: Int, seed: UInt64, odd: Bool = false) -> QuantizedLinear {
        var rng = PythonRandom(seed: seed)
        let columns = 64
        var parameters = (0..<rows * 2).map { _ in
            GroupParameters(scale: Float(rng.next32() % 100) / 7, zero: 8, inverse: 0.5)
        }
        if odd {
            parameters[0] = GroupParameters(
                scale: Float(bitPattern: 0x7FC0_1234), zero: -0.0, inverse: .leastNonzeroMagnitude, minimum: -1)
        }
        let weight = QuantizedTensor(
            rows: rows, columns: columns, recipe: QuantRecipe(format: .ggufQ4_0, bits: 4, groupSize: 32),
            groupSize: 32, groupCount: 2, codes: (0..<rows * columns).map { _ in UInt8(rng.next32() % 16) },
            parameters: parameters,
            groupIndex: (0..<columns).map { Int32($0 / 32) })
        return QuantizedLinear(
            linear: String(tensor.split(separator: ".")[2]), block: 3, tensor: tensor, weight: weight,
            outputError: 0.25, relativeError: 0.5, gptqLoss: 1, deadColumns: 0, seconds: 0.1)
    }

    /// A chunked reconstruct result arrives into a file and is checked there, a linear at a
    /// time, as a decoded one is: the task, the unit's linears in order, the sizes.
    func testTheCoordinatorChecksAReconstructResultInItsFile() throws {
        let dir = Paths.tempDir("kiln-streamed-output")
        func file(_ name: String, _ linears: [QuantizedLinear], group: Int = 0) throws -> SpoolFile {
            let url = dir.appendingPathComponent(name)
            try TaskPayload.encode(.reconstruct(ReconstructResult(block: 3, group: group, linears: linears)))
                .write(to: url)
            return try SpoolFile(reading: url)
        }
        var linears = [
            linear("blk.3.attn_q.weight", rows: 3, seed: 1), linear("blk.3.attn_k.weight", rows: 5, seed: 2),
            linear("blk.3.attn_v.weight", rows: 2, seed: 3),
        ]
        linears[1].relativeError = 0.75
        let units = ReconstructUnits(parts: 2)
        let good = try file("good.bin", linears)
        let (kept, errors, error) = try Coordinator.checkReconstruct(
            good, .reconstruct(block: 3, group: 0), units: units, keep: true)
        XCTAssertEqual(kept, linears)
        XCTAssertEqual(error, 0.75)
        // The dashboard's per-linear errors: each linear's own (the largest of its row slices).
        XCTAssertEqual(errors, Coordinator.linearErrors(linears))
        XCTAssertEqual(
            errors[linears[1].linear], linears.filter { $0.linear == linears[1].linear }.map(\.relativeError).max())
        XCTAssertEqual(
            try Coordinator.checkReconstruct(good, .reconstruct(block: 3, group: 0), units: units, keep: false).linears,
            [])
        // Another task's result; unit 1 is the second row slice of q,k,v: its names match, unit 2's (o) do not.
        XCTAssertThrowsError(
            try Coordinator.checkReconstruct(good, .reconstruct(block: 3, group: 2), units: units, keep: false)
        ) {
            XCTAssertTrue("\($0)".contains("payload is for reconstruct(3,0)"), "\($0)")
        }
        let wrongUnit = try file("unit2.bin", linears, group: 2)
        XCTAssertThrowsError(
            try Coordinator.checkReconstruct(wrongUnit, .reconstruct(block: 3, group: 2), units: units, keep: false)
        ) {
            XCTAssertTrue("\($0)".contains("not unit 2's"), "\($0)")
        }
        let swapped = try file("swapped.bin", [linears[1], linears[0], linears[2]])
        XCTAssertThrowsError(
            try Coordinator.checkReconstruct(swapped, .reconstruct(block: 3, group: 0), units: units, keep: false)
        ) {
            XCTAssertTrue("\($0)".contains("'attn_k' does not match unit 0"), "\($0)")
        }
        // Cut short: refused, naming the field.
        let url = dir.appendingPathComponent("good.bin")
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 7).write(to: dir.appendingPathComponent("short.bin"))
        XCTAssertThrowsError(
            try Coordinator.checkReconstruct(
                try SpoolFile(reading: dir.appendingPathComponent("short.bin")), .reconstruct(block: 3, group: 0),
                units: units, keep: false)
        ) { XCTAssertTrue("\($0)".contains("task_output"), "\($0)") }
    }

    func testAReconstructResultIsReadOneLinearAtATime() throws {
        let dir = Paths.tempDir("kiln-streamed-output")
        let linears = [
            linear("blk.3.attn_q.weight", rows: 3, seed: 1), linear("blk.3.attn_k.weight", rows: 5, seed: 2),
            linear("blk.3.attn_v.weight", rows: 2, seed: 3),
        ]
        let url = dir.appendingPathComponent("r.bin")
        try TaskPayload.encode(.reconstruct(ReconstructResult(block: 3, group: 0, linears: linears))).write(to: url)
        let f = try ReconstructFile(try SpoolFile(reading: url))
        XCTAssertEqual(f.taskID, .reconstruct(block: 3, group: 0))
        XCTAssertEqual(f.tensors, linears.map(\.tensor))
        for i in [2, 0, 1] { XCTAssertEqual(try f.linear(i), linears[i]) }

        // A propagate's quantized block copied from the groups' result files: the in-memory encoding.
        let second = dir.appendingPathComponent("r2.bin")
        let more = [linear("blk.3.ffn_down.weight", rows: 4, seed: 7, odd: true)]
        try TaskPayload.encode(.reconstruct(ReconstructResult(block: 3, group: 3, linears: more))).write(to: second)
        let out = try SpoolFile(creating: dir.appendingPathComponent("propagate.bin"))
        var w = SpoolWriter(out, chunkSize: 64, bufferBytes: 10)
        try TaskPayload.writeQuantizedInput(from: [f, try ReconstructFile(try SpoolFile(reading: second))], to: &w)
        XCTAssertEqual(try w.finish(), try ChunkSender.checksums(of: out, chunkSize: 64))
        XCTAssertEqual(
            try out.read(at: 0, count: w.count), try TaskPayload.encode(ClusterTaskInput(quantized: linears + more)))

        // Another task's result, a truncated one, and a damaged linear are refused.
        let other = dir.appendingPathComponent("c.bin")
        try TaskPayload.encode(.collect(try collect(shards: [0], seed: 4))).write(to: other)
        XCTAssertThrowsError(try ReconstructFile(try SpoolFile(reading: other))) {
            XCTAssertTrue("\($0)".contains("not a reconstruct result"), "\($0)")
        }
        let whole = try Data(contentsOf: url)
        let short = dir.appendingPathComponent("short.bin")
        try whole.dropLast(10).write(to: short)
        XCTAssertThrowsError(try ReconstructFile(try SpoolFile(reading: short))) {
            XCTAssertTrue($0 is PayloadError, "\($0)")
        }
        var p = try Kiln_V1_TaskOutput(serializedBytes: whole)
        p.reconstruct.linears[1].codes = p.reconstruct.linears[1].codes.dropLast()
        let damaged = dir.appendingPathComponent("damaged.bin")
        try (p.serializedBytes() as Data).write(to: damaged)
        let d = try ReconstructFile(try SpoolFile(reading: damaged))
        XCTAssertEqual(try d.linear(0), linears[0])
        XCTAssertThrowsError(try d.linear(1)) {
            XCTAssertTrue("\($0)".contains("task_output.reconstruct.linears[1].codes"), "\($0)")
        }
    }
}
