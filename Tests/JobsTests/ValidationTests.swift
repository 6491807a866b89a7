import Foundation
import Jobs
import TestSupport
import XCTest

/// Every bad recipe fails in validate() (before any work) with a message that says
/// what to change, and nothing is written.
final class ValidationTests: XCTestCase {
    func expectError(_ spec: JobSpec, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Job.run(spec), file: file, line: line) { e in
            let m = "\(e)"
            for f in fragments { XCTAssertTrue(m.contains(f), "'\(m)' lacks '\(f)'", file: file, line: line) }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: spec.output), "output written", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: spec.output + ".report.json"), file: file, line: line)
        let dir = URL(fileURLWithPath: spec.output).deletingLastPathComponent()
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter {
            $0.hasSuffix(".partial")
        }
        XCTAssertEqual(leftovers, [], file: file, line: line)
    }

    func testBadRecipes() throws {
        let model = try Assets.smollm2()
        let dir = Paths.tempDir("kiln-validate")
        let out = dir.appendingPathComponent("o.gguf")
        let base = Assets.spec(model: model, out: out)

        var s = base
        s.format = .gptqSafetensors
        s.bits = 9
        expectError(s, ["--bits 9", "2 to 8"])
        // K formats fix their grids; AWQ does not fit them yet.
        s = base
        s.format = .ggufQ4_K_M
        s.groupSize = 64
        expectError(s, ["--format gguf-q4_k_m", "--group cannot be chosen"])
        s = base
        s.format = .ggufQ3_K
        s.method = .awqGPTQ
        expectError(s, ["--method awq+gptq", "--format gguf-q3_k"])
        s = base
        s.format = .gptqSafetensors
        s.groupSize = 0
        expectError(s, ["--group 0", "-1"])
        s = base
        s.groupSize = -5
        s.format = .gptqSafetensors
        expectError(s, ["--group -5"])
        s = base
        s.bits = 3
        expectError(s, ["gguf-q4_0", "--bits 3", "4-bit", "gptq-safetensors"])
        s = base
        s.groupSize = 64
        expectError(s, ["gguf-q4_0", "--group 64", "blocks of 32"])
        s = base
        s.format = .ggufQ4_1
        s.symmetric = true
        expectError(s, ["gguf-q4_1", "--sym", "asymmetric"])
        s = base
        s.format = .gptqSafetensors
        s.bits = 5
        expectError(s, ["2, 3, 4 or 8", "--bits 5"])
        s = base
        s.percentDamp = -1
        expectError(s, ["--damp"])
        s = base
        s.samples = 0
        expectError(s, ["--samples 0"])
        s = base
        s.seqlen = 100_000
        expectError(s, ["--seqlen 100000", "context length"])
        s = base
        s.errorReport = false
        expectError(s, ["--no-error-report", "--method rtn", "--method gptq"])
        for parts in [0, 65] {
            s = base
            s.rowParts = parts
            expectError(s, ["--row-parts \(parts)", "1 to 64"])
        }
    }

    func testBadFiles() throws {
        let model = try Assets.smollm2()
        let dir = Paths.tempDir("kiln-validate")
        let out = dir.appendingPathComponent("o.gguf")
        let base = Assets.spec(model: model, out: out)

        var s = base
        s.model = dir.appendingPathComponent("missing.gguf").path
        expectError(s, ["missing.gguf", "--model"])
        let junk = dir.appendingPathComponent("junk.gguf")
        try Data("GGUFjunk".utf8).write(to: junk)
        s = base
        s.model = junk.path
        expectError(s, ["cannot open model", "junk.gguf"])
        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        s = base
        s.calibration = empty.path
        expectError(s, ["calibration file", "empty.txt", "is empty", "--calib"])
        s = base
        s.calibration = dir.appendingPathComponent("nocalib.txt").path
        expectError(s, ["nocalib.txt", "--calib"])
        s = base
        s.evalFile = dir.appendingPathComponent("noeval.txt").path
        expectError(s, ["noeval.txt", "--eval"])
        s = base
        s.output = dir.appendingPathComponent("no/such/dir/o.gguf").path
        expectError(s, ["output directory", "does not exist", "--out"])
        s = base
        s.output = dir.path
        XCTAssertThrowsError(try s.validate()) { XCTAssertTrue("\($0)".contains("is a directory"), "\($0)") }
        // Too few tokens for the windows: fails at load, before any block runs, nothing written.
        let short = dir.appendingPathComponent("short.txt")
        try Data("just a few words".utf8).write(to: short)
        s = base
        s.calibration = short.path
        s.sampler = .consecutive
        expectError(s, ["short.txt", "tokens", "lower --samples or --seqlen"])
    }

    func testUnsupportedArchitecture() throws {
        let bert = Paths.minilmDir
        guard FileManager.default.fileExists(atPath: bert.path) else { throw XCTSkip("MiniLM asset missing") }
        let dir = Paths.tempDir("kiln-validate")
        var s = Assets.spec(model: bert, out: dir.appendingPathComponent("o"), format: .gptqSafetensors)
        s.output = dir.appendingPathComponent("o").path
        expectError(s, ["architecture 'bert'", "supported: llama"])
    }

    func testGGUFOutputNeedsGGUFInputAndDefaults() throws {
        var s = JobSpec(model: "m", calibration: "c", output: "o")
        XCTAssertEqual(s.recipe.bits, 4)
        XCTAssertEqual(s.recipe.groupSize, 32)
        XCTAssertTrue(s.recipe.symmetric)
        s.format = .ggufQ4_1
        XCTAssertFalse(s.recipe.symmetric)
        s.format = .ggufQ8_0
        XCTAssertEqual(s.recipe.bits, 8)
        s.format = .gptqSafetensors
        XCTAssertEqual(s.recipe.groupSize, 128)
        XCTAssertTrue(s.recipe.symmetric)
        s.actOrder = true
        s.format = .ggufQ4_0
        XCTAssertTrue(s.recipe.staticGroups, "GGUF blocks follow the stored column order")
        // Codable round trip.
        XCTAssertEqual(try JSONDecoder().decode(JobSpec.self, from: JSONEncoder().encode(s)), s)
    }
}
