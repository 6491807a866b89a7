import Client
import Cluster
import Coordinator
import Foundation
import Jobs
import KilnProtocol
import Logging
import TestSupport
import Web
import XCTest
import ZeroMQ

/// The HTTP ports (`kiln coordinator --http`, `kiln worker --metrics`): who may bind what,
/// the bearer token, a taken port, and, on a live coordinator and worker running a real
/// job, the dashboard's event stream (the same updates, in the same order, as `kiln watch`
/// receives) and the /metrics series.
final class WebPortTests: XCTestCase {
    func testBindParsingAndPolicy() throws {
        XCTAssertEqual(try HTTPBind.parse("127.0.0.1:8080", flag: "--http").port, 8080)
        XCTAssertEqual(try HTTPBind.parse("localhost:9", flag: "--http").host, "127.0.0.1")
        XCTAssertEqual(try HTTPBind.parse("[::1]:80", flag: "--http").host, "::1")
        for bad in ["8080", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:65536", "127.0.0.1:x", "::1:80", "[::1]80"] {
            XCTAssertThrowsError(try HTTPBind.parse(bad, flag: "--http"), bad) { e in
                XCTAssertTrue("\(e)".contains("--http \(bad): expected HOST:PORT"), "\(e)")
            }
        }
        let lan = try HTTPBind.parse("0.0.0.0:8080", flag: "--http")
        XCTAssertFalse(lan.isLoopback)
        XCTAssertNoThrow(
            try HTTPBind.parse("127.0.0.2:1", flag: "--http").check(
                secured: false, insecure: false, token: nil, tokenFlag: "--http-token-file"))
        XCTAssertThrowsError(try lan.check(secured: false, insecure: false, token: "t", tokenFlag: "--http-token-file"))
        {
            XCTAssertTrue("\($0)".contains("without CURVE keys"), "\($0)")
        }
        for (secured, insecure) in [(true, false), (false, true)] {
            XCTAssertThrowsError(
                try lan.check(secured: secured, insecure: insecure, token: nil, tokenFlag: "--http-token-file")
            ) { XCTAssertTrue("\($0)".contains("needs a bearer token: pass --http-token-file"), "\($0)") }
            XCTAssertNoThrow(
                try lan.check(secured: secured, insecure: insecure, token: "t", tokenFlag: "--http-token-file"))
        }
    }

    func testTokenFileIsChecked() throws {
        let dir = Paths.tempDir("kiln-web-token")
        let file = dir.appendingPathComponent("token")
        try "short\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try BearerToken.read(file.path, flag: "--http-token-file")) {
            XCTAssertTrue("\($0)".contains("--http-token-file \(file.path): not a bearer token"), "\($0)")
        }
        XCTAssertThrowsError(try BearerToken.read(dir.appendingPathComponent("none").path, flag: "--http-token-file")) {
            XCTAssertTrue("\($0)".contains("cannot read the token"), "\($0)")
        }
        try "0123456789abcdef0123\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try BearerToken.read(file.path, flag: "--http-token-file"), "0123456789abcdef0123")
    }

    func testTakenPortFailsClearlyAndTokenIsRequired() throws {
        let token = "s3cret-token-0123456789"
        let registry = MetricsRegistry()
        let first = try MetricsServer.start(
            HTTPBind(host: "127.0.0.1", port: 0, flag: "--metrics"), registry: registry, token: token,
            logger: quietLogger("test.http"))
        defer { first.stop() }
        XCTAssertThrowsError(
            try MetricsServer.start(
                HTTPBind(host: "127.0.0.1", port: first.port, flag: "--metrics"), registry: registry, token: nil,
                logger: quietLogger("test.http"))
        ) { e in
            XCTAssertTrue("\(e)".contains("--metrics 127.0.0.1:\(first.port): cannot listen"), "\(e)")
            XCTAssertTrue("\(e)".contains("in use"), "\(e)")
        }
        let url = "http://127.0.0.1:\(first.port)/metrics"
        XCTAssertEqual(try HTTPGet.status(url), 401)
        XCTAssertEqual(try HTTPGet.status(url, bearer: "wrong-token-0123456789"), 401)
        XCTAssertEqual(try HTTPGet.status(url, bearer: token), 200)
    }

    /// A real 2-block job on a coordinator with the dashboard's feed and metrics, one worker.
    func testDashboardFollowsTheFeedAndMetricsMove() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-web")
        let registry = MetricsRegistry()
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data")) {
            $0.metricsFactory = registry.factory
        }
        coordinator.start()
        defer { coordinator.stop() }
        let feed = DashboardFeed(logger: quietLogger("test.dashboard"))
        let server = try Dashboard.start(
            HTTPBind(host: "127.0.0.1", port: 0, flag: "--http"), token: nil, registry: registry, feed: feed,
            logger: quietLogger("test.http"))
        defer {
            feed.stop()
            server.stop()
        }
        feed.start(
            DashboardFeed.Connection(
                endpoint: coordinator.endpoints.listen, publishEndpoint: coordinator.endpoints.publish, security: nil,
                token: coordinator.token))
        let base = "http://127.0.0.1:\(server.port)"
        // The page and its assets: all from this origin.
        let page = try HTTPGet.body(base + "/")
        XCTAssertTrue(page.contains("<script src=\"/app.js\">"), page)
        XCTAssertFalse(page.contains("https://"), "the page loads nothing from elsewhere")
        XCTAssertTrue(try HTTPGet.body(base + "/app.js").contains("EventSource(\"/api/events\")"))

        // The page's event stream and a `kiln watch`-style subscriber, side by side.
        let events = try SSEReader(base + "/api/events")
        defer { events.stop() }
        let client = try CoordinatorClient(endpoint: coordinator.endpoints.listen, token: coordinator.token)
        let watcher = try ProgressSubscriber(client: client, publishEndpoint: coordinator.endpoints.publish)
        var watched: [UInt64] = []
        for case .update(let u) in try watcher.start() { watched.append(u.sequence) }

        let worker = makeWorker(coordinator.endpoints.listen, id: "w1")
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }
        let job = try TestClient(coordinator.endpoints.listen).submit(
            ClusterAssets.spec(model: model, out: dir.appendingPathComponent("o.gguf"), method: .gptq))
        var done = false
        let deadline = Date().addingTimeInterval(300)
        while !done && Date() < deadline {
            for e in try watcher.next(timeoutMs: 200) {
                if case .update(let u) = e {
                    watched.append(u.sequence)
                    if u.jobID == job && u.state == .succeeded { done = true }
                }
            }
        }
        XCTAssertTrue(done, "job \(job) did not succeed in time")
        try waitUntil("the page's stream caught up", timeout: 20) { events.lastSequence == watched.last }
        // Every update the page got is one `kiln watch` got, in order, each the next after what
        // the page had (a "state" event, sent again after a resync, stands for those before it).
        let seen = Set(watched)
        var last: UInt64?
        var updates = 0
        for e in events.events {
            switch e {
            case .state(let s): last = s
            case .update(let u):
                XCTAssertTrue(seen.contains(u), "update \(u) was not on the feed")
                if let l = last { XCTAssertEqual(u, l + 1, "the page's stream skipped after \(l)") }
                last = u
                updates += 1
            }
        }
        XCTAssertGreaterThan(updates, 10, "the page saw the job's progress live")

        // The state the page starts from shows the finished job: every block with per-linear errors.
        let state =
            try JSONSerialization.jsonObject(with: Data(try HTTPGet.body(base + "/api/state").utf8)) as! [String: Any]
        let jobs = state["jobs"] as! [[String: Any]]
        let j = try XCTUnwrap(jobs.first { $0["job_id"] as? String == job })
        XCTAssertEqual(j["state"] as? String, "JOB_STATE_SUCCEEDED")
        let modules = j["modules"] as! [[String: Any]]
        for b in 0..<2 {
            let rec = modules.first { ($0["block"] as? Int ?? 0) == b && $0["phase"] as? String == "PHASE_RECONSTRUCT" }
            let errors = try XCTUnwrap(rec?["linear_errors"] as? [String: Double], "block \(b)")
            XCTAssertEqual(Set(errors.keys), Set(Tasks.groups.flatMap { $0 }), "block \(b)")
            XCTAssertTrue(errors.values.allSatisfy { $0 > 0 && $0 < 1 }, "\(errors)")
        }
        XCTAssertEqual((state["workers"] as? [[String: Any]])?.first?["worker_id"] as? String, "w1")

        // The metrics: tasks done by kind, bytes, durations, fsync time, the job's phase.
        let text = try HTTPGet.body(base + "/metrics")
        for series in [
            "kiln_tasks_completed_total{kind=\"reconstruct\"}", "kiln_task_duration_seconds_count{kind=\"collect\"}",
            "kiln_bytes_received_total{kind=\"reconstruct\"}", "kiln_result_fsync_seconds_count",
            "kiln_job_phase{job_id=\"\(job)\",phase=\"succeeded\"} 1", "kiln_workers_connected 1",
            "kiln_tasks{kind=\"reconstruct\",state=\"done\"}", "kiln_queue_depth",
        ] {
            XCTAssertTrue(text.contains(series), "\(series) missing from /metrics:\n\(text)")
        }
    }
}

/// GETs through curl (present on every machine of this kind): status codes and bodies.
enum HTTPGet {
    static func run(_ args: [String]) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-s", "--max-time", "20"] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func status(_ url: String, bearer: String? = nil) throws -> Int {
        let auth = bearer.map { ["-H", "Authorization: Bearer \($0)"] } ?? []
        let r = try run(["-o", "/dev/null", "-w", "%{http_code}"] + auth + [url])
        return Int(r.out) ?? -1
    }

    static func body(_ url: String) throws -> String {
        let r = try run(["--fail", url])
        guard r.status == 0 else { throw WebError("GET \(url): curl exit \(r.status)") }
        return r.out
    }
}

/// Follows a Server-Sent Events stream with `curl -N`: the state events' sequences and the
/// update events' ids, in order.
final class SSEReader: @unchecked Sendable {
    enum Event: Equatable {
        case state(UInt64)
        case update(UInt64)
    }

    private let process = Process()
    private let lock = NSLock()
    private var buffer = ""
    private var received: [Event] = []

    init(_ url: String) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-s", "-N", url]
        let pipe = Pipe()
        process.standardOutput = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard !data.isEmpty, let self else { return }
            self.lock.withLock {
                self.buffer += String(decoding: data, as: UTF8.self)
                while let end = self.buffer.range(of: "\n\n") {
                    let lines = self.buffer[..<end.lowerBound].split(separator: "\n").map(String.init)
                    self.buffer.removeSubrange(..<end.upperBound)
                    if let e = Self.parse(lines) { self.received.append(e) }
                }
            }
        }
        try process.run()
        try waitUntil("the page's stream opened", timeout: 20) { !events.isEmpty }
    }

    static func parse(_ lines: [String]) -> Event? {
        guard let data = lines.first(where: { $0.hasPrefix("data: ") })?.dropFirst(6) else { return nil }
        if lines.contains("event: update"), let id = lines.first(where: { $0.hasPrefix("id: ") }) {
            return UInt64(id.dropFirst(4)).map(Event.update)
        }
        if lines.contains("event: state"),
            let o = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any],
            let s = o["sequence"] as? Int
        {
            return .state(UInt64(s))
        }
        return nil
    }

    var events: [Event] { lock.withLock { received } }
    var lastSequence: UInt64? {
        switch events.last {
        case .state(let s)?, .update(let s)?: return s
        case nil: return nil
        }
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}
