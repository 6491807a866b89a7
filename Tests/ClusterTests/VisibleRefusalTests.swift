import Coordinator
import Foundation
import Jobs
import KilnProtocol
import Logging
import TestSupport
import XCTest
import ZeroMQ

/// Endpoints the coordinator is given: names libzmq cannot bind, port 0, no room for port + 1.
final class EndpointCheckTests: XCTestCase {
    func testLocalhostIsBoundAsLoopback() throws {
        let port = LoopbackPorts.free()
        let coordinator = try makeCoordinator(
            dataDir: Paths.tempDir("kiln-ep").appendingPathComponent("data"),
            listen: "tcp://localhost:\(port)")
        defer { coordinator.stop() }
        XCTAssertEqual(coordinator.endpoints.listen, "tcp://127.0.0.1:\(port)")
    }

    func testPortZeroAndPortsWithoutAPublishPortAreRefused() throws {
        let dir = Paths.tempDir("kiln-ep").appendingPathComponent("data")
        XCTAssertThrowsError(try makeCoordinator(dataDir: dir, listen: "tcp://127.0.0.1:0")) { error in
            XCTAssertEqual(
                "\(error)",
                "--listen tcp://127.0.0.1:0: port 0 cannot be bound; use a port number in 1...65535, "
                    + "or * to pick a free one")
        }
        XCTAssertThrowsError(try Coordinator(config: CoordinatorConfig(listen: "tcp://127.0.0.1:65535", dataDir: dir)))
        { error in
            XCTAssertTrue("\(error)".contains("port 65535 leaves no port + 1 for progress"), "\(error)")
        }
        XCTAssertThrowsError(try makeCoordinator(dataDir: dir, publish: "tcp://127.0.0.1:70000")) { error in
            XCTAssertTrue(
                "\(error)".hasPrefix("--publish tcp://127.0.0.1:70000: port 70000 cannot be bound"), "\(error)")
        }
    }
}

/// A secret key libzmq refuses is reported with the flag and file it came from.
final class CoordinatorKeyErrorTests: XCTestCase {
    func testAnUnusableSecretKeyNamesItsFile() throws {
        let good = try ZMQCurveKeyPair.generate().secretKey
        var c = CoordinatorConfig(
            listen: "tcp://127.0.0.1:*", publish: "tcp://127.0.0.1:*",
            dataDir: Paths.tempDir("kiln-key").appendingPathComponent("data"))
        c.curveSecretKey = "#####" + good.dropFirst(5)  // 40 alphabet characters, no 32-bit value
        c.curveSecretSource = "--curve-secret /etc/kiln/coordinator.secret"
        XCTAssertThrowsError(try Coordinator(config: c, context: ZMQContext(), logger: quietLogger("test"))) { error in
            XCTAssertTrue(
                "\(error)".hasPrefix("--curve-secret /etc/kiln/coordinator.secret: not a usable CURVE secret key ("),
                "\(error)")
            XCTAssertTrue("\(error)".hasSuffix("make a key pair with `kiln keygen NAME`"), "\(error)")
        }
    }
}

/// A peer flooding the coordinator with garbage gets a bounded number of log lines, and
/// the coordinator keeps answering.
final class BadMessageFloodTests: XCTestCase {
    func testAFloodOfGarbageIsLoggedAFewTimesThenSummarised() throws {
        let captured = CapturedLog()
        var c = CoordinatorConfig(
            listen: "tcp://127.0.0.1:*", publish: "tcp://127.0.0.1:*",
            dataDir: Paths.tempDir("kiln-flood").appendingPathComponent("data"))
        c.repeatLogIntervalMs = 500
        let coordinator = try Coordinator(config: c, logger: captured.logger("test.coordinator"))
        TestTokens.register(coordinator.endpoints.listen, coordinator.token)
        coordinator.start()
        defer { coordinator.stop() }

        let evil = try ZMQContext.shared.socket(.dealer)
        defer { evil.close() }
        try evil.set([.linger(0)])
        try evil.connect(coordinator.endpoints.listen)
        let flood = 20_000
        for i in 0..<flood { try evil.send(Data([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, UInt8(truncatingIfNeeded: i)])) }

        let client = try TestClient(coordinator.endpoints.listen)
        let reply = try client.request(.listWorkersRequest(Kiln_V1_ListWorkersRequest()))
        guard case .listWorkersResponse? = reply.body else { return XCTFail("\(reply.body as Any)") }
        try waitUntil("the summary line", timeout: 30) { captured.count("more malformed message") > 0 }
        // Every message counted: logged (3) or summarised.
        try waitUntil("every message accounted for", timeout: 30) {
            let summarised = captured.lines.compactMap { line -> Int? in
                guard line.contains("more malformed message") else { return nil }
                return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
            }.reduce(0, +)
            return summarised + captured.count("dropped a bad message") == flood
        }
        XCTAssertEqual(captured.count("dropped a bad message"), 3)
        XCTAssertLessThan(captured.lines.count, 20, captured.lines.joined(separator: "\n"))
    }
}
