import Coordinator
import Foundation
import Jobs
import KilnProtocol
import Logging
import TestSupport
import XCTest
import ZeroMQ

/// `kiln worker` processes against an in-process coordinator whose log is captured.
final class WorkerProcessTests: XCTestCase {
    /// A worker whose key is not allowed: it says so (naming its key and --allow-keys), the
    /// coordinator logs the denied key, and SIGTERM ends the worker within a second (it used
    /// to block for good in a send no connection would ever take).
    func testRefusedWorkerSaysSoAndStopsWithinASecondOfSIGTERM() throws {
        let dir = Paths.tempDir("kiln-refused")
        let server = try ZMQCurveKeyPair.generate()
        let stranger = try ZMQCurveKeyPair.generate()
        let serverPub = dir.appendingPathComponent("coordinator.pub")
        let strangerSecret = dir.appendingPathComponent("stranger.secret")
        try "\(server.publicKey)\n".write(to: serverPub, atomically: true, encoding: .utf8)
        try "\(stranger.secretKey)\n".write(to: strangerSecret, atomically: true, encoding: .utf8)
        let captured = CapturedLog()
        let context = ZMQContext()  // its own ZAP handler
        var c = CoordinatorConfig(
            listen: "tcp://127.0.0.1:*", publish: "tcp://127.0.0.1:*",
            dataDir: dir.appendingPathComponent("data"))
        c.curveSecretKey = server.secretKey
        c.allowedKeys = [try ZMQCurveKeyPair.generate().publicKey]
        let coordinator = try Coordinator(config: c, context: context, logger: captured.logger("test.coordinator"))
        coordinator.start()
        defer { coordinator.stop() }

        let worker = try Background(
            kiln: [
                "worker", "--coordinator", coordinator.endpoints.listen, "--id", "intruder",
                "--curve-server-key", serverPub.path, "--curve-secret", strangerSecret.path,
            ],
            log: dir.appendingPathComponent("worker.log"))
        defer { worker.stop() }
        try waitUntil("the worker to report the refusal", timeout: 30) {
            worker.text.contains("refused this CURVE key")
        }
        XCTAssertTrue(
            worker.text.contains(
                "the coordinator at \(coordinator.endpoints.listen) refused this CURVE key "
                    + "(ask its operator to add \(stranger.publicKey) to --allow-keys)"), worker.text)
        try waitUntil("the coordinator to log the denied key", timeout: 10) {
            captured.count("ZAP denied CURVE key \(stranger.publicKey) from 127.0.0.1") > 0
        }
        // Let it retry for a while (reconnects, sends into a refused connection) before stopping it.
        Thread.sleep(forTimeInterval: 1.5)
        let seconds = worker.secondsToExit(after: SIGTERM, limit: 5)
        XCTAssertNotNil(seconds, "the refused worker ignored SIGTERM for 5 s:\n\(worker.text)")
        XCTAssertLessThan(seconds ?? 99, 1.0, worker.text)
        print("refused worker: SIGTERM to exit in \(String(format: "%.3f", seconds ?? -1)) s")
        XCTAssertLessThanOrEqual(
            captured.count("ZAP denied CURVE key \(stranger.publicKey)"), 4, "denials are rate-limited")
    }

    /// A worker stopped (SIGSTOP) past its heartbeat timeout is dropped; continued, it
    /// rejoins under the same id and `kiln workers` shows its tasks done so far, not zero.
    func testWorkerStoppedAndContinuedKeepsItsTaskCount() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-rejoin")
        let spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("rejoin.gguf"))
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data")) { c in
            c.heartbeatIntervalMs = 200
            c.heartbeatLiveness = 3
        }
        coordinator.start()
        defer { coordinator.stop() }
        let worker = try Background(
            kiln: [
                "worker", "--coordinator", coordinator.endpoints.listen, "--id", "sleeper",
                "--token-file", dir.appendingPathComponent("data/token").path,
            ],
            log: dir.appendingPathComponent("worker.log"))
        defer { worker.stop() }
        let client = try TestClient(coordinator.endpoints.listen)
        let status = try client.wait(try client.submit(spec), timeout: 300)
        XCTAssertEqual(status.state, .succeeded, status.error.message)

        func sleeper() throws -> Kiln_V1_WorkerInfo? {
            guard case .listWorkersResponse(let r)? = try client.request(.listWorkersRequest(.init())).body else {
                return nil
            }
            return r.workers.first { $0.workerID == "sleeper" }
        }
        let before = try XCTUnwrap(try sleeper())
        XCTAssertGreaterThan(before.tasksDone, 0)
        worker.signal(SIGSTOP)
        try waitUntil("the stopped worker to be declared lost", timeout: 20) { try sleeper()?.state == .lost }
        worker.signal(SIGCONT)
        try waitUntil("the worker to rejoin", timeout: 20) { try sleeper().map { $0.state != .lost } ?? false }
        let after = try XCTUnwrap(try sleeper())
        XCTAssertEqual(after.tasksDone, before.tasksDone, "tasks done reset by the rejoin")
        XCTAssertGreaterThan(after.connectedUnixMs, before.connectedUnixMs, "a new session")
    }
}
