import Foundation
import Jobs
import ModelIO
import TestSupport
import XCTest

/// A job never destroys what the user owns: an existing output is refused without
/// --overwrite, an output that is or holds an input is refused always, and --overwrite
/// replaces only a previous Kiln output (regressions of a run that deleted the model's
/// own directory, input GGUF and calibration text included, and exited 0).
final class OutputSafetyTests: XCTestCase {
    func snapshot(_ dir: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            let u = dir.appendingPathComponent(name)
            if OutputPlacement.existing(u.path) == .file { out[name] = try Data(contentsOf: u) }
        }
        return out
    }

    func expectRefused(_ spec: JobSpec, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Job.run(spec), file: file, line: line) { e in
            for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' lacks '\(f)'", file: file, line: line) }
        }
    }

    /// The reported case: --format gptq-safetensors --out <the model's own directory>.
    func testOutputIntoTheModelsDirectoryIsRefused() throws {
        let dir = Paths.tempDir("kiln-safety")
        let model = dir.appendingPathComponent("model.gguf")
        try FileManager.default.copyItem(at: try Assets.truncatedSmolLM2(), to: model)
        let calib = dir.appendingPathComponent("calib.txt")
        try FileManager.default.copyItem(at: Assets.calib, to: calib)
        try Data("notes".utf8).write(to: dir.appendingPathComponent("notes.txt"))
        let before = try snapshot(dir)
        var s = Assets.spec(model: model, out: dir, method: .rtn, format: .gptqSafetensors)
        s.calibration = calib.path
        for overwrite in [false, true] {
            s.overwrite = overwrite
            expectRefused(s, ["--out", "--model", "input"])
            s.output = dir.path + "/"
            expectRefused(s, ["--out", "input"])
            s.output = dir.path
        }
        // The calibration file as a GGUF output, even with --overwrite.
        var g = Assets.spec(model: model, out: calib, method: .rtn)
        g.calibration = calib.path
        g.overwrite = true
        expectRefused(g, ["--calib", "input"])
        XCTAssertEqual(try snapshot(dir), before)
        XCTAssertEqual(fileNames(dir).sorted(), ["calib.txt", "model.gguf", "notes.txt"])
    }

    func testNonEmptyDirectoryNeedsOverwriteAndKeepsForeignFiles() throws {
        let dir = Paths.tempDir("kiln-safety")
        let out = dir.appendingPathComponent("q")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
        try Data("mine".utf8).write(to: out.appendingPathComponent("README.md"))
        var s = Assets.spec(model: try Assets.truncatedSmolLM2(), out: out, method: .rtn, format: .gptqSafetensors)
        expectRefused(s, ["not empty", "--overwrite"])
        s.overwrite = true
        expectRefused(s, ["README.md", "did not write"])
        XCTAssertEqual(try snapshot(out), ["README.md": Data("mine".utf8)])
        XCTAssertEqual(fileNames(dir), ["q"])
    }

    func testOverwriteReplacesAPreviousKilnOutput() throws {
        let dir = Paths.tempDir("kiln-safety")
        let out = dir.appendingPathComponent("q")
        var s = Assets.spec(model: try Assets.truncatedSmolLM2(), out: out, method: .rtn, format: .gptqSafetensors)
        s.samples = 2
        s.groupSize = 64
        _ = try Job.run(s)
        let first = try snapshot(out)
        XCTAssertNotNil(first[OutputManifest.fileName])
        expectRefused(s, ["not empty", "--overwrite"])
        s.overwrite = true
        s.groupSize = 128
        _ = try Job.run(s)
        let second = try snapshot(out)
        XCTAssertEqual(Set(second.keys), Set(first.keys))
        XCTAssertNotEqual(second["model.safetensors"], first["model.safetensors"], "the new recipe's output")
        XCTAssertEqual(fileNames(dir).sorted(), ["q", "q.report.json"])
    }

    func testExistingGGUFAndReportNeedOverwrite() throws {
        let dir = Paths.tempDir("kiln-safety")
        let out = dir.appendingPathComponent("o.gguf")
        try Data("an older file".utf8).write(to: out)
        var s = Assets.spec(model: try Assets.truncatedSmolLM2(), out: out, method: .rtn)
        s.samples = 2
        expectRefused(s, ["already exists", "--overwrite"])
        XCTAssertEqual(try Data(contentsOf: out), Data("an older file".utf8))
        try FileManager.default.removeItem(at: out)
        try Data("{}".utf8).write(to: JobReport.url(forOutput: out.path))
        expectRefused(s, ["report", "already exists", "--overwrite"])
        s.overwrite = true
        _ = try Job.run(s)
        XCTAssertNoThrow(try GGUFFile(out))
        XCTAssertGreaterThan(try Data(contentsOf: JobReport.url(forOutput: out.path)).count, 100)
    }

    func testEmptyOutputIsRefusedBeforeWork() throws {
        var s = Assets.spec(model: try Assets.truncatedSmolLM2(), out: URL(fileURLWithPath: "/tmp/x.gguf"))
        s.output = ""
        let t0 = Date()
        expectRefused(s, ["--out is empty"])
        XCTAssertLessThan(Date().timeIntervalSince(t0), 5, "refused before any work")
    }

    func fileNames(_ dir: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    }
}
