import Foundation
import TestSupport
import XCTest

/// The HTTP ports from the command line: each refuses a non-loopback address without CURVE
/// keys (or --insecure) and without a bearer token, says when its port is taken, and
/// refuses a request without the token; each exits before doing anything else.
final class HTTPPortCLITests: XCTestCase {
    func testPortsRefuseWhatWouldLetAnyoneIn() throws {
        let bin = Paths.kilnBinary
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            throw XCTSkip("kiln binary not built at \(bin.path); run `swift build -c release` first")
        }
        let dir = Paths.tempDir("kiln-http-cli")
        let data = dir.appendingPathComponent("data").path
        let endpoint = "tcp://127.0.0.1:\(try CurveWalkthroughTests.freePortPair())"
        let tokenFile = dir.appendingPathComponent("http-token").path
        let token = "0123456789abcdef0123456789abcdef"
        try (token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let coordinator = ["coordinator", "--listen", endpoint, "--data-dir", data]
        let worker = ["worker", "--coordinator", endpoint]

        let cases: [([String], String)] = [
            (
                coordinator + ["--http", "0.0.0.0:18080"],
                "--http 0.0.0.0:18080: refusing to serve 0.0.0.0 without CURVE keys"
            ),
            (
                coordinator + ["--http", "0.0.0.0:18080", "--insecure"],
                "--http 0.0.0.0:18080: a port beyond loopback needs a bearer token: pass --http-token-file FILE"
            ),
            (coordinator + ["--http", "127.0.0.1:99999"], "--http 127.0.0.1:99999: expected HOST:PORT"),
            (
                coordinator + ["--http", "8080", "--http-token-file", dir.appendingPathComponent("none").path],
                "--http-token-file \(dir.appendingPathComponent("none").path): cannot read the token"
            ),
            (
                worker + ["--metrics", "0.0.0.0:19464"],
                "--metrics 0.0.0.0:19464: refusing to serve 0.0.0.0 without CURVE keys"
            ),
            (
                worker + ["--metrics", "0.0.0.0:19464", "--insecure"],
                "--metrics 0.0.0.0:19464: a port beyond loopback needs a bearer token: pass --metrics-token-file FILE"
            ),
            (
                ["run", "--model", "m.gguf", "--calib", "c.txt", "--out", "o.gguf", "--http", "8080"],
                "--http needs --workers N"
            ),
        ]
        for (args, message) in cases {
            let r = try ProcessRun.run(bin, args, timeout: 30)
            XCTAssertEqual(r.status, 1, args.joined(separator: " ") + "\n" + r.summary)
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: data + "/kiln.sqlite"), "a refused start made a job store")

        // A taken port: named, and nothing started behind it.
        let blocker = try Background(
            bin, coordinator + ["--http", "127.0.0.1:0"], log: dir.appendingPathComponent("first.log"))
        defer { blocker.stop() }
        var port = 0
        let deadline = Date().addingTimeInterval(30)
        while port == 0 && Date() < deadline {
            let text = (try? String(contentsOf: blocker.log, encoding: .utf8)) ?? ""
            if let r = text.range(of: #"dashboard on http://127\.0\.0\.1:(\d+)/"#, options: .regularExpression) {
                port = Int(text[r].split(separator: ":").last!.dropLast()) ?? 0
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTAssertGreaterThan(port, 0, (try? String(contentsOf: blocker.log, encoding: .utf8)) ?? "")
        let taken = try ProcessRun.run(bin, worker + ["--metrics", "127.0.0.1:\(port)"], timeout: 30)
        XCTAssertEqual(taken.status, 1, taken.summary)
        XCTAssertTrue(
            taken.stderr.contains("--metrics 127.0.0.1:\(port): cannot listen: the port is in use"), taken.stderr)

        // Beyond loopback with a token (and --insecure): a request without it is refused.
        let lan = try Background(
            bin,
            worker + [
                "--metrics", "0.0.0.0:\(LoopbackPorts.free())", "--metrics-token-file", tokenFile, "--insecure",
            ],
            log: dir.appendingPathComponent("worker.log"))
        defer { lan.stop() }
        var served = ""
        while served.isEmpty && Date() < deadline {
            let text = (try? String(contentsOf: lan.log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("worker metrics on ") }) {
                served = String(line.dropFirst("worker metrics on ".count)).replacingOccurrences(
                    of: "0.0.0.0", with: "127.0.0.1")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTAssertFalse(served.isEmpty, (try? String(contentsOf: lan.log, encoding: .utf8)) ?? "")
        let code = { (auth: [String]) in
            try ProcessRun.run(
                URL(fileURLWithPath: "/usr/bin/curl"),
                ["-s", "-o", "/dev/null", "-w", "%{http_code}"] + auth + [served]
            ).stdout
        }
        XCTAssertEqual(try code([]), "401")
        XCTAssertEqual(try code(["-H", "Authorization: Bearer wrong-wrong-wrong-wrong"]), "401")
        XCTAssertEqual(try code(["-H", "Authorization: Bearer \(token)"]), "200")
    }
}
