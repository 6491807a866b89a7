import Foundation
import TestSupport
import XCTest

final class RunTests: XCTestCase {
    func smollm2() throws -> URL {
        guard FileManager.default.fileExists(atPath: Paths.smollm2.path) else { throw XCTSkip("SmolLM2 asset missing") }
        return Paths.smollm2
    }

    func testBadBitsFailsBeforeWorkAndWritesNothing() throws {
        let dir = Paths.tempDir("kiln-run-cli")
        let out = dir.appendingPathComponent("o.gguf")
        let r = try ProcessRun.kiln([
            "run", "--model", try smollm2().path, "--calib", Paths.fixture("text/fortunes_calib.txt").path,
            "--bits", "9", "--format", "gptq-safetensors", "--out", out.path,
        ])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("kiln: error: "), r.stderr)
        XCTAssertTrue(r.stderr.contains("--bits 9"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    func testGGUFFormatRejectsOtherBitsAndEmptyCalibration() throws {
        let dir = Paths.tempDir("kiln-run-cli")
        let out = dir.appendingPathComponent("o.gguf")
        var r = try ProcessRun.kiln([
            "run", "--model", try smollm2().path, "--calib", Paths.fixture("text/fortunes_calib.txt").path,
            "--bits", "3", "--out", out.path,
        ])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("gguf-q4_0") && r.stderr.contains("--bits 3"), r.stderr)
        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        r = try ProcessRun.kiln(["run", "--model", try smollm2().path, "--calib", empty.path, "--out", out.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("empty"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["empty.txt"])
    }
}
