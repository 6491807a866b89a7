import Foundation
import Jobs
import KilnProtocol
import TestSupport
import XCTest

/// The demo job (whole SmolLM2, GPTQ, sequential) on a coordinator and 1 or 2 worker
/// processes, one BLAS thread each. Run with KILN_BENCH=1; prints wall time, peak RSS
/// of every process and the coordinator's traffic line.
final class BenchmarkTests: XCTestCase {
    func peakRSS(_ pid: Int32) -> Int {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }

    func testDemoJobOneAndTwoWorkers() throws {
        guard ProcessInfo.processInfo.environment["KILN_BENCH"] == "1" else { throw XCTSkip("set KILN_BENCH=1") }
        guard FileManager.default.fileExists(atPath: Paths.smollm2.path) else { throw XCTSkip("no SmolLM2") }
        var outputs: [Data] = []
        for n in [1, 2] {
            let dir = Paths.tempDir("kiln-bench")
            var spec = JobSpec(
                model: Paths.smollm2.path, calibration: ClusterAssets.calib.path,
                output: dir.appendingPathComponent("demo.gguf").path)
            spec.samples = 16
            spec.seqlen = 128
            spec.shardSize = 4
            spec.method = .gptq
            spec.mode = .sequential
            let endpoint = "tcp://127.0.0.1:\(LoopbackPorts.free())"
            let coord = try Background(
                kiln: [
                    "coordinator", "--listen", endpoint, "--publish", "tcp://127.0.0.1:\(LoopbackPorts.free())",
                    "--data-dir", dir.appendingPathComponent("data").path,
                ] + ClusterAssets.allowPathArgs,
                log: dir.appendingPathComponent("coordinator.log"))
            _ = try TestTokens.read(dataDir: dir.appendingPathComponent("data"), endpoint: endpoint)
            let token = dir.appendingPathComponent("data/token").path
            let workers = try (1...n).map { i in
                try Background(
                    kiln: [
                        "worker", "--coordinator", endpoint, "--id", "w\(i)", "--threads", "1",
                        "--token-file", token,
                    ],
                    log: dir.appendingPathComponent("w\(i).log"))
            }
            let client = try TestClient(endpoint)
            let t0 = Date()
            let job = try client.submit(spec)
            let status = try client.wait(job, timeout: 1800)
            let wall = Date().timeIntervalSince(t0)
            XCTAssertEqual(status.state, .succeeded, status.error.message)
            let rss = [peakRSS(coord.process.processIdentifier)] + workers.map { peakRSS($0.process.processIdentifier) }
            for w in workers { w.stop() }
            coord.stop()
            let line = coord.text.split(separator: "\n").first { $0.contains("job succeeded") } ?? ""
            print(
                "BENCH workers=\(n) wall=\(String(format: "%.1f", wall)) s rss(coordinator, workers)=\(rss.map { $0 >> 20 }) MiB\nBENCH \(line)"
            )
            outputs.append(try Data(contentsOf: URL(fileURLWithPath: spec.output)))
        }
        XCTAssertEqual(outputs[0], outputs[1], "1 and 2 workers wrote different files")
    }
}
