import Coordinator
import Foundation
import Jobs
import KilnProtocol
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// CURVE end to end over tcp: a worker and a client holding allowed keys run a job to
/// the same bytes as the local executor; a client with an unknown key, and one without
/// CURVE, get no answer at all (the ZAP handler refuses them before any message).
final class CurveTests: XCTestCase {
    func testAllowedKeysRunAJobOthersAreRefused() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-curve")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("curve.gguf"), method: .rtn, mode: .parallel)
        let reference = try ClusterAssets.localReference(spec)

        let server = try ZMQCurveKeyPair.generate()
        let workerKeys = try ZMQCurveKeyPair.generate()
        let clientKeys = try ZMQCurveKeyPair.generate()
        let stranger = try ZMQCurveKeyPair.generate()
        let context = ZMQContext()  // its own ZAP handler
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data"), context: context) {
            $0.curveSecretKey = server.secretKey
            $0.allowedKeys = [workerKeys.publicKey, clientKeys.publicKey]
        }
        coordinator.start()
        defer { coordinator.stop() }
        var wc = WorkerConfig(coordinator: coordinator.endpoints.listen, threads: 1, id: "curve-worker")
        wc.curveServerKey = server.publicKey
        wc.curveKeys = workerKeys
        let worker = Worker(config: wc, context: context, logger: quietLogger("test.worker"))
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }

        // Refused: an unknown key, and plain TCP.
        for keys in [stranger, nil] {
            let s = try context.socket(.dealer)
            defer { s.close() }
            try s.set([.linger(0)])
            if let keys {
                try s.set([
                    .curveServerKey(server.publicKey), .curvePublicKey(keys.publicKey), .curveSecretKey(keys.secretKey),
                ])
            }
            try s.connect(coordinator.endpoints.listen)
            // Without a completed handshake there is no peer: the send may not even queue.
            _ = try s.send(
                Message(.listWorkersRequest(Kiln_V1_ListWorkersRequest()), correlationID: "intruder"), dontWait: true)
            XCTAssertNil(
                try s.receiveMessage(timeout: 1500), "a \(keys == nil ? "plain" : "unknown-key") client got an answer")
        }

        let client = try TestClient(
            coordinator.endpoints.listen, context: context,
            curve: (server: server.publicKey, keys: clientKeys))
        let job = try client.submit(spec)
        let status = try client.wait(job)
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference)
        XCTAssertGreaterThan(worker.tasksRun, 0)
    }
}
