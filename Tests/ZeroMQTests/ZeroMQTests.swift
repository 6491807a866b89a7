import Foundation
import XCTest
import ZeroMQ

final class ZeroMQTests: XCTestCase {
    let ctx = ZMQContext()

    private func pair(_ a: ZMQSocketType, _ b: ZMQSocketType, endpoint: String) throws -> (ZMQSocket, ZMQSocket, String)
    {
        let server = try ctx.socket(a)
        try server.bind(endpoint)
        let bound = try server.lastEndpoint
        let client = try ctx.socket(b)
        try client.connect(bound)
        return (server, client, bound)
    }

    func testVersionAndCurveAvailable() {
        let v = ZMQContext.version
        XCTAssertGreaterThanOrEqual(v.major, 4)
        XCTAssertTrue(ZMQContext.has("curve"))
    }

    func testInprocMultipartRoundTrip() throws {
        let (a, b, _) = try pair(.pair, .pair, endpoint: "inproc://rt-\(UUID())")
        let frames = [Data("hello".utf8), Data(), Data(repeating: 7, count: 100_000)]
        XCTAssertTrue(try b.send(frames))
        let got = try XCTUnwrap(a.receiveMultipart(timeout: 2000))
        XCTAssertEqual(got, frames)
        try a.send(Data("back".utf8))
        XCTAssertEqual(try b.receive(timeout: 2000), Data("back".utf8))
    }

    func testTCPLoopbackMultipartRoundTrip() throws {
        let (router, dealer, endpoint) = try pair(.router, .dealer, endpoint: "tcp://127.0.0.1:*")
        XCTAssertTrue(endpoint.hasPrefix("tcp://127.0.0.1:"))
        let frames = [Data("a".utf8), Data("bb".utf8), Data((0..<200_000).map { UInt8($0 & 0xFF) })]
        try dealer.send(frames)
        let got = try XCTUnwrap(router.receiveMultipart(timeout: 5000))
        XCTAssertEqual(got.count, 4)  // routing id + 3 frames
        XCTAssertEqual(Array(got.dropFirst()), frames)
        try router.send([got[0], Data("reply".utf8)])
        XCTAssertEqual(try dealer.receiveMultipart(timeout: 5000), [Data("reply".utf8)])
    }

    func testRouterDealerIdentityRouting() throws {
        let router = try ctx.socket(.router)
        try router.set(.routerMandatory(true))
        let endpoint = "inproc://route-\(UUID())"
        try router.bind(endpoint)
        var dealers: [String: ZMQSocket] = [:]
        for name in ["worker-A", "worker-B", "worker-C"] {
            let d = try ctx.socket(.dealer)
            try d.set(.routingID(Data(name.utf8)))
            try d.connect(endpoint)
            try d.send(Data("hi from \(name)".utf8))
            dealers[name] = d
        }
        var seen = Set<String>()
        for _ in 0..<3 {
            let m = try XCTUnwrap(router.receiveMultipart(timeout: 2000))
            let id = String(decoding: m[0], as: UTF8.self)
            XCTAssertEqual(String(decoding: m[1], as: UTF8.self), "hi from \(id)")
            seen.insert(id)
        }
        XCTAssertEqual(seen, Set(dealers.keys))
        for name in ["worker-C", "worker-A", "worker-B"] {
            try router.send([Data(name.utf8), Data("for \(name)".utf8)])
        }
        for (name, d) in dealers {
            XCTAssertEqual(try d.receive(timeout: 2000), Data("for \(name)".utf8))
            XCTAssertNil(try d.receive(timeout: 0))
        }
        // router_mandatory: an unknown peer is an error, not a silent drop.
        XCTAssertThrowsError(try router.send([Data("nobody".utf8), Data("x".utf8)])) { error in
            XCTAssertEqual((error as? ZMQError)?.code, EHOSTUNREACH)
        }
    }

    func testPubSubSubscription() throws {
        let pub = try ctx.socket(.pub)
        try pub.bind("tcp://127.0.0.1:*")
        let sub = try ctx.socket(.sub)
        try sub.set(.subscribe(Data("job-1".utf8)))
        try sub.connect(try pub.lastEndpoint)
        // Slow joiner: publish until the subscription has propagated.
        var got: [Data]?
        for i in 0..<200 {
            try pub.send([Data("job-2".utf8), Data("other \(i)".utf8)])
            try pub.send([Data("job-1".utf8), Data("mine \(i)".utf8)])
            if let m = try sub.receiveMultipart(timeout: 20) {
                got = m
                break
            }
        }
        let first = try XCTUnwrap(got)
        XCTAssertEqual(first[0], Data("job-1".utf8))
        try pub.send([Data("job-2".utf8), Data("never".utf8)])
        try pub.send([Data("job-1".utf8), Data("last".utf8)])
        while let m = try sub.receiveMultipart(timeout: 300) {
            XCTAssertEqual(m[0], Data("job-1".utf8), "received a message for a topic not subscribed to")
            if m[1] == Data("last".utf8) { return }
        }
        XCTFail("did not receive the last message")
    }

    func testPollTimeout() throws {
        let (a, b, _) = try pair(.pair, .pair, endpoint: "inproc://poll-\(UUID())")
        let poller = ZMQPoller()
        poller.register(a)
        poller.register(b)
        let t0 = Date()
        let ready = try poller.poll(timeout: 150)
        let dt = Date().timeIntervalSince(t0)
        XCTAssertEqual(ready, [[], []])
        XCTAssertGreaterThanOrEqual(dt, 0.12)
        XCTAssertLessThan(dt, 2)
        XCTAssertNil(try a.receiveMultipart(timeout: 50))
        try b.send(Data("x".utf8))
        let readable = try poller.readable(timeout: 1000)
        XCTAssertEqual(readable.count, 1)
        XCTAssertTrue(readable[0] === a)
    }

    func testReceiveTimeoutOption() throws {
        let (a, _, _) = try pair(.pair, .pair, endpoint: "inproc://rcvtimeo-\(UUID())")
        try a.set(.receiveTimeout(50))
        XCTAssertNil(try a.receiveMultipart())
    }

    func testErrorsCarryEndpointAndText() throws {
        let s = try ctx.socket(.router)
        XCTAssertThrowsError(try s.bind("tcp://not-an-address")) { error in
            let e = error as! ZMQError
            XCTAssertEqual(e.endpoint, "tcp://not-an-address")
            XCTAssertFalse(e.message.isEmpty)
            XCTAssertTrue(e.description.contains("bind tcp://not-an-address"))
        }
        s.close()
        XCTAssertThrowsError(try s.send(Data())) { XCTAssertEqual(($0 as? ZMQError)?.code, ENOTSOCK) }
    }

    private func bigFrame(over endpoint: String, zeroCopy: Bool) throws -> Double {
        let (rx, tx, _) = try pair(.pull, .push, endpoint: endpoint)
        let size = 64 << 20
        let buffer = ZMQBuffer(count: size)
        buffer.withUnsafeMutableBytes { b in
            let w = b.bindMemory(to: UInt64.self)
            for i in 0..<w.count { w[i] = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 }
        }
        let expectedTail = buffer.bytes[size - 1]
        let t0 = Date()
        if zeroCopy {
            try tx.send(frames: [.copy(Data("hdr".utf8)), .zeroCopy(buffer)])
        } else {
            try tx.send([Data("hdr".utf8), buffer.data])
        }
        let got = try XCTUnwrap(rx.receiveMultipart(timeout: 30_000))
        let dt = Date().timeIntervalSince(t0)
        XCTAssertEqual(got.count, 2)
        XCTAssertEqual(got[1].count, size)
        XCTAssertEqual(got[1][size - 1], expectedTail)
        got[1].withUnsafeBytes { r in
            let w = r.bindMemory(to: UInt64.self)
            XCTAssertEqual(w[12345], UInt64(12345) &* 0x9E37_79B9_7F4A_7C15)
            XCTAssertEqual(w[w.count - 1], UInt64(w.count - 1) &* 0x9E37_79B9_7F4A_7C15)
        }
        let gbps = Double(size) / dt / 1e9
        print(
            String(
                format: "ZeroMQ 64 MiB frame %@ %@: %.1f ms, %.2f GB/s", endpoint.hasPrefix("tcp") ? "tcp" : "inproc",
                zeroCopy ? "zero-copy" : "copying", dt * 1000, gbps))
        return gbps
    }

    func testSixtyFourMiBZeroCopyFrame() throws {
        _ = try bigFrame(over: "inproc://big-\(UUID())", zeroCopy: true)
        _ = try bigFrame(over: "tcp://127.0.0.1:*", zeroCopy: true)
        _ = try bigFrame(over: "tcp://127.0.0.1:*", zeroCopy: false)
    }

    func testZeroCopyBufferIsReleasedAfterSend() throws {
        let (rx, tx, _) = try pair(.pull, .push, endpoint: "inproc://release-\(UUID())")
        weak var weakBuffer: ZMQBuffer?
        do {
            let buffer = ZMQBuffer(copying: Data(repeating: 3, count: 1 << 20))
            weakBuffer = buffer
            try tx.send(frames: [.zeroCopy(buffer)])
        }
        let got = try XCTUnwrap(rx.receive(timeout: 2000))
        XCTAssertEqual(got.count, 1 << 20)
        // inproc hands the message over; the receiver's Data now owns it.
        XCTAssertNotNil(weakBuffer)
        _ = consume got
        XCTAssertNil(weakBuffer, "libzmq's free callback did not release the buffer")
    }

    func testMaxMessageSizeDropsOversizedMessage() throws {
        let router = try ctx.socket(.router)
        try router.set(.maxMessageSize(1024))
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint
        let monitorEndpoint = "inproc://monitor-\(UUID())"
        try router.monitor(monitorEndpoint, events: Int32(ZMQMonitorEvent.disconnected))
        let monitor = try ctx.socket(.pair)
        try monitor.connect(monitorEndpoint)

        let big = try ctx.socket(.dealer)
        try big.connect(endpoint)
        try big.send(Data(repeating: 1, count: 4096))
        XCTAssertNil(try router.receiveMultipart(timeout: 500), "an oversized message got through")
        let event = try XCTUnwrap(monitor.receiveMultipart(timeout: 2000).flatMap(ZMQMonitorEvent.parse))
        XCTAssertEqual(event.event, ZMQMonitorEvent.disconnected)

        // The router is fine and still serves well-behaved peers.
        let small = try ctx.socket(.dealer)
        try small.connect(endpoint)
        try small.send(Data(repeating: 2, count: 1000))
        let got = try XCTUnwrap(router.receiveMultipart(timeout: 2000))
        XCTAssertEqual(got.last?.count, 1000)
    }

    func testCurveKeysAndZ85() throws {
        let k = try ZMQCurveKeyPair.generate()
        XCTAssertEqual(k.publicKey.count, 40)
        XCTAssertEqual(try ZMQCurveKeyPair(secretKey: k.secretKey), k)
        let raw = try XCTUnwrap(Z85.decode(k.publicKey))
        XCTAssertEqual(raw.count, 32)
        XCTAssertEqual(Z85.encode(raw), k.publicKey)
        XCTAssertNil(Z85.encode(Data([1, 2, 3])))
    }

    func testCurveAllowsKnownKeyAndRejectsUnknown() throws {
        let serverKeys = try ZMQCurveKeyPair.generate()
        let good = try ZMQCurveKeyPair.generate()
        let bad = try ZMQCurveKeyPair.generate()
        let zap = try ZAPAuthenticator(context: ctx, allowedKeys: [good.publicKey])
        defer { zap.stop() }
        XCTAssertThrowsError(try ZAPAuthenticator(context: ctx), "two ZAP handlers in one context")

        let server = try ctx.socket(.router)
        try server.set([.curveServer(true), .curveSecretKey(serverKeys.secretKey), .zapDomain("kiln")])
        try server.bind("tcp://127.0.0.1:*")
        let endpoint = try server.lastEndpoint

        func client(_ keys: ZMQCurveKeyPair) throws -> ZMQSocket {
            let c = try ctx.socket(.dealer)
            try c.set([
                .curveServerKey(serverKeys.publicKey), .curvePublicKey(keys.publicKey),
                .curveSecretKey(keys.secretKey), .immediate(true),
            ])
            try c.connect(endpoint)
            return c
        }
        let intruder = try client(bad)
        try intruder.send(Data("let me in".utf8), dontWait: true)
        let friend = try client(good)
        try friend.send(Data("hello".utf8))
        let got = try XCTUnwrap(server.receiveMultipart(timeout: 5000))
        XCTAssertEqual(got.last, Data("hello".utf8))
        try server.send([got[0], Data("welcome".utf8)])
        XCTAssertEqual(try friend.receive(timeout: 5000), Data("welcome".utf8))
        // The unknown key never gets a message through.
        XCTAssertNil(try server.receiveMultipart(timeout: 500))
        let decisions = zap.decisions
        XCTAssertTrue(decisions.contains { $0.key == good.publicKey && $0.allowed })
        XCTAssertTrue(decisions.contains { $0.key == bad.publicKey && !$0.allowed })
        XCTAssertFalse(decisions.contains { $0.key == bad.publicKey && $0.allowed })
    }
}
