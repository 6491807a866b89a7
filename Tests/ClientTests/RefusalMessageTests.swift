import Client
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// What a client says when it gets no answer: a refused key, nobody there, or a CURVE
/// mismatch, each telling the user what to do (not one generic "no answer").
final class RefusalMessageTests: XCTestCase {
    func testUnknownKeyIsToldItWasRefusedAndWhichKeyToAllow() throws {
        // The shared context: ClientTests has no other ZAP handler, and a private context's
        // termination was seen to upset later tests' shared-context sockets (libzmq 4.3.4).
        let context = ZMQContext.shared
        let server = try ZMQCurveKeyPair.generate()
        let stranger = try ZMQCurveKeyPair.generate()
        let zap = try ZAPAuthenticator(context: context, allowedKeys: [])
        defer { zap.stop() }
        let router = try context.socket(.router)
        defer { router.close() }
        try router.set([.curveServer(true), .curveSecretKey(server.secretKey), .zapDomain("kiln")])
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint

        let client = try CoordinatorClient(
            endpoint: endpoint, timeoutMs: 5000,
            security: ClientSecurity(serverPublicKey: server.publicKey, keys: stranger),
            context: context)
        let t0 = Date()
        XCTAssertThrowsError(try client.workers()) { error in
            XCTAssertEqual(
                error as? ClientError, .refusedKey(endpoint: endpoint, publicKey: stranger.publicKey, ephemeral: false))
            XCTAssertEqual(
                "\(error)",
                "the coordinator at \(endpoint) refused this CURVE key "
                    + "(ask its operator to add \(stranger.publicKey) to --allow-keys)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(t0), 4, "a refusal ends the wait before the timeout")

        // Without a secret key the client made a fresh pair: the message says how to get a lasting one.
        let fresh = try CoordinatorClient(
            endpoint: endpoint, timeoutMs: 3000,
            security: ClientSecurity(serverPublicKey: server.publicKey, secretKey: nil),
            context: context)
        XCTAssertThrowsError(try fresh.workers()) { error in
            XCTAssertTrue("\(error)".contains("kiln keygen NAME"), "\(error)")
        }
        // Plain TCP against a CURVE coordinator: told to pass the keys.
        let plain = try CoordinatorClient(endpoint: endpoint, timeoutMs: 3000, context: context)
        XCTAssertThrowsError(try plain.workers()) { error in
            XCTAssertTrue("\(error)".contains("it requires CURVE; pass --curve-server-key"), "\(error)")
        }
    }

    func testNobodyListeningIsToldToStartACoordinator() throws {
        let endpoint = LoopbackPorts.closedEndpoint()
        let client = try CoordinatorClient(endpoint: endpoint, timeoutMs: 1500)
        XCTAssertThrowsError(try client.workers()) { error in
            XCTAssertEqual(error as? ClientError, .unreachable(endpoint: endpoint))
            XCTAssertEqual("\(error)", "no coordinator answers at \(endpoint) (is `kiln coordinator` running there?)")
        }
    }

    /// A peer that completes the handshake but never answers keeps the generic message.
    func testASilentCoordinatorStillGetsTheTimeoutMessage() throws {
        let router = try ZMQContext.shared.socket(.router)
        defer { router.close() }
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        let client = try CoordinatorClient(endpoint: endpoint, timeoutMs: 1000)
        XCTAssertThrowsError(try client.workers()) { error in
            XCTAssertEqual(error as? ClientError, .noAnswer(endpoint: endpoint, timeoutMs: 1000))
        }
    }
}
