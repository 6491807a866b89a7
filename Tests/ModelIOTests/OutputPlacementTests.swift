import Foundation
import ModelIO
import TestSupport
import XCTest

/// Writers never destroy what exists at or beside their destination (issue: an output
/// directory was moved aside and deleted recursively, user files and inputs with it).
final class OutputPlacementTests: XCTestCase {
    var dir: URL!

    override func setUp() { dir = Paths.tempDir("kiln-placement") }

    func writeGGUF(_ url: URL, value: UInt32, replace: Bool = false) throws {
        let w = try GGUFWriter(url: url, replace: replace)
        try w.addMetadata("test.value", .uint32(value))
        try w.declareTensor("a.weight", type: .f32, shape: [4])
        try w.writeTensor("a.weight", floats: [1, 2, 3, 4])
        try w.finish()
    }

    func writeGPTQ(_ dir: URL, replace: Bool = false) throws {
        let w = try GPTQSafetensorsWriter(directory: dir, config: GPTQConfig(bits: 4, groupSize: 32), replace: replace)
        try w.declareTensor("n.weight", dtype: .f32, shape: [2])
        try w.writeTensor("n.weight", floats: [1, 2])
        try w.finish()
    }

    func testFileIsNotReplacedWithoutReplace() throws {
        let out = dir.appendingPathComponent("m.gguf")
        try Data("user data".utf8).write(to: out)
        XCTAssertThrowsError(try writeGGUF(out, value: 1)) {
            XCTAssertTrue("\($0)".contains(out.path) && "\($0)".contains("already exists"), "\($0)")
        }
        XCTAssertEqual(try Data(contentsOf: out), Data("user data".utf8))
        XCTAssertEqual(fileNames(in: dir), ["m.gguf"])
        try writeGGUF(out, value: 2, replace: true)
        XCTAssertEqual(try GGUFFile(out).metadata["test.value"], .uint32(2))
    }

    func testExistingPartialNameIsNotTouched() throws {
        // The old writers truncated and then removed "<out>.partial", whoever owned it.
        let out = dir.appendingPathComponent("m.gguf")
        let theirs = dir.appendingPathComponent("m.gguf.partial")
        try Data("someone's".utf8).write(to: theirs)
        try writeGGUF(out, value: 1)
        XCTAssertEqual(try Data(contentsOf: theirs), Data("someone's".utf8))
        let gptq = dir.appendingPathComponent("q")
        let theirDir = dir.appendingPathComponent("q.partial")
        try FileManager.default.createDirectory(at: theirDir, withIntermediateDirectories: false)
        try Data("x".utf8).write(to: theirDir.appendingPathComponent("keep"))
        try writeGPTQ(gptq)
        XCTAssertEqual(fileNames(in: theirDir), ["keep"])
        XCTAssertEqual(fileNames(in: dir), ["m.gguf", "m.gguf.partial", "q", "q.partial"])
    }

    /// A writer killed mid-write (the chaos campaign kills a coordinator while it writes)
    /// leaves its partial; the next writer of that output removes it, but never a partial
    /// whose writer is alive (it holds the file locked) nor a name Kiln does not make.
    func testPartialsOfDeadWritersAreRemovedLiveOnesKept() throws {
        let out = dir.appendingPathComponent("m.gguf")
        let dead = dir.appendingPathComponent(".m.gguf.kiln-3k2j9.partial")
        let live = dir.appendingPathComponent(".m.gguf.kiln-9zz1.partial")
        let foreign = dir.appendingPathComponent(".m.gguf.kiln-NOT_OURS.partial")
        for u in [dead, live, foreign] { try Data("half a model".utf8).write(to: u) }
        let holder = open(live.path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(holder, 0)
        defer { close(holder) }
        XCTAssertEqual(flock(holder, LOCK_EX), 0, "the live writer's lock")
        try writeGGUF(out, value: 1)
        XCTAssertEqual(
            fileNames(in: dir), [".m.gguf.kiln-9zz1.partial", ".m.gguf.kiln-NOT_OURS.partial", "m.gguf"].sorted())
        XCTAssertEqual(try GGUFFile(out).metadata["test.value"], .uint32(1))
    }

    func testForeignDirectoryIsNeverReplaced() throws {
        let out = dir.appendingPathComponent("q")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
        try Data("mine".utf8).write(to: out.appendingPathComponent("notes.txt"))
        for replace in [false, true] {
            XCTAssertThrowsError(try writeGPTQ(out, replace: replace)) {
                XCTAssertTrue("\($0)".contains(out.path), "\($0)")
            }
            XCTAssertEqual(fileNames(in: out), ["notes.txt"])
            XCTAssertEqual(fileNames(in: dir), ["q"], "no temporary or set-aside directory left")
        }
    }

    func testReplaceRemovesOnlyManifestFiles() throws {
        let out = dir.appendingPathComponent("q")
        try writeGPTQ(out)
        let first = fileNames(in: out)
        XCTAssertTrue(first.contains(OutputManifest.fileName) && first.contains("model.safetensors"), "\(first)")
        XCTAssertEqual(try OutputManifest.foreignEntries(in: out), [])
        XCTAssertThrowsError(try writeGPTQ(out)) { XCTAssertTrue("\($0)".contains("not empty"), "\($0)") }
        try writeGPTQ(out, replace: true)
        XCTAssertEqual(fileNames(in: out), first)
        XCTAssertEqual(fileNames(in: dir), ["q"])
        // A user file added later blocks the next replacement and survives it.
        try Data("mine".utf8).write(to: out.appendingPathComponent("eval.log"))
        XCTAssertEqual(try OutputManifest.foreignEntries(in: out), ["eval.log"])
        XCTAssertThrowsError(try writeGPTQ(out, replace: true)) { XCTAssertTrue("\($0)".contains("eval.log"), "\($0)") }
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("eval.log")), Data("mine".utf8))
    }

    func testHostileManifestClaimsNothing() throws {
        let out = dir.appendingPathComponent("q")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
        let manifest = #"{"written_by":"kiln","files":["../outside","config.json"]}"#
        try Data(manifest.utf8).write(to: out.appendingPathComponent(OutputManifest.fileName))
        try Data("{}".utf8).write(to: out.appendingPathComponent("config.json"))
        XCTAssertNil(OutputManifest.files(in: out))
        XCTAssertEqual(try OutputManifest.foreignEntries(in: out), ["config.json", OutputManifest.fileName].sorted())
        // A listed name that is a directory is not Kiln's either.
        let fine = dir.appendingPathComponent("r")
        try writeGPTQ(fine)
        try FileManager.default.removeItem(at: fine.appendingPathComponent("config.json"))
        try FileManager.default.createDirectory(
            at: fine.appendingPathComponent("config.json"), withIntermediateDirectories: false)
        XCTAssertEqual(try OutputManifest.foreignEntries(in: fine), ["config.json"])
    }

    func testEmptyDirectoryIsFilled() throws {
        let out = dir.appendingPathComponent("q")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false)
        try writeGPTQ(out)
        XCTAssertTrue(fileNames(in: out).contains("model.safetensors"))
    }
}
