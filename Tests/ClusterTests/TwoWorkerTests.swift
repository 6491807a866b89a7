import Coordinator
import Foundation
import Jobs
import KilnProtocol
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// Two workers (threads) over tcp loopback: byte-identical to the local executor in both modes.
final class TwoWorkerTests: XCTestCase {
    func run(_ spec: JobSpec, dir: URL, workers n: Int = 2) throws -> (Kiln_V1_JobStatus, [Worker], TrafficCounters) {
        let coordinator = try makeCoordinator(
            dataDir: dir.appendingPathComponent("data-\(UUID().uuidString.prefix(6))"))
        coordinator.start()
        defer { coordinator.stop() }
        let workers = (0..<n).map { makeWorker(coordinator.endpoints.listen, id: "w\($0 + 1)") }
        for w in workers { w.start() }
        defer {
            for w in workers { w.requestStop() }
            for w in workers { w.stop() }
        }
        let client = try TestClient(coordinator.endpoints.listen)
        let job = try client.submit(spec)
        let status = try client.wait(job)
        return (status, workers, coordinator.traffic)
    }

    func testSequentialGPTQTwoWorkers() throws {
        let model = try ClusterAssets.smolLM2(blocks: 3)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("seq.gguf"), method: .gptq, mode: .sequential,
            samples: 8, shardSize: 2)
        let reference = try ClusterAssets.localReference(spec)
        let (status, workers, traffic) = try run(spec, dir: dir)
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference)
        XCTAssertTrue(workers.allSatisfy { $0.tasksRun > 0 }, "both workers got work: \(workers.map(\.tasksRun))")
        print("sequential gptq traffic sent \(traffic.sent) received \(traffic.received)")
    }

    func testParallelRTNTwoWorkers() throws {
        let model = try ClusterAssets.smolLM2(blocks: 3)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("par.gguf"), method: .rtn, mode: .parallel,
            samples: 8, shardSize: 2)
        let reference = try ClusterAssets.localReference(spec)
        let (status, workers, _) = try run(spec, dir: dir)
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference)
        XCTAssertTrue(workers.allSatisfy { $0.tasksRun > 0 }, "both workers got work: \(workers.map(\.tasksRun))")
    }

    /// RTN without the error report on the cluster: workers run only the reconstructs (no
    /// collect, merge or propagate; the coordinator sends no statistics), and the file is the
    /// local executor's and the same as with the report (whose job gathers statistics).
    func testSequentialRTNWithoutReportRunsOnlyReconstructs() throws {
        let model = try ClusterAssets.smolLM2(blocks: 3)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("rtn.gguf"), method: .rtn, mode: .sequential,
            samples: 8, shardSize: 2)
        let reference = try ClusterAssets.localReference(spec)
        let (status, workers, _) = try run(spec, dir: dir)
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference)
        XCTAssertEqual(workers.map(\.tasksRun).reduce(0, +), 3 * Tasks.groups.count)
        XCTAssertEqual(Set(status.modules.map(\.phase)), [.reconstruct])

        var measured = spec
        measured.output = dir.appendingPathComponent("rtn-measured.gguf").path
        measured.errorReport = true
        let (m, _, _) = try run(measured, dir: dir)
        XCTAssertEqual(m.state, .succeeded, m.error.message)
        XCTAssertEqual(Set(m.modules.map(\.phase)), [.collect, .merge, .reconstruct, .propagate])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: measured.output)), reference)
    }

    func testWorkerJoiningMidJobGetsWork() throws {
        let model = try ClusterAssets.smolLM2(blocks: 4)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("join.gguf"), method: .gptq, mode: .sequential,
            samples: 4, shardSize: 2)
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data"))
        coordinator.start()
        defer { coordinator.stop() }
        let first = makeWorker(coordinator.endpoints.listen, id: "first")
        first.start()
        defer {
            first.requestStop()
            first.stop()
        }
        let client = try TestClient(coordinator.endpoints.listen)
        let job = try client.submit(spec)
        try waitUntil("some tasks done") { try client.status(job).tasksDone >= 4 }
        let late = makeWorker(coordinator.endpoints.listen, id: "late")
        late.start()
        defer {
            late.requestStop()
            late.stop()
        }
        let status = try client.wait(job)
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        XCTAssertGreaterThan(late.tasksRun, 0, "the worker that joined mid-job got no work")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), try ClusterAssets.localReference(spec))
    }
}
