import Embedded
import Foundation
import Jobs
import ModelIO
import Quantization
import Tensor
import TestSupport
import XCTest

/// `--target-bpw` end to end on a 2-block SmolLM2: the sensitivity job's measurements choose
/// each linear's type, the written file stores those types within the bit budget, and the
/// cluster (2 workers) gives the local executor's bytes and types.
final class TargetBPWTests: XCTestCase {
    func testTypesWithinTheBudgetAndTheSameOnTwoWorkers() throws {
        let dir = Paths.tempDir("kiln-target-bpw")
        let spec = try ClusterAssets.targetBPWSpec(out: dir.appendingPathComponent("t.gguf"))
        var local = spec
        local.output = spec.output + ".local.gguf"
        let report = try TargetBPW.run(local) { try Job.run($0) }
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: local.output + ".sensitivity.gguf"), "sensitivity output kept")

        // The stored types are the allocation of the measured sensitivities, and fit the budget.
        let file = try GGUFFile(URL(fileURLWithPath: local.output))
        var tensors: [BitAllocation.Tensor] = []
        var bits = 0
        var weights = 0
        for l in report.linears.sorted(by: { ($0.block, $0.linear) < ($1.block, $1.linear) }) {
            let measured = try XCTUnwrap(l.candidates, l.tensor)
            // down_proj's 1536 columns take K types too; the 576-column linears only 32-blocks.
            XCTAssertEqual(measured.count, l.linear == "ffn_down" ? 10 : 5, l.tensor)
            let t = try XCTUnwrap(file.tensor(l.tensor), l.tensor)
            bits += t.range.count * 8
            weights += t.ne.reduce(1, *)
            XCTAssertEqual("\(t.type)".uppercased(), l.type?.uppercased(), l.tensor)
            tensors.append(
                BitAllocation.Tensor(
                    name: l.tensor, weights: t.ne.reduce(1, *),
                    candidates: measured.keys.sorted().map {
                        BitAllocation.Candidate(format: WeightFormat(rawValue: $0)!, error: measured[$0]!)
                    }))
        }
        let bpw = Double(bits) / Double(weights)
        XCTAssertLessThanOrEqual(bpw, 4.75)
        XCTAssertGreaterThan(bpw, 4.5, "the budget above Q4_0 bought nothing")
        let choice = try BitAllocation.choose(tensors, targetBitsPerWeight: 4.75)
        XCTAssertEqual(choice.bitsPerWeight, bpw, accuracy: 1e-12)
        XCTAssertGreaterThan(Set(choice.formats).count, 1, "one type for every linear")
        // The chosen mix errs less, summed, than Q4_0 everywhere (which the budget also allows).
        let q4 = tensors.map { $0.candidates.first { $0.format == .ggufQ4_0 }!.error }.reduce(0, +)
        XCTAssertLessThan(choice.error, q4)
        XCTAssertTrue(report.notes.contains { $0.contains("target 4.75 bpw") }, "\(report.notes)")
        XCTAssertTrue(report.table().contains("(stored type)"), report.table())

        // Through the cluster's code path (2 workers): the same types and bytes.
        let cluster = try TargetBPW.run(spec) { try EmbeddedCluster.run(spec: $0, workers: 2).report }
        XCTAssertEqual(cluster.linears.map(\.type), report.linears.map(\.type))
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: spec.output)),
            try Data(contentsOf: URL(fileURLWithPath: local.output)), "2 workers")
    }

    func testRecipesThatCannotHaveATargetFailBeforeWork() throws {
        let dir = Paths.tempDir("kiln-target-bpw-bad")
        let model = try ClusterAssets.smolLM2(blocks: 2)
        var spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("t.gguf"))
        spec.targetBPW = 4.5
        func refused(_ s: JobSpec, _ needle: String, line: UInt = #line) {
            XCTAssertThrowsError(try TargetBPW.run(s) { try Job.run($0) }, line: line) { e in
                XCTAssertTrue("\(e)".contains(needle), "\(e)", line: line)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: s.output), line: line)
        }
        var s = spec
        s.format = .gptqSafetensors
        refused(s, "is not GGUF")
        s = spec
        s.targetBPW = 9
        refused(s, "out of range")
        s = spec
        s.bits = 4
        refused(s, "--bits cannot be given")
        // Below what the grids allow on this model (576-column linears start at Q4_0's 4.5).
        s = spec
        s.targetBPW = 3
        refused(s, "below the least these types allow")
        // A coordinator is handed the target unresolved: refused, not run with the format's types.
        XCTAssertThrowsError(try spec.validate()) { e in XCTAssertTrue("\(e)".contains("sensitivity job first"), "\(e)")
        }
        // Explicit types must cover every linear with a type its rows fit.
        s = spec
        s.targetBPW = nil
        s.tensorTypes = [:]
        XCTAssertThrowsError(try s.validate()) { e in
            XCTAssertTrue("\(e)".contains("no type for blk.0.attn_q.weight"), "\(e)")
        }
        s.tensorTypes = Dictionary(
            uniqueKeysWithValues: (0..<2).flatMap { b in
                ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"].map {
                    (JobSpec.typeKey(linear: $0, block: b), WeightFormat.ggufQ4_0)
                }
            })
        s.tensorTypes?["blk.1.attn_q.weight"] = .ggufQ4_K
        XCTAssertThrowsError(try s.validate()) { e in
            XCTAssertTrue(
                "\(e)".contains("blk.1.attn_q.weight has 576 input columns, not a multiple of Q4_K's 256"), "\(e)")
        }
    }
}
