import Client
import Foundation
import Jobs
import KilnProtocol
import ModelIO
import Tensor
import TestSupport
import XCTest

/// `kiln submit --target-bpw` against a coordinator, through the code the command runs
/// (`CoordinatorClient.resolveTargetBPW`): the sensitivity job runs on the coordinator, its
/// report comes back over the wire, and the job it resolves writes the bytes and types of
/// the local `kiln run --target-bpw`.
final class SubmitTargetBPWTests: XCTestCase {
    func testSubmitResolvesTheTypesKilnRunChooses() throws {
        let dir = Paths.tempDir("kiln-submit-target-bpw")
        let spec = try ClusterAssets.targetBPWSpec(out: dir.appendingPathComponent("t.gguf"))
        var local = spec
        local.output = spec.output + ".local.gguf"
        let report = try TargetBPW.run(local) { try Job.run($0) }

        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data"))
        coordinator.start()
        defer { coordinator.stop() }
        let workers = (1...2).map { makeWorker(coordinator.endpoints.listen, id: "w\($0)") }
        for w in workers { w.start() }
        defer {
            for w in workers { w.requestStop() }
            for w in workers { w.stop() }
        }
        let client = try CoordinatorClient(
            endpoint: coordinator.endpoints.listen, timeoutMs: 30_000,
            token: TestTokens.token(for: coordinator.endpoints.listen))
        var sensitivityJobs: [String] = []
        let resolved = try client.resolveTargetBPW(
            spec, name: "t.gguf", publish: coordinator.endpoints.publish, submitted: { sensitivityJobs.append($0) })
        XCTAssertEqual(sensitivityJobs.count, 1)
        let sensitivity = try client.status(jobID: sensitivityJobs[0])
        XCTAssertEqual(sensitivity.state, .succeeded)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: spec.output + ".sensitivity.gguf"), "sensitivity output kept")
        // The coordinator's measurements are the local ones (same tasks, one BLAS thread each).
        XCTAssertEqual(
            resolved.sensitivity.linears.map(\.candidates), report.linears.map(\.candidates), "sensitivities")
        XCTAssertEqual(resolved.spec.tensorTypes?.count, 14)

        // The resolved job, submitted as plain `kiln submit` does: the local file's types and bytes.
        let job = try client.submit(resolved.spec, name: "t.gguf").jobID
        XCTAssertEqual(try TestClient(coordinator.endpoints.listen).wait(job).state, .succeeded)
        let written = try GGUFFile(URL(fileURLWithPath: spec.output))
        for l in report.linears {
            let t = try XCTUnwrap(written.tensor(l.tensor), l.tensor)
            XCTAssertEqual("\(t.type)".uppercased(), l.type?.uppercased(), l.tensor)
        }
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: spec.output)),
            try Data(contentsOf: URL(fileURLWithPath: local.output)), "submit --target-bpw")
        // Only sensitivity jobs keep a report.
        XCTAssertThrowsError(try client.report(jobID: job)) { e in
            XCTAssertTrue("\(e)".contains("sensitivity jobs (measure_types) only"), "\(e)")
        }
    }

    func testRefusalsAndACancelledSensitivityJobSubmitNothingMore() throws {
        let dir = Paths.tempDir("kiln-submit-target-bpw-refused")
        let model = try ClusterAssets.smolLM2(blocks: 2)
        var spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("t.gguf"), method: .rtn)
        spec.targetBPW = 4.5
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data"))
        coordinator.start()
        defer { coordinator.stop() }
        let client = try CoordinatorClient(
            endpoint: coordinator.endpoints.listen, timeoutMs: 30_000,
            token: TestTokens.token(for: coordinator.endpoints.listen))
        func jobs() throws -> [Kiln_V1_JobStatus] { try client.snapshot().jobs }

        // Checked on this side before any job: below what the grids allow on this model.
        var s = spec
        s.targetBPW = 3
        XCTAssertThrowsError(try client.resolveTargetBPW(s, name: "t", publish: coordinator.endpoints.publish)) { e in
            XCTAssertTrue("\(e)".contains("below the least these types allow"), "\(e)")
        }
        s = spec
        s.bits = 4
        XCTAssertThrowsError(try client.resolveTargetBPW(s, name: "t", publish: coordinator.endpoints.publish)) { e in
            XCTAssertTrue("\(e)".contains("--bits cannot be given"), "\(e)")
        }
        XCTAssertEqual(try jobs().count, 0)

        // The sensitivity job cancelled (no worker runs it): the error names it, nothing else is submitted.
        var cancelled = ""
        XCTAssertThrowsError(
            try client.resolveTargetBPW(
                spec, name: "t", publish: coordinator.endpoints.publish,
                submitted: { id in
                    cancelled = id
                    _ = try? client.cancel(jobID: id, reason: "test")
                })
        ) { e in
            XCTAssertTrue("\(e)".contains("job \(cancelled) (t.sensitivity) was cancelled"), "\(e)")
        }
        XCTAssertEqual(try jobs().map(\.jobID), [cancelled])
        XCTAssertThrowsError(try client.report(jobID: cancelled)) { e in
            XCTAssertTrue("\(e)".contains("has not succeeded"), "\(e)")
        }
    }
}
