import Coordinator
import Foundation
import KilnProtocol
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// A coordinator without CURVE keys admits only clients and workers that show the token
/// in its data directory (a 0600 file): other local users cannot use it.
final class LocalTokenTests: XCTestCase {
    func testRequestsWithoutTheTokenAreRefusedWithWhatToDo() throws {
        let data = Paths.tempDir("kiln-token").appendingPathComponent("data")
        let coordinator = try makeCoordinator(dataDir: data)
        coordinator.start()
        defer { coordinator.stop() }
        let file = data.appendingPathComponent("token")
        let token = try XCTUnwrap(coordinator.token)
        XCTAssertEqual(LocalToken.parse(try String(contentsOf: file, encoding: .utf8)), token)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? Int, 0o600)

        // No token, a wrong one: refused, told where the token is.
        for given in ["", String(repeating: "0", count: 64)] {
            let s = try ZMQContext.shared.socket(.dealer)
            defer { s.close() }
            try s.connect(coordinator.endpoints.listen)
            var m = Message(.listWorkersRequest(.init()), correlationID: "no-token")
            m.envelope.authToken = given
            try s.send(m)
            let reply = try XCTUnwrap(try s.receiveMessage(timeout: 5000)?.1, "no reply to a request without the token")
            guard case .error(let e)? = reply.body else {
                return XCTFail("answered without the token: \(reply.body as Any)")
            }
            XCTAssertEqual(e.code, .unauthorized)
            XCTAssertEqual(
                e.message,
                "this coordinator requires its token; run as a user who can read \(file.path), "
                    + "or pass --token-file \(file.path) (or set KILN_TOKEN_FILE)")
        }
        // A worker without the token never joins; one with it does.
        var wc = WorkerConfig(coordinator: coordinator.endpoints.listen, threads: 1, id: "tokenless")
        wc.reconnectInitialMs = 100
        let tokenless = Worker(config: wc, logger: quietLogger("test.worker"))
        tokenless.start()
        defer {
            tokenless.requestStop()
            tokenless.stop()
        }
        let worker = makeWorker(coordinator.endpoints.listen, id: "holder")
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }
        let client = try TestClient(coordinator.endpoints.listen)
        func ids() throws -> [String] {
            guard case .listWorkersResponse(let r)? = try client.request(.listWorkersRequest(.init())).body else {
                return []
            }
            return r.workers.map(\.workerID)
        }
        try waitUntil("the worker with the token to join", timeout: 20) { try ids() == ["holder"] }
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(try ids(), ["holder"])
    }

    func testTheTokenIsReusedAndAReadableTokenFileRefusesToStart() throws {
        let data = Paths.tempDir("kiln-token").appendingPathComponent("data")
        let first = try makeCoordinator(dataDir: data)
        let token = first.token
        first.stop()
        let second = try makeCoordinator(dataDir: data)
        XCTAssertEqual(second.token, token, "a restart keeps the token its clients hold")
        second.stop()
        let file = data.appendingPathComponent("token").path
        XCTAssertEqual(chmod(file, 0o644), 0)
        XCTAssertThrowsError(try makeCoordinator(dataDir: data)) { error in
            XCTAssertEqual(
                "\(error)",
                "\(file): mode 644 lets other users read the token; run `chmod 600 \(file)` "
                    + "(or remove it for a new token)")
        }
    }

    func testACurveCoordinatorHasNoToken() throws {
        let data = Paths.tempDir("kiln-token").appendingPathComponent("data")
        let context = ZMQContext()
        let coordinator = try makeCoordinator(dataDir: data, context: context) {
            $0.curveSecretKey = try? ZMQCurveKeyPair.generate().secretKey
        }
        defer { coordinator.stop() }
        XCTAssertNil(coordinator.token)
        XCTAssertFalse(FileManager.default.fileExists(atPath: data.appendingPathComponent("token").path))
    }
}
