import Coordinator
import Foundation
import Jobs
import ModelIO
import Tensor
import TestSupport
import XCTest

/// A K-quant mix end to end: a GPTQ job into gguf-q4_k_m on a 2-block SmolLM2 gives the same
/// bytes on 2 workers as the local executor, and the file stores each linear as the mix says
/// (down_proj, 1536 columns, as Q4_K or Q6_K super-blocks; the 576-column linears as the
/// fallback Q5_0, attn_v of a use_more_bits layer as Q6_K's fallback Q8_0).
final class KQuantClusterTests: XCTestCase {
    func testQ4KMixGivesTheLocalExecutorsBytesAndTheMixsTypes() throws {
        let dir = Paths.tempDir("kiln-kmix")
        let model = try ClusterAssets.smolLM2(blocks: 2)
        var spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("mix.gguf"), method: .gptq, mode: .sequential,
            samples: 4, shardSize: 2)
        spec.format = .ggufQ4_K_M
        // The local executor's output and report (one BLAS thread, as the workers).
        BLAS.threads = 1
        var local = spec
        local.output = spec.output + ".local.gguf"
        let report = try Job.run(local)
        let reference = try Data(contentsOf: URL(fileURLWithPath: local.output))
        let r = try runJob(spec, dataDir: dir.appendingPathComponent("data"), lanes: [1, 1])
        XCTAssertEqual(r.status.state, .succeeded, r.status.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference, "2 workers")

        let file = try GGUFFile(URL(fileURLWithPath: spec.output))
        // Which of the 2 blocks get more bits is llama.cpp's use_more_bits rule (TensorTypes.swift).
        for b in 0..<2 {
            let more = OutputFormat.useMoreBits(b, 2)
            let expected: [String: GGMLType] = [
                "attn_q": .q5_0, "attn_k": .q5_0, "attn_output": .q5_0, "ffn_gate": .q5_0, "ffn_up": .q5_0,
                "attn_v": more ? .q8_0 : .q5_0, "ffn_down": more ? .q6_K : .q4_K,
            ]
            for (linear, type) in expected {
                let name = "blk.\(b).\(linear).weight"
                XCTAssertEqual(file.tensor(name)?.type, type, name)
            }
        }
        // The report names each linear's stored type.
        let types = Dictionary(uniqueKeysWithValues: report.linears.map { ($0.tensor, $0.type) })
        XCTAssertEqual(types["blk.0.attn_q.weight"], "Q5_0")
        XCTAssertEqual(types["blk.1.ffn_down.weight"], OutputFormat.useMoreBits(1, 2) ? "Q6_K" : "Q4_K")
        XCTAssertTrue(report.table().contains("(stored type)"), report.table())
    }
}
