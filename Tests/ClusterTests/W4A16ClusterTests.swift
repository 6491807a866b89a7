import Foundation
import Jobs
import KilnProtocol
import Tensor
import TestSupport
import XCTest

/// `--format compressed-tensors-w4a16` through the cluster (GPTQ, group 64: SmolLM2's 576
/// columns are not whole groups of 128) writes the local executor's bytes.
final class W4A16ClusterTests: XCTestCase {
    func testGPTQW4A16GivesTheLocalBytes() throws {
        let dir = Paths.tempDir("kiln-w4a16-cluster")
        let model = try ClusterAssets.smolLM2(blocks: 2)
        var spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("w4a16"), method: .gptq, mode: .sequential, samples: 4,
            shardSize: 1)
        spec.format = .compressedTensorsW4A16
        spec.groupSize = 64
        // Workers run one BLAS thread; the reference must too.
        BLAS.threads = 1
        var local = spec
        local.output = spec.output + "-local"
        _ = try Job.run(local)
        let reference = try Data(contentsOf: URL(fileURLWithPath: local.output + "/model.safetensors"))
        let r = try runJob(spec, dataDir: dir.appendingPathComponent("data"), lanes: [1])
        XCTAssertEqual(r.status.state, .succeeded, r.status.error.message)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: spec.output + "/model.safetensors"))
        XCTAssertEqual(bytes, reference)
        let config = try String(contentsOf: URL(fileURLWithPath: spec.output + "/config.json"), encoding: .utf8)
        XCTAssertTrue(config.contains("pack-quantized"), config)
    }
}
