import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Refusals made visible: the ZAP handler logs denied keys (rate-limited), a client's
/// handshake events tell "refused" from "nobody there", and key text is checked against
/// RFC 32 (Z85) before libzmq sees it.
final class RefusalVisibilityTests: XCTestCase {
    /// Collects log lines from the ZAP thread.
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ l: String) { lock.withLock { lines.append(l) } }
        var all: [String] { lock.withLock { lines } }
    }

    /// A CURVE ROUTER (ZAP domain "kiln") in its own context, with a ZAP handler logging into `lines`.
    private func curveServer(
        allowed: Set<String>, lines: Lines, limiter: LogLimiter
    )
        throws -> (ZMQContext, ZAPAuthenticator, ZMQSocket, ZMQCurveKeyPair, String)
    {
        let context = ZMQContext()
        let keys = try ZMQCurveKeyPair.generate()
        let zap = try ZAPAuthenticator(context: context, allowedKeys: allowed, log: { lines.add($0) }, limiter: limiter)
        let router = try context.socket(.router)
        try router.set([.curveServer(true), .curveSecretKey(keys.secretKey), .zapDomain("kiln")])
        try router.bind("tcp://127.0.0.1:*")
        return (context, zap, router, keys, try router.lastEndpoint)
    }

    /// Connects a DEALER with `keys` and waits until its handshake has an outcome.
    private func handshake(
        _ context: ZMQContext, _ endpoint: String, server: String,
        keys: ZMQCurveKeyPair?
    ) throws -> HandshakeVerdict {
        let s = try context.socket(.dealer)
        defer { s.close() }
        if let keys {
            try s.set([.curveServerKey(server), .curvePublicKey(keys.publicKey), .curveSecretKey(keys.secretKey)])
        }
        let watch = try HandshakeWatch(s)
        defer { watch.close() }
        try s.connect(endpoint)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            switch watch.update() {
            case .unknown, .noHandshake, .unreachable: Thread.sleep(forTimeInterval: 0.01)
            default: return watch.verdict
            }
        }
        return watch.verdict
    }

    func testZAPLogsEachDeniedKeyAFewTimesThenSummarises() throws {
        let lines = Lines()
        let stranger = try ZMQCurveKeyPair.generate()
        let friend = try ZMQCurveKeyPair.generate()
        let (context, zap, router, server, endpoint) = try curveServer(
            allowed: [friend.publicKey], lines: lines, limiter: LogLimiter(burst: 2, intervalMs: 400))
        defer {
            router.close()
            zap.stop()
        }
        for _ in 0..<6 {
            XCTAssertEqual(
                try handshake(context, endpoint, server: server.publicKey, keys: stranger), .refused(status: 400))
        }
        XCTAssertEqual(try handshake(context, endpoint, server: server.publicKey, keys: friend), .succeeded)
        let denials = lines.all.filter { $0.contains(stranger.publicKey) }
        XCTAssertEqual(denials.count, 2, "\(lines.all)")
        XCTAssertTrue(denials[0].contains("from 127.0.0.1"), denials[0])
        XCTAssertTrue(denials[0].contains("key not allowed"), denials[0])
        XCTAssertFalse(lines.all.contains { $0.contains(friend.publicKey) }, "allowed keys are not logged")
        // The 4 suppressed denials come back as one summary line once the interval is over.
        try waitFor("the summary line") {
            lines.all.contains { $0.contains(stranger.publicKey) && $0.contains("4 more times") }
        }
        XCTAssertEqual(lines.all.filter { $0.contains(stranger.publicKey) }.count, 3, "\(lines.all)")
        XCTAssertEqual(zap.decisions.filter { !$0.allowed }.count, 6)
    }

    func testHandshakeVerdictsTellRefusedFromMismatchFromNobodyThere() throws {
        let lines = Lines()
        let (context, zap, router, server, endpoint) = try curveServer(allowed: [], lines: lines, limiter: LogLimiter())
        defer {
            router.close()
            zap.stop()
        }
        XCTAssertEqual(
            try handshake(context, endpoint, server: server.publicKey, keys: try .generate()), .refused(status: 400))
        let plain = try handshake(context, endpoint, server: server.publicKey, keys: nil)
        XCTAssertEqual(plain, .protocolFailure(code: HandshakeVerdict.mechanismMismatch))
        XCTAssertTrue(plain.hint(curve: false)?.contains("requires CURVE") == true)
        let dead = LoopbackPorts.closedEndpoint()
        let s = try context.socket(.dealer)
        defer { s.close() }
        let watch = try HandshakeWatch(s)
        try s.connect(dead)
        try waitFor("a refused connect", timeout: 10) { watch.update() == .unreachable }
    }

    func testHandshakeStateLatestOutcomeWins() {
        var s = HandshakeState()
        XCTAssertEqual(s.verdict, .unknown)
        s.apply(ZMQMonitorEvent(event: ZMQMonitorEvent.connectRetried, value: 0, endpoint: "tcp://x:1"))
        XCTAssertEqual(s.verdict, .unreachable)
        s.apply(ZMQMonitorEvent(event: ZMQMonitorEvent.connected, value: 0, endpoint: "tcp://x:1"))
        XCTAssertEqual(s.verdict, .noHandshake)
        s.apply(ZMQMonitorEvent(event: ZMQMonitorEvent.handshakeFailedAuth, value: 400, endpoint: "tcp://x:1"))
        XCTAssertEqual(s.verdict, .refused(status: 400))
        s.apply(ZMQMonitorEvent(event: ZMQMonitorEvent.handshakeSucceeded, value: 0, endpoint: "tcp://x:1"))
        XCTAssertEqual(s.verdict, .succeeded)
    }

    func testLogLimiterBurstThenOneSummaryPerInterval() {
        var l = LogLimiter(burst: 3, intervalMs: 1000, globalBurst: 100)
        let admitted = (0..<1000).filter { i in l.admit("peer-a", nowMs: Int64(i) / 10) }
        XCTAssertEqual(admitted, [0, 1, 2])
        XCTAssertTrue(l.summaries(nowMs: 99).isEmpty, "no summary before the interval is over")
        let s = l.summaries(nowMs: 1000)
        XCTAssertEqual(s.count, 1)
        XCTAssertEqual(s.first?.key, "peer-a")
        XCTAssertEqual(s.first?.suppressed, 997)
        // Still flooding: still suppressed, summarised again one interval later.
        XCTAssertFalse(l.admit("peer-a", nowMs: 1050))
        XCTAssertTrue(l.summaries(nowMs: 1600).isEmpty)
        XCTAssertEqual(l.summaries(nowMs: 2000).first?.suppressed, 1)
        // Quiet for a whole interval: the next line is logged again.
        XCTAssertTrue(l.admit("peer-a", nowMs: 5000))
    }

    func testLogLimiterCapsFreshPeersTogether() {
        var l = LogLimiter(burst: 3, intervalMs: 1000, globalBurst: 10, maxKeys: 50, maxSummaries: 4)
        var logged = 0
        for peer in 0..<10_000 where l.admit("peer-\(peer)", nowMs: 10) { logged += 1 }
        XCTAssertEqual(logged, 10)
        let s = l.summaries(nowMs: 2000)
        XCTAssertEqual(s.count, 4)
        XCTAssertEqual(s.reduce(0) { $0 + $1.suppressed }, 9990)
        XCTAssertTrue(s.contains { $0.key.hasSuffix("peers") }, "\(s)")
    }

    func testZ85KeyProblemNamesWhatIsWrong() throws {
        let good = try ZMQCurveKeyPair.generate().publicKey
        XCTAssertNil(Z85.keyProblem(good))
        XCTAssertEqual(Z85.keyProblem(String(good.dropLast())), "a CURVE key is 40 Z85 characters, this is 39")
        let badChar = String(good.prefix(10)) + "," + String(good.dropFirst(11))
        XCTAssertEqual(Z85.keyProblem(badChar), "character 11 (',') is not in the Z85 alphabet")
        // "#####" is 84 * (85^4 + ... + 1) > 2^32: alphabet characters, but no 32-bit value.
        let overflow = "#####" + String(good.dropFirst(5))
        XCTAssertEqual(Z85.keyProblem(overflow), "characters 1...5 are not valid Z85 (their value exceeds 32 bits)")
        XCTAssertThrowsError(try ZMQCurveKeyPair(secretKey: overflow))
    }

    private func waitFor(_ what: String, timeout: Double = 5, _ cond: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if cond() { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTFail("timed out waiting for \(what)")
    }
}
