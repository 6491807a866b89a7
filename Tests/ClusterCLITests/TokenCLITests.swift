import Foundation
import TestSupport
import XCTest

/// `kiln coordinator` without keys and the client commands: the token through
/// $KILN_TOKEN_FILE or --token-file, and the message without it.
final class TokenCLITests: XCTestCase {
    func testClientsFindTheTokenThroughTheEnvironmentOrTheFlag() throws {
        let bin = Paths.kilnBinary
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            throw XCTSkip("kiln binary not built at \(bin.path); run `swift build -c release` first")
        }
        let dir = Paths.tempDir("kiln-token-cli")
        let data = dir.appendingPathComponent("data")
        let endpoint = "tcp://127.0.0.1:\(try CurveWalkthroughTests.freePortPair())"
        let coordinator = try Background(
            bin, ["coordinator", "--listen", endpoint, "--data-dir", data.path],
            log: dir.appendingPathComponent("coordinator.log"))
        defer { coordinator.stop() }
        let token = data.appendingPathComponent("token").path
        let env = ["KILN_COORDINATOR": endpoint, "KILN_TOKEN_FILE": token]
        var ok = try ProcessRun.run(bin, ["workers", "--timeout", "1"], env: env)
        let deadline = Date().addingTimeInterval(30)
        while ok.status != 0 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
            ok = try ProcessRun.run(bin, ["workers", "--timeout", "1"], env: env)
        }
        XCTAssertEqual(ok.status, 0, ok.summary + coordinator.text)

        let flag = try ProcessRun.run(
            bin, ["workers", "--token-file", token], env: ["KILN_COORDINATOR": endpoint, "KILN_TOKEN_FILE": ""])
        XCTAssertEqual(flag.status, 0, flag.summary)

        let without = try ProcessRun.run(bin, ["workers"], env: ["KILN_COORDINATOR": endpoint, "KILN_TOKEN_FILE": ""])
        XCTAssertEqual(without.status, 1, without.summary)
        XCTAssertTrue(
            without.stderr.contains(
                "this coordinator requires its token; run as a user who can read \(token), "
                    + "or pass --token-file"), without.stderr)

        let junk = dir.appendingPathComponent("junk").path
        try "not a token\n".write(toFile: junk, atomically: true, encoding: .utf8)
        let bad = try ProcessRun.run(bin, ["workers", "--token-file", junk], env: ["KILN_COORDINATOR": endpoint])
        XCTAssertTrue(bad.stderr.contains("--token-file \(junk): not a coordinator token"), bad.summary)
    }
}
