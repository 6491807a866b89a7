import Foundation
import Jobs
import Quantization
import Tensor
import TestSupport
import XCTest

/// Row slices of reconstruction (`ReconstructUnits`): the partition, the join, and that a
/// sliced job gives the whole-linear job's files and report on the real SmolLM2 blocks.
final class ReconstructUnitsTests: XCTestCase {
    func testSlicesPartitionEveryRowInOrder() {
        for parts in [1, 2, 3, 5, 7] {
            let units = ReconstructUnits(parts: parts)
            XCTAssertEqual(units.count, Tasks.groups.count * parts)
            for rows in [parts, 38, 192, 1536] {
                let slices = (0..<parts).map { units.rows(part: $0, of: rows) }
                XCTAssertEqual(slices.first?.lowerBound, 0)
                XCTAssertEqual(slices.last?.upperBound, rows)
                XCTAssertTrue(zip(slices, slices.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                XCTAssertTrue(slices.allSatisfy { !$0.isEmpty && $0.count >= rows / parts })
            }
            XCTAssertEqual(
                (0..<units.count).map(units.group),
                (0..<Tasks.groups.count).flatMap { Array(repeating: $0, count: parts) })
        }
    }

    func testSlicedJobGivesTheWholeJobsFilesAndReport() throws {
        let model = try Assets.truncatedSmolLM2()
        let dir = Paths.tempDir("kiln-units")
        for format in [OutputFormat.ggufQ4_0, .gptqSafetensors] {
            let whole = Assets.spec(
                model: model, out: dir.appendingPathComponent("whole-\(format.rawValue)"), format: format)
            var sliced = whole
            sliced.rowParts = 3
            sliced.output = dir.appendingPathComponent("sliced-\(format.rawValue)").path
            let a = try Job.run(whole, concurrency: 1)
            let b = try Job.run(sliced, concurrency: 2)
            for f in try outputFiles(whole.output) {
                XCTAssertTrue(
                    try fileBytes(URL(fileURLWithPath: whole.output + f))
                        == fileBytes(URL(fileURLWithPath: sliced.output + f)),
                    "\(format.rawValue)\(f): sliced bytes differ")
            }
            // Errors and energies add over the slices: the per-linear report agrees (sums in another order).
            XCTAssertEqual(a.linears.map(\.tensor), b.linears.map(\.tensor))
            for (x, y) in zip(a.linears, b.linears) {
                XCTAssertEqual(
                    y.relativeError ?? -1, x.relativeError ?? 1, accuracy: 1e-9 + 1e-6 * (x.relativeError ?? 0),
                    x.tensor)
                XCTAssertEqual(y.gptqLoss, x.gptqLoss, accuracy: 1e-6 * max(1, x.gptqLoss), x.tensor)
            }
        }
    }

    /// The file itself for GGUF, or "/" + each file of a gptq-safetensors directory.
    private func outputFiles(_ path: String) throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return [""] }
        return try FileManager.default.contentsOfDirectory(atPath: path).sorted().filter {
            !$0.hasSuffix(".json") || $0 == "config.json"
        }.map { "/" + $0 }
    }

    func testJoinRefusesSlicesThatDoNotFit() throws {
        func slice(rows: Int, columns: Int, groupIndex: [Int32]? = nil) -> QuantizedLinear {
            let recipe = QuantRecipe.gguf(.ggufQ4_0, actOrder: false, percentDamp: 0.01)
            let t = QuantizedTensor(
                rows: rows, columns: columns, recipe: recipe, groupSize: 32, groupCount: columns / 32,
                codes: Array(repeating: 8, count: rows * columns),
                parameters: Array(repeating: GroupParameters(scale: 1, zero: 8), count: rows * columns / 32),
                groupIndex: groupIndex ?? (0..<columns).map { Int32($0 / 32) })
            return QuantizedLinear(
                linear: "attn_q", block: 0, tensor: "blk.0.attn_q.weight", weight: t, outputError: 1,
                relativeError: 0.5, gptqLoss: 2, deadColumns: 0, seconds: 1, outputEnergy: 2)
        }
        let joined = try QuantizedLinear(
            joiningRows: [slice(rows: 2, columns: 64), slice(rows: 3, columns: 64)], parts: 2)
        XCTAssertEqual(joined.weight.rows, 5)
        XCTAssertEqual(joined.weight.codes.count, 5 * 64)
        XCTAssertEqual(joined.outputError, 2)
        XCTAssertEqual(joined.relativeError, 0.5)
        XCTAssertThrowsError(try QuantizedLinear(joiningRows: [slice(rows: 2, columns: 64)], parts: 2)) {
            XCTAssertTrue("\($0)".contains("1 row slices of 2"), "\($0)")
        }
        XCTAssertThrowsError(
            try QuantizedLinear(joiningRows: [slice(rows: 2, columns: 64), slice(rows: 2, columns: 96)], parts: 2)
        ) { XCTAssertTrue("\($0)".contains("disagree"), "\($0)") }
        var swapped = (0..<64).map { Int32($0 / 32) }
        swapped.swapAt(0, 63)
        XCTAssertThrowsError(
            try QuantizedLinear(
                joiningRows: [slice(rows: 2, columns: 64), slice(rows: 2, columns: 64, groupIndex: swapped)], parts: 2)
        ) { XCTAssertTrue("\($0)".contains("group index"), "\($0)") }
    }
}
