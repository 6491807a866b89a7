import Coordinator
import Foundation
import Jobs
import KilnProtocol
import ModelIO
import TestSupport
import XCTest

/// `--method awq+gptq` through the cluster: the mean |x| sums cross the wire in the collect
/// results and merge exactly, the folded norms travel in the reconstruct results (and the
/// propagate inputs), and the output bytes equal the local executor's at 1 and 2 workers.
final class AWQClusterTests: XCTestCase {
    func testAWQGPTQGivesTheLocalBytesAtAnyWorkerCount() throws {
        let dir = Paths.tempDir("kiln-awq-cluster")
        let model = try ClusterAssets.smolLM2(blocks: 2)
        var spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("awq.gguf"), method: .awqGPTQ, mode: .sequential,
            samples: 4, shardSize: 1)
        let reference = try ClusterAssets.localReference(spec)
        // The folded norms are in the file.
        let out = try GGUFFile(URL(fileURLWithPath: spec.output + ".local.gguf"))
        let input = try GGUFFile(model)
        XCTAssertNotEqual(try out.rawBytes("blk.1.ffn_norm.weight"), try input.rawBytes("blk.1.ffn_norm.weight"))
        for lanes in [[1], [1, 1]] {
            spec.output = dir.appendingPathComponent("awq-\(lanes.count).gguf").path
            let r = try runJob(spec, dataDir: dir.appendingPathComponent("data-\(lanes.count)"), lanes: lanes)
            XCTAssertEqual(r.status.state, .succeeded, r.status.error.message)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference, "\(lanes.count) workers")
        }
    }
}
