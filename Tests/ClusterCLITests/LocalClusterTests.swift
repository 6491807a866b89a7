import Foundation
import TestSupport
import XCTest

/// End to end on this host: Cluster/local.sh starts a coordinator and 2 workers
/// (separate processes), then the client commands drive a tiny job.
final class LocalClusterTests: XCTestCase {
    var bin: URL { Paths.kilnBinary }
    var script: URL { Paths.repoRoot.appendingPathComponent("Cluster/local.sh") }

    /// The coordinator's token for the client commands (set once local.sh has started it).
    var clientEnv: [String: String] = [:]

    func kiln(_ args: [String], timeout: TimeInterval = 60) throws -> ProcessRun {
        try ProcessRun.run(bin, args, env: clientEnv, timeout: timeout)
    }

    func testSubmitWatchStatusWorkersOnALocalCluster() throws {
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            throw XCTSkip("kiln binary not built at \(bin.path); run `swift build` first")
        }
        continueAfterFailure = false
        let model = Paths.smollm2
        guard FileManager.default.fileExists(atPath: model.path) else {
            throw XCTSkip("\(model.path) missing; run Ops/fetch-assets.sh")
        }
        let dir = Paths.tempDir("kiln-cluster")
        let env = [
            "KILN_RUN_DIR": dir.appendingPathComponent("run").path, "KILN_BIN": bin.path, "KILN_READY_TIMEOUT": "30",
            "KILN_ALLOW_PATHS": FileManager.default.temporaryDirectory.path + ":" + Paths.repoRoot.path,
            "KILN_STOP_TIMEOUT": "3",
        ]
        let bash = URL(fileURLWithPath: "/bin/bash")
        let start = try ProcessRun.run(bash, [script.path, "start", "2"], env: env, timeout: 60)
        defer {
            let stop = try? ProcessRun.run(bash, [script.path, "stop"], env: env, timeout: 60)
            XCTAssertEqual(stop?.status, 0, stop?.summary ?? "stop did not run")
            let after = try? ProcessRun.run(bash, [script.path, "status"], env: env, timeout: 10)
            XCTAssertEqual(after?.status, 3, "nothing runs after stop: \(after?.summary ?? "")")
            try? FileManager.default.removeItem(at: dir)
        }
        XCTAssertEqual(start.status, 0, start.summary)
        let runDir = dir.appendingPathComponent("run")
        clientEnv = ["KILN_TOKEN_FILE": runDir.appendingPathComponent("data/token").path]
        let endpoint = try String(contentsOf: runDir.appendingPathComponent("endpoint.txt"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(endpoint.hasPrefix("tcp://127.0.0.1:"), endpoint)
        for f in ["coordinator.pid", "worker-1.pid", "worker-2.pid", "logs/coordinator.log", "logs/worker-1.log"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: runDir.appendingPathComponent(f).path), f)
        }
        let status = try ProcessRun.run(bash, [script.path, "status"], env: env, timeout: 10)
        XCTAssertEqual(status.status, 0, status.summary)

        // Starting again is a no-op on what runs.
        let again = try ProcessRun.run(bash, [script.path, "start", "2"], env: env, timeout: 60)
        XCTAssertEqual(again.status, 0, again.summary)
        XCTAssertTrue(again.stdout.contains("already running"), again.stdout)

        let workers = try kiln(["workers", "--coordinator", endpoint, "--json"])
        XCTAssertEqual(workers.status, 0, workers.summary)
        XCTAssertEqual((try workers.json()["workers"] as? [Any])?.count, 2, workers.stdout)

        let out = dir.appendingPathComponent("smollm2-q4_0.gguf")
        let submit = try kiln([
            "submit", "--coordinator", endpoint, "--model", model.path,
            "--calib", Paths.fixture("text/fortunes_calib.txt").path,
            "--samples", "4", "--seqlen", "64", "--method", "rtn", "--mode", "parallel", "--format", "gguf-q4_0",
            "--out", out.path,
        ])
        XCTAssertEqual(submit.status, 0, submit.summary)
        let job = submit.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertFalse(job.isEmpty || job.contains("\n"), "one job id: \(submit.stdout)")

        // Start watching once the job has begun (late joiner: the snapshot carries what it missed).
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let s = try kiln(["status", job, "--coordinator", endpoint, "--json"])
            XCTAssertEqual(s.status, 0, s.summary)
            let state = try s.json()["state"] as? String
            if state != "queued" && state != "planning" { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let watch = try kiln(["watch", job, "--coordinator", endpoint], timeout: 240)
        XCTAssertEqual(watch.status, 0, watch.summary)
        XCTAssertFalse(watch.timedOut)

        let final = try kiln(["status", job, "--coordinator", endpoint, "--json"])
        XCTAssertEqual(final.status, 0, final.summary)
        let o = try final.json()
        XCTAssertEqual(o["state"] as? String, "succeeded", final.stdout)
        let total = try XCTUnwrap(o["blocks_total"] as? Int)
        XCTAssertGreaterThan(total, 0)
        XCTAssertEqual(o["blocks_done"] as? Int, total)
        // Plain output (not a terminal): every block has a line where it reaches done.
        for b in 0..<total {
            XCTAssertTrue(
                watch.stdout.contains("job \(job) block \(b): done"), "block \(b) never reached done:\n\(watch.stdout)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.path), "no output at \(out.path)")

        let list = try kiln(["status", "--coordinator", endpoint, "--json"])
        XCTAssertEqual(list.status, 0, list.summary)
        XCTAssertEqual((try list.json()["jobs"] as? [[String: Any]])?.compactMap { $0["job_id"] as? String }, [job])
    }

    func testClearErrorWithoutACoordinator() throws {
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            throw XCTSkip("kiln binary not built at \(bin.path); run `swift build` first")
        }
        // A port nothing listens on (the coordinator convention's default + a random offset).
        let endpoint = "tcp://127.0.0.1:\(Int.random(in: 40000...49999))"
        let r = try kiln(["workers", "--coordinator", endpoint, "--timeout", "0.5"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(
            r.stderr.contains("no coordinator answers at \(endpoint) (is `kiln coordinator` running there?)"), r.stderr)
        let w = try kiln(["watch", "j1", "--coordinator", "ipc:///tmp/nothing"])
        XCTAssertEqual(w.status, 1)
        XCTAssertTrue(w.stderr.contains("--publish"), w.stderr)
    }

    func testLocalShStatusAndStopWithNothingRunning() throws {
        let dir = Paths.tempDir("kiln-cluster-empty")
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["KILN_RUN_DIR": dir.appendingPathComponent("run").path]
        let bash = URL(fileURLWithPath: "/bin/bash")
        let status = try ProcessRun.run(bash, [script.path, "status"], env: env)
        XCTAssertEqual(status.status, 3, status.summary)
        let stop = try ProcessRun.run(bash, [script.path, "stop"], env: env)
        XCTAssertEqual(stop.status, 0, stop.summary)
        let bad = try ProcessRun.run(bash, [script.path, "start", "zero"], env: env)
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("worker count"), bad.stderr)
        let usage = try ProcessRun.run(bash, [script.path], env: env)
        XCTAssertEqual(usage.status, 2)
    }
}
