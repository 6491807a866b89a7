import Calibration
import Foundation
import Jobs
import ModelIO
import TestSupport
import XCTest

/// Same job -> same bytes; the shard partition and the executor's concurrency change
/// nothing (exact statistics, one BLAS thread per task).
final class DeterminismTests: XCTestCase {
    func testSameJobTwiceGivesIdenticalBytes() throws {
        let model = try Assets.truncatedSmolLM2()
        let dir = Paths.tempDir("kiln-det")
        var a = Assets.spec(model: model, out: dir.appendingPathComponent("a.gguf"))
        var b = a
        b.output = dir.appendingPathComponent("b.gguf").path
        _ = try Job.run(a)
        _ = try Job.run(b)
        XCTAssertTrue(try fileBytes(URL(fileURLWithPath: a.output)) == fileBytes(URL(fileURLWithPath: b.output)))
        // gptq-safetensors too (directory: compare each file), in parallel mode.
        a.format = .gptqSafetensors
        a.output = dir.appendingPathComponent("ga").path
        a.mode = .parallel
        b.format = .gptqSafetensors
        b.output = dir.appendingPathComponent("gb").path
        b.mode = .parallel
        _ = try Job.run(a)
        _ = try Job.run(b)
        let files = try FileManager.default.contentsOfDirectory(atPath: a.output).sorted()
        XCTAssertEqual(files, try FileManager.default.contentsOfDirectory(atPath: b.output).sorted())
        for f in files {
            XCTAssertTrue(
                try fileBytes(URL(fileURLWithPath: a.output).appendingPathComponent(f))
                    == fileBytes(URL(fileURLWithPath: b.output).appendingPathComponent(f)), f)
        }
    }

    func testShardPartitionDoesNotChangeStatisticsOrFile() throws {
        let model = try Assets.truncatedSmolLM2()
        let dir = Paths.tempDir("kiln-det")
        for mode in [JobMode.parallel, .sequential] {
            var merged: [[MergeResult]] = []
            var outputs: [Data] = []
            for shardSize in (mode == .parallel ? [1, 3] : [1, 4]) {
                var s = Assets.spec(
                    model: model, out: dir.appendingPathComponent("s\(shardSize)-\(mode).gguf"),
                    samples: 4, shardSize: shardSize, mode: mode)
                s.sampler = .random
                let ctx = try JobContext.open(s)
                // The second partition also runs two tasks at a time: neither may change a bit.
                let ex = LocalExecutor(context: ctx, concurrency: shardSize == 1 ? 1 : 2)
                ex.keepMerged = true
                let g = try ex.run()
                merged.append(g.merged)
                try GGUFOutput.write(spec: s, view: ctx.view, linears: g.linears, to: URL(fileURLWithPath: s.output))
                outputs.append(try fileBytes(URL(fileURLWithPath: s.output)))
            }
            XCTAssertEqual(merged[0].count, 2)
            for k in 1..<merged.count {
                XCTAssertTrue(merged[k] == merged[0], "merged statistics differ for partition \(k) (\(mode))")
                XCTAssertTrue(outputs[k] == outputs[0], "file differs for partition \(k) (\(mode))")
            }
            // Hessians as GPTQ reads them: bit-identical.
            let h0 = merged[0][0].statistics[0].finalHessian().data.map(\.bitPattern)
            XCTAssertEqual(merged[1][0].statistics[0].finalHessian().data.map(\.bitPattern), h0)
        }
    }
}
