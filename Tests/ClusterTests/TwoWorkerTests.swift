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
        let r = try runJob(
            spec, dataDir: dir.appendingPathComponent("data-\(UUID().uuidString.prefix(6))"),
            lanes: Array(repeating: 1, count: n))
        return (r.status, r.workers, r.traffic)
    }

    /// A 3-block SmolLM2 job on two workers; asserts it succeeded with the local executor's bytes.
    func runMatchingLocal(
        _ name: String, method: QuantMethod, mode: JobMode, dir: URL, file: StaticString = #filePath, line: UInt = #line
    ) throws -> (spec: JobSpec, status: Kiln_V1_JobStatus, workers: [Worker], traffic: TrafficCounters) {
        let spec = ClusterAssets.spec(
            model: try ClusterAssets.smolLM2(blocks: 3), out: dir.appendingPathComponent(name), method: method,
            mode: mode, samples: 8, shardSize: 2)
        let reference = try ClusterAssets.localReference(spec)
        let (status, workers, traffic) = try run(spec, dir: dir)
        XCTAssertEqual(status.state, .succeeded, status.error.message, file: file, line: line)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference, file: file, line: line)
        return (spec, status, workers, traffic)
    }

    func testSequentialGPTQTwoWorkers() throws {
        let (_, _, workers, traffic) = try runMatchingLocal(
            "seq.gguf", method: .gptq, mode: .sequential, dir: Paths.tempDir("kiln-cluster"))
        XCTAssertTrue(workers.allSatisfy { $0.tasksRun > 0 }, "both workers got work: \(workers.map(\.tasksRun))")
        print("sequential gptq traffic sent \(traffic.sent) received \(traffic.received)")
    }

    func testParallelRTNTwoWorkers() throws {
        let (_, _, workers, _) = try runMatchingLocal(
            "par.gguf", method: .rtn, mode: .parallel, dir: Paths.tempDir("kiln-cluster"))
        XCTAssertTrue(workers.allSatisfy { $0.tasksRun > 0 }, "both workers got work: \(workers.map(\.tasksRun))")
    }

    /// RTN without the error report on the cluster: workers run only the reconstructs (no
    /// collect, merge or propagate; the coordinator sends no statistics), and the file is the
    /// local executor's and the same as with the report (whose job gathers statistics).
    func testSequentialRTNWithoutReportRunsOnlyReconstructs() throws {
        let dir = Paths.tempDir("kiln-cluster")
        let (spec, status, workers, _) = try runMatchingLocal("rtn.gguf", method: .rtn, mode: .sequential, dir: dir)
        let reference = try Data(contentsOf: URL(fileURLWithPath: spec.output))  // the local executor's bytes
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
