import Foundation
import Jobs
import ModelIO
import TestSupport
import XCTest

/// Every number a user, a client or a file gives is bounded before anything is sized
/// by it (regressions of an 8 TB allocation, an overflow trap in the shard count, a
/// crash in the sampler and a 893 GB block array).
final class BoundsTests: XCTestCase {
    func expectRefused(
        _ spec: JobSpec, limits: JobLimits = JobLimits(), _ fragments: [String],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try spec.validate(limits: limits), file: file, line: line) { e in
            for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' lacks '\(f)'", file: file, line: line) }
        }
    }

    func testHugeCountsAreRefusedByName() throws {
        let dir = Paths.tempDir("kiln-bounds")
        let base = Assets.spec(model: try Assets.truncatedSmolLM2(), out: dir.appendingPathComponent("o.gguf"))
        var s = base
        s.samples = 1_000_000_000_000
        expectRefused(s, ["--samples 1000000000000", "out of range"])
        s = base
        s.samples = .max
        expectRefused(s, ["--samples \(Int.max)"])
        s = base
        s.shardSize = .max
        expectRefused(s, ["--shard-size \(Int.max)"])
        s = base
        s.seqlen = .max
        expectRefused(s, ["--seqlen"])
        s = base
        s.format = .gptqSafetensors
        s.groupSize = 1 << 62
        s.output = dir.appendingPathComponent("g").path
        expectRefused(s, ["--group \(1 << 62)"])
        s.groupSize = 2000
        expectRefused(s, ["--group 2000", "1536 columns"])
        s = base
        s.blockSize = 1 << 40
        expectRefused(s, ["--block-size"])
        s = base
        s.percentDamp = 1e300
        expectRefused(s, ["--damp"])
        s = base
        s.evalFile = Assets.eval.path
        s.evalWindows = .max
        expectRefused(s, ["--eval-windows"])
        s = base
        s.evalFile = Assets.eval.path
        s.evalContext = 100_000
        expectRefused(s, ["evaluation context 100000", "context length 8192"])
        // Arithmetic on unchecked values never traps.
        s = base
        s.samples = .max
        s.shardSize = .max
        XCTAssertEqual(s.shardCount, 1)
        s.shardSize = 1
        XCTAssertEqual(s.shardCount, .max)
    }

    func testMemoryEstimateRefusesWithTheLargestPart() throws {
        let dir = Paths.tempDir("kiln-bounds")
        var s = Assets.spec(model: try Assets.truncatedSmolLM2(), out: dir.appendingPathComponent("o.gguf"))
        s.samples = 1 << 24
        s.seqlen = 4096
        expectRefused(s, ["estimated", "TiB", "calibration activations", "--spill"])
        s.samples = 64
        s.seqlen = 512
        XCTAssertNoThrow(try s.validate())
        expectRefused(s, limits: JobLimits(maxJobMemory: 1 << 20), ["1.0 MiB", "--max-job-memory"])
        let c = try openModel(URL(fileURLWithPath: s.model)).config
        let inMemory = MemoryEstimate(spec: s, config: c)
        let spilled = MemoryEstimate(spec: s, config: c, activationsInMemory: false)
        // 64 windows x 512 tokens x 576 wide x 4 bytes, input and output.
        XCTAssertEqual(inMemory.activations, 64 * 512 * 576 * 4 * 2)
        XCTAssertEqual(spilled.activations, 2 * 512 * 576 * 4 * 2, "one shard of 2 windows")
        XCTAssertEqual(MemoryEstimate.parse("16G"), 16 << 30)
        XCTAssertEqual(MemoryEstimate.parse("512m"), 512 << 20)
        XCTAssertNil(MemoryEstimate.parse("-1G"))
        XCTAssertNil(MemoryEstimate.parse("lots"))
    }

    func testRelativeAndUnallowedPathsForACoordinator() throws {
        let dir = Paths.tempDir("kiln-bounds")
        let model = try Assets.truncatedSmolLM2()
        var limits = JobLimits()
        limits.requireAbsolutePaths = true
        var s = Assets.spec(model: model, out: dir.appendingPathComponent("o.gguf"))
        s.output = "relative/o.gguf"
        expectRefused(s, limits: limits, ["--out relative/o.gguf", "relative path"])
        s.output = dir.appendingPathComponent("o.gguf").path
        limits.allowedRoots = [
            PathResolution.resolve(dir.path), PathResolution.resolve(model.deletingLastPathComponent().path),
        ]
        expectRefused(s, limits: limits, ["--calib", "outside the directories"])
        s.calibration = "/etc/shadow"
        expectRefused(s, limits: limits, ["--calib /etc/shadow", "outside"])
        // Through a symlink inside an allowed root: still outside.
        let link = dir.appendingPathComponent("shadow.txt")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: "/etc/hostname")
        s.calibration = link.path
        expectRefused(s, limits: limits, ["--calib", "outside"])
    }

    /// Header fields the writers copy are validated like tensor shapes.
    func testDamagedHeaderFieldsAreRefused() throws {
        let dir = Paths.tempDir("kiln-bounds")
        let src = try Assets.truncatedSmolLM2()
        let cases: [(String, [String: GGUFValue], [String])] = [
            ("ctx0", ["llama.context_length": .uint32(0)], ["context length 0"]),
            ("bos", ["tokenizer.ggml.bos_token_id": .uint32(10_000_000)], ["tokenizer.ggml.bos_token_id", "10000000"]),
            ("eos", ["tokenizer.ggml.eos_token_id": .int32(-1)], ["tokenizer.ggml.eos_token_id"]),
            ("blocks", ["llama.block_count": .uint32(UInt32.max)], ["block count 4294967295"]),
        ]
        for (name, overrides, fragments) in cases {
            let m = dir.appendingPathComponent("\(name).gguf")
            try GGUFVariants.write(from: src, to: m, overrides: overrides)
            let s = Assets.spec(model: m, out: dir.appendingPathComponent("\(name)-out.gguf"))
            expectRefused(s, [name == "blocks" || name == "ctx0" ? "\(name).gguf" : "tokenizer"] + fragments)
            XCTAssertFalse(FileManager.default.fileExists(atPath: s.output))
        }
    }

    /// A spec from another client decodes with defaults; validation then names what is wrong.
    func testPartialSpecDecodesWithDefaults() throws {
        let json = #"{"model":"/m.gguf","calibration":"/c.txt","output":"/o.gguf","samples":3}"#
        let s = try JSONDecoder().decode(JobSpec.self, from: Data(json.utf8))
        XCTAssertEqual(s.samples, 3)
        XCTAssertEqual(s.seqlen, 512)
        XCTAssertFalse(s.overwrite)
        // No error_report key (an older client): the method's default.
        XCTAssertNil(s.errorReport)
        XCTAssertTrue(s.resolvedErrorReport)
        var rtn = s
        rtn.method = .rtn
        XCTAssertFalse(rtn.resolvedErrorReport)
        XCTAssertFalse(rtn.needsStatistics)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(rtn), as: UTF8.self).contains("errorReport"))
        rtn.errorReport = true
        XCTAssertEqual(try JSONDecoder().decode(JobSpec.self, from: JSONEncoder().encode(rtn)), rtn)
        XCTAssertTrue(rtn.needsStatistics)
        XCTAssertThrowsError(try JSONDecoder().decode(JobSpec.self, from: Data(#"{"model":"/m.gguf"}"#.utf8)))
    }
}
