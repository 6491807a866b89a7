import Coordinator
import Foundation
import Jobs
import KilnProtocol
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// Coordinator and workers as threads of the test process, over tcp loopback.
final class InProcessClusterTests: XCTestCase {
    func testOneWorkerRTNMatchesLocalExecutor() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("out.gguf"), method: .rtn, mode: .parallel)
        let reference = try ClusterAssets.localReference(spec)

        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data"))
        coordinator.start()
        defer { coordinator.stop() }
        let worker = makeWorker(coordinator.endpoints.listen, id: "w1")
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }

        let client = try TestClient(coordinator.endpoints.listen)
        let job = try client.submit(spec)
        let status = try client.wait(job)
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        let out = try Data(contentsOf: URL(fileURLWithPath: spec.output))
        XCTAssertEqual(out, reference, "cluster output differs from the local executor's")
        XCTAssertEqual(status.blocksDone, 2)
    }
}
