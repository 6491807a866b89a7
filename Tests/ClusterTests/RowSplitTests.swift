import Coordinator
import Foundation
import Jobs
import KilnProtocol
import TestSupport
import XCTest

/// Row-split reconstruction (`--row-parts`): each linear's rows quantized in slices by
/// separate tasks. Real GPTQ jobs on a 2-block SmolLM2: the bytes do not depend on the
/// number of workers, and equal those of whole-linear tasks (the local executor's
/// sliced bytes: ReconstructUnitsTests).
final class RowSplitTests: XCTestCase {
    func testRowSlicesGiveTheSameBytesAtAnyWorkerCount() throws {
        let dir = Paths.tempDir("kiln-rowsplit")
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let whole = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("whole.gguf"), method: .gptq, mode: .sequential,
            samples: 4, shardSize: 2)
        let reference = try ClusterAssets.localReference(whole)
        // 5 slices: uneven ones (the 192 k/v rows give 38 and 39).
        var sliced = whole
        sliced.rowParts = 5
        sliced.output = dir.appendingPathComponent("sliced.gguf").path
        for lanes in [[1], [1, 1]] {
            sliced.output = dir.appendingPathComponent("sliced-\(lanes.count).gguf").path
            let r = try runJob(sliced, dataDir: dir.appendingPathComponent("data-\(lanes.count)"), lanes: lanes)
            XCTAssertEqual(r.status.state, .succeeded, r.status.error.message)
            XCTAssertEqual(
                try Data(contentsOf: URL(fileURLWithPath: sliced.output)), reference, "\(lanes.count) workers")
            // Every slice was its own task: 4 groups x 5 slices per block.
            let reconstructs = r.status.modules.filter { $0.phase == .reconstruct }
            XCTAssertEqual(reconstructs.map(\.total), [20, 20])
            if lanes.count == 2 {
                XCTAssertTrue(r.workers.allSatisfy { $0.tasksRun > 0 }, "both workers got work")
            }
        }
    }
}
