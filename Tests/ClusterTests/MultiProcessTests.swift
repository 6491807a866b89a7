import Coordinator
import Foundation
import Jobs
import KilnProtocol
import TestSupport
import XCTest

/// The built `kiln` binary as separate processes on loopback.
final class MultiProcessTests: XCTestCase {
    func testCoordinatorAndTwoWorkerProcessesSurviveASIGKILL() throws {
        guard FileManager.default.isExecutableFile(atPath: Paths.kilnBinary.path) else {
            throw XCTSkip("kiln binary not built at \(Paths.kilnBinary.path)")
        }
        let model = try ClusterAssets.smolLM2(blocks: 4)
        let dir = Paths.tempDir("kiln-cluster-mp")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("mp.gguf"), method: .gptq, mode: .sequential,
            samples: 8, shardSize: 2)
        let endpoint = "tcp://127.0.0.1:\(LoopbackPorts.free())"
        let coordinator = try Background(
            kiln: [
                "coordinator", "--listen", endpoint, "--publish", "tcp://127.0.0.1:\(LoopbackPorts.free())",
                "--data-dir", dir.appendingPathComponent("data").path,
            ] + ClusterAssets.allowPathArgs + ["--heartbeat-ms", "500", "--liveness", "6"],
            log: dir.appendingPathComponent("coordinator.log"))
        defer { coordinator.stop() }
        // Workers start once the coordinator has made its token (they read it at start).
        _ = try TestTokens.read(dataDir: dir.appendingPathComponent("data"), endpoint: endpoint)
        let token = dir.appendingPathComponent("data/token").path
        let w1 = try Background(
            kiln: ["worker", "--coordinator", endpoint, "--id", "w1", "--threads", "1", "--token-file", token],
            log: dir.appendingPathComponent("w1.log"))
        defer { w1.stop() }
        let w2 = try Background(
            kiln: ["worker", "--coordinator", endpoint, "--id", "w2", "--threads", "1", "--token-file", token],
            log: dir.appendingPathComponent("w2.log"))
        defer { w2.stop() }

        let client = try TestClient(endpoint)
        let job = try client.submit(spec)
        try waitUntil("the job to be under way") { try client.status(job).tasksDone >= 12 }
        w2.signal(SIGKILL)
        _ = ProcessRun.waitForExit(w2.process)
        let status = try client.wait(job)
        XCTAssertEqual(status.state, .succeeded, status.error.message + "\n" + coordinator.text)
        XCTAssertTrue(coordinator.text.contains("worker dropped"), coordinator.text)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: spec.output)), try ClusterAssets.localReference(spec),
            "output after losing a worker differs from the local executor's")
    }
}

/// `kiln run --workers N` (the embedded cluster over inproc://) writes the same bytes
/// for N = 1 and 2, and the same as the local executor.
final class EmbeddedRunTests: XCTestCase {
    func runKiln(_ args: [String], stdout: URL? = nil) throws -> Int32 {
        let p = Process()
        p.executableURL = Paths.kilnBinary
        p.arguments = args
        if let stdout {
            _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: stdout)
        } else {
            p.standardOutput = FileHandle.nullDevice
        }
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    func testRunWithOneAndTwoWorkersIsByteIdentical() throws {
        guard FileManager.default.isExecutableFile(atPath: Paths.kilnBinary.path) else {
            throw XCTSkip("kiln binary not built at \(Paths.kilnBinary.path)")
        }
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-embedded")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("ref.gguf"), method: .gptq, mode: .sequential)
        let reference = try ClusterAssets.localReference(spec)
        var outputs: [Data] = []
        for n in [1, 2] {
            let out = dir.appendingPathComponent("w\(n).gguf")
            let rc = try runKiln([
                "run", "--model", model.path, "--calib", ClusterAssets.calib.path, "--samples", "4", "--seqlen", "64",
                "--shard-size", "2", "--method", "gptq", "--mode", "sequential", "--out", out.path,
                "--workers", "\(n)", "--threads", "1",
            ])
            XCTAssertEqual(rc, 0, "kiln run --workers \(n) failed")
            outputs.append(try Data(contentsOf: out))
        }
        XCTAssertEqual(outputs[0], outputs[1], "--workers 1 and --workers 2 differ")
        XCTAssertEqual(outputs[0], reference, "--workers 1 differs from the local executor")

        // --eval with --workers: before and after, as the local executor reports them.
        var local = spec
        local.evalFile = ClusterAssets.eval.path
        local.evalWindows = 2
        local.evalContext = 512
        local.output = dir.appendingPathComponent("local-eval.gguf").path
        let expected = try XCTUnwrap(try Job.run(local, concurrency: 1).perplexity)
        let json = dir.appendingPathComponent("w2-eval.json")
        let rc = try runKiln(
            [
                "run", "--model", model.path, "--calib", ClusterAssets.calib.path, "--samples", "4", "--seqlen", "64",
                "--shard-size", "2", "--method", "gptq", "--mode", "sequential",
                "--out", dir.appendingPathComponent("w2-eval.gguf").path, "--eval", ClusterAssets.eval.path,
                "--eval-windows", "2", "--workers", "2", "--threads", "1", "--json",
            ], stdout: json)
        XCTAssertEqual(rc, 0, "kiln run --workers 2 --eval failed")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as! [String: Any]
        let ppl = try XCTUnwrap(report["perplexity"] as? [String: Any], "no perplexity in the --workers report")
        let before = try XCTUnwrap(ppl["before"] as? Double)
        let after = try XCTUnwrap(ppl["after"] as? Double)
        XCTAssertEqual(before, try XCTUnwrap(expected.before), accuracy: 1e-9 * before)
        XCTAssertEqual(after, expected.after, accuracy: 1e-9 * after, "same bytes must give the same perplexity")
    }
}
