import Coordinator
import Foundation
import Jobs
import KilnProtocol
import ModelIO
import Tensor
import TestSupport
import XCTest

/// `--format compressed-tensors-w8a8` through the cluster: SmoothQuant's folded norms and
/// down's scales migrated into up (`MigratedScales`, carried by each row slice of down in
/// the reconstruct results and the propagate inputs) give the local executor's bytes, at 1
/// worker with whole rows and at 2 workers with rows split in 2.
final class W8A8ClusterTests: XCTestCase {
    func testSmoothQuantGPTQGivesTheLocalBytes() throws {
        let dir = Paths.tempDir("kiln-w8a8-cluster")
        let model = try ClusterAssets.smolLM2(blocks: 2)
        var spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("w8a8"), method: .gptq, mode: .sequential, samples: 4,
            shardSize: 1)
        spec.format = .compressedTensorsW8A8
        // Workers run one BLAS thread; the reference must too.
        BLAS.threads = 1
        var local = spec
        local.output = spec.output + "-local"
        _ = try Job.run(local)
        let reference = try Data(contentsOf: URL(fileURLWithPath: local.output + "/model.safetensors"))
        for (lanes, parts) in [([1], 1), ([1, 1], 2)] {
            spec.output = dir.appendingPathComponent("w8a8-\(lanes.count)").path
            spec.rowParts = parts
            let r = try runJob(spec, dataDir: dir.appendingPathComponent("data-\(lanes.count)"), lanes: lanes)
            XCTAssertEqual(r.status.state, .succeeded, r.status.error.message)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: spec.output + "/model.safetensors"))
            XCTAssertEqual(bytes, reference, "\(lanes.count) workers, \(parts) row parts")
        }
    }
}
