import Coordinator
import Foundation
import Jobs
import ModelIO
import Tensor
import TestSupport
import XCTest

/// --imatrix-out and --imatrix through the cluster: on 2 workers with row slices, the exported
/// imatrix and the RTN output are the local executor's bytes, and importing the file on the
/// cluster gives them again.
final class ImatrixClusterTests: XCTestCase {
    func testExportAndImportGiveTheLocalExecutorsBytes() throws {
        let dir = Paths.tempDir("kiln-imatrix-cluster")
        let model = try ClusterAssets.smolLM2(blocks: 2)
        var spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("own.gguf"), method: .rtn, mode: .parallel,
            samples: 4, shardSize: 2)
        spec.scaleSearch = true
        spec.rowParts = 2
        spec.imatrixOut = dir.appendingPathComponent("own.imatrix.gguf").path
        BLAS.threads = 1
        var local = spec
        local.output = spec.output + ".local.gguf"
        local.imatrixOut = spec.imatrixOut! + ".local.gguf"
        _ = try Job.run(local)
        let r = try runJob(spec, dataDir: dir.appendingPathComponent("data"), lanes: [1, 1])
        XCTAssertEqual(r.status.state, .succeeded, r.status.error.message)
        let reference = try Data(contentsOf: URL(fileURLWithPath: local.output))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: spec.imatrixOut!)),
            try Data(contentsOf: URL(fileURLWithPath: local.imatrixOut!)))

        var imported = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("imported.gguf"), method: .rtn, mode: .parallel,
            samples: 4, shardSize: 2)
        imported.imatrix = spec.imatrixOut
        let i = try runJob(imported, dataDir: dir.appendingPathComponent("data2"), lanes: [1, 1])
        XCTAssertEqual(i.status.state, .succeeded, i.status.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: imported.output)), reference)
    }
}
