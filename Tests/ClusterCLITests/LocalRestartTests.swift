import Foundation
import TestSupport
import XCTest

/// Cluster/local.sh after a coordinator crash: `start` again brings the coordinator
/// back on the same endpoint (so the surviving workers find it), and the crashed
/// coordinator's log is kept above a "--- started" line.
final class LocalRestartTests: XCTestCase {
    var bin: URL { Paths.kilnBinary }
    var script: URL { Paths.repoRoot.appendingPathComponent("Cluster/local.sh") }
    let bash = URL(fileURLWithPath: "/bin/bash")

    func workerIDs(_ endpoint: String, token: URL) throws -> [String] {
        let r = try ProcessRun.run(
            bin, ["workers", "--coordinator", endpoint, "--json"], env: ["KILN_TOKEN_FILE": token.path], timeout: 30)
        guard r.status == 0 else { return [] }
        return ((try r.json()["workers"] as? [[String: Any]]) ?? []).compactMap { $0["worker_id"] as? String }
    }

    func testRestartAfterACoordinatorCrashKeepsTheEndpointTheLogAndTheWorkers() throws {
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            throw XCTSkip("kiln binary not built at \(bin.path); run `swift build` first")
        }
        continueAfterFailure = false
        let dir = Paths.tempDir("kiln-local-restart")
        let run = dir.appendingPathComponent("run")
        let env = [
            "KILN_RUN_DIR": run.path, "KILN_BIN": bin.path, "KILN_READY_TIMEOUT": "30",
            "KILN_ALLOW_PATHS": FileManager.default.temporaryDirectory.path + ":" + Paths.repoRoot.path,
            "KILN_STOP_TIMEOUT": "3",
        ]
        defer {
            let stop = try? ProcessRun.run(bash, [script.path, "stop"], env: env, timeout: 60)
            XCTAssertEqual(stop?.status, 0, stop?.summary ?? "stop did not run")
        }
        let first = try ProcessRun.run(bash, [script.path, "start", "1"], env: env, timeout: 90)
        XCTAssertEqual(first.status, 0, first.summary)
        func read(_ name: String) throws -> String {
            try String(contentsOf: run.appendingPathComponent(name), encoding: .utf8).trimmingCharacters(
                in: .whitespacesAndNewlines)
        }
        let endpoint = try read("endpoint.txt")
        let workerPid = try read("worker-1.pid")
        let before = try workerIDs(endpoint, token: run.appendingPathComponent("data/token"))
        XCTAssertEqual(before.count, 1)
        let oldLog = try read("logs/coordinator.log")
        XCTAssertTrue(oldLog.contains("coordinator listening"), oldLog)

        let coordinatorPid = try XCTUnwrap(Int32(try read("coordinator.pid")))
        XCTAssertEqual(kill(coordinatorPid, SIGKILL), 0)
        // Gone, or a zombie that local.sh no longer counts as alive (its cmdline is empty).
        for _ in 0..<100 where kill(coordinatorPid, 0) == 0 { usleep(20_000) }
        XCTAssertEqual(
            try ProcessRun.run(bash, [script.path, "status"], env: env, timeout: 10).status, 1,
            "the crash shows in status")

        let second = try ProcessRun.run(bash, [script.path, "start", "1"], env: env, timeout: 90)
        XCTAssertEqual(second.status, 0, second.summary)
        XCTAssertTrue(second.stdout.contains("worker 1 already running"), second.stdout)
        XCTAssertEqual(try read("endpoint.txt"), endpoint, "a restarted coordinator moved to another port")
        XCTAssertEqual(try read("worker-1.pid"), workerPid)
        let log = try read("logs/coordinator.log")
        XCTAssertTrue(
            log.hasPrefix(oldLog.components(separatedBy: "\n").first!), "the crashed coordinator's log was overwritten")
        XCTAssertTrue(log.contains(oldLog), "the crashed coordinator's log was overwritten")
        XCTAssertEqual(log.components(separatedBy: "\n").filter { $0.hasPrefix("--- started ") }.count, 2, log)
        // The surviving worker (same process) registered with the new coordinator.
        XCTAssertEqual(try workerIDs(endpoint, token: run.appendingPathComponent("data/token")), before)

        // `kiln gc` keeps off a data directory a coordinator holds, and runs once it stopped.
        let data = run.appendingPathComponent("data").path
        let refused = try ProcessRun.run(bin, ["gc", "--data-dir", data])
        XCTAssertEqual(refused.status, 1, refused.summary)
        XCTAssertTrue(refused.stderr.contains("in use by a running coordinator"), refused.stderr)
        XCTAssertEqual(try ProcessRun.run(bash, [script.path, "stop"], env: env, timeout: 60).status, 0)
        let gc = try ProcessRun.run(bin, ["gc", "--data-dir", data])
        XCTAssertEqual(gc.status, 0, gc.summary)
        XCTAssertTrue(gc.stdout.contains("freed 0.0 MiB in 0 files"), gc.stdout)
    }
}
