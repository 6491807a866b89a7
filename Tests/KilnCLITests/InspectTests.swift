import Foundation
import TestSupport
import XCTest

final class InspectTests: XCTestCase {
    func testInspectSmolLM2JSON() throws {
        let r = try ProcessRun.kiln(["inspect", Paths.smollm2.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try r.json()
        XCTAssertEqual(obj["architecture"] as? String, "llama")
        let hp = obj["hyperparameters"] as! [String: Any]
        XCTAssertEqual(hp["hidden_size"] as? Int, 576)
        XCTAssertEqual(hp["layers"] as? Int, 30)
        XCTAssertEqual(hp["kv_heads"] as? Int, 3)
        let tensors = obj["tensors"] as! [[String: Any]]
        XCTAssertEqual(tensors.count, 272)
        let q = tensors.first { $0["name"] as? String == "blk.0.attn_q.weight" }!
        XCTAssertEqual(q["shape"] as? [Int], [576, 576])
        XCTAssertEqual(q["dtype"] as? String, "Q4_1")
        let tok = obj["tokenizer"] as! [String: Any]
        XCTAssertEqual(tok["pre"] as? String, "smollm")
        XCTAssertEqual(tok["tokens"] as? Int, 49152)
    }

    func testInspectMiniLMTable() throws {
        let r = try ProcessRun.kiln(["inspect", Paths.minilmDir.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("architecture  bert"), r.stdout)
        XCTAssertTrue(r.stdout.contains("encoder.layer.0.attention.self.query.weight"), r.stdout)
    }

    func testInspectTruncatedFileFailsClearly() throws {
        let dir = Paths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let damaged = dir.appendingPathComponent("cut.gguf")
        let handle = try FileHandle(forReadingFrom: Paths.smollm2)
        try handle.readData(ofLength: 100_000).write(to: damaged)
        let r = try ProcessRun.kiln(["inspect", damaged.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("cut.gguf"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty, r.stdout)
    }
}
