import Foundation
import Jobs
import ModelIO
import TestSupport
import XCTest

/// --imatrix-out then --imatrix on SmolLM2 (two blocks): Kiln's statistics handed over as
/// llama.cpp's imatrix give the same RTN bytes as the job's own statistics.
final class ImatrixJobTests: XCTestCase {
    func testExportedImatrixImportsToTheSameRTNBytes() throws {
        let model = try Assets.truncatedSmolLM2()
        let dir = Paths.tempDir("kiln-imatrix-job")
        let exported = dir.appendingPathComponent("kiln.imatrix.gguf")
        var own = Assets.spec(model: model, out: dir.appendingPathComponent("own.gguf"), method: .rtn)
        own.scaleSearch = true
        own.imatrixOut = exported.path
        var t0 = Date()
        _ = try Job.run(own)
        let exportSeconds = Date().timeIntervalSince(t0)

        let m = try Imatrix.read(exported)
        XCTAssertEqual(m.entries.count, 2 * 7)
        XCTAssertEqual(m.datasets, ["fortunes_calib.txt"])
        XCTAssertEqual(m.chunkCount, 4)
        XCTAssertEqual(m.chunkSize, 64)
        XCTAssertEqual(m.entries["blk.0.attn_q.weight"]!.count, 4 * 64)
        // One input, one entry: q, k and v (and gate, up) carry the same sums.
        XCTAssertEqual(m.entries["blk.1.attn_q.weight"], m.entries["blk.1.attn_v.weight"])
        XCTAssertEqual(m.entries["blk.1.ffn_down.weight"]!.sums.count, 1536)

        var imported = Assets.spec(model: model, out: dir.appendingPathComponent("imported.gguf"), method: .rtn)
        imported.imatrix = exported.path
        XCTAssertFalse(imported.needsStatistics)
        XCTAssertTrue(imported.resolvedScaleSearch)
        t0 = Date()
        _ = try Job.run(imported)
        let importSeconds = Date().timeIntervalSince(t0)
        print("imatrix export run \(exportSeconds) s, import run \(importSeconds) s")
        XCTAssertEqual(
            try fileBytes(URL(fileURLWithPath: own.output)), try fileBytes(URL(fileURLWithPath: imported.output)))

        // Without the search the importance is unused: the bytes differ (the file did something).
        var plain = Assets.spec(model: model, out: dir.appendingPathComponent("plain.gguf"), method: .rtn)
        plain.scaleSearch = false
        _ = try Job.run(plain)
        XCTAssertNotEqual(
            try fileBytes(URL(fileURLWithPath: plain.output)), try fileBytes(URL(fileURLWithPath: own.output)))

        // Row slices and the parallel mode export the same file (row slice 0 carries the sums).
        var sliced = own
        sliced.output = dir.appendingPathComponent("sliced.gguf").path
        sliced.imatrixOut = dir.appendingPathComponent("sliced.imatrix.gguf").path
        sliced.rowParts = 3
        sliced.mode = .parallel
        _ = try Job.run(sliced, concurrency: 2)
        XCTAssertEqual(
            try Imatrix.read(URL(fileURLWithPath: sliced.imatrixOut!)).entries["blk.0.attn_q.weight"],
            m.entries["blk.0.attn_q.weight"])

        // The Python gguf package (llama.cpp's) reads Kiln's file.
        let j = try PythonCheck.run(
            "Ops/check_gguf.py",
            [exported.path, "--only", "blk.0.attn_q.weight.in_sum2", "--only", "blk.0.attn_q.weight.counts"],
            modules: ["gguf", "numpy"])
        let meta = j["metadata"] as! [String: Any]
        XCTAssertEqual((meta["general.type"] as! [String: Any])["value"] as? String, "imatrix")
        XCTAssertEqual((meta["imatrix.chunk_size"] as! [String: Any])["type"] as? String, "UINT32")
        let tensors = j["tensors"] as! [[String: Any]]
        XCTAssertEqual(tensors.count, 2)
        for t in tensors {
            let bits = (t["f32_bits"] as! [NSNumber]).map { $0.uint32Value }
            let e = m.entries["blk.0.attn_q.weight"]!
            let want = (t["name"] as! String).hasSuffix(".in_sum2") ? e.sums : [e.count]
            XCTAssertEqual(bits, want.map(\.bitPattern))
        }
    }

    func testImatrixValidation() throws {
        let model = try Assets.truncatedSmolLM2()
        let dir = Paths.tempDir("kiln-imatrix-validate")
        let columns = [
            "attn_q": 576, "attn_k": 576, "attn_v": 576, "attn_output": 576, "ffn_gate": 576, "ffn_up": 576,
            "ffn_down": 1536,
        ]
        var entries: [String: Imatrix.Entry] = [:]
        for b in 0..<2 {
            for (l, n) in columns {
                entries["blk.\(b).\(l).weight"] = .init(sums: [Float](repeating: 2, count: n), count: 8)
            }
        }
        func file(_ name: String, _ edit: (inout [String: Imatrix.Entry]) -> Void) throws -> String {
            var e = entries
            edit(&e)
            let u = dir.appendingPathComponent(name)
            try Imatrix(entries: e, datasets: ["x"], chunkCount: 1, chunkSize: 8).writeGGUF(to: u)
            return u.path
        }
        func refused(_ s: JobSpec, _ needle: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try s.validate(), file: file, line: line) {
                XCTAssertTrue("\($0)".contains(needle), "\($0)", file: file, line: line)
            }
        }
        var s = Assets.spec(model: model, out: dir.appendingPathComponent("o.gguf"), method: .rtn)
        s.imatrix = try file("good.gguf") { _ in }
        XCTAssertNoThrow(try s.validate())
        s.imatrix = try file("missing.gguf") { $0["blk.1.ffn_down.weight"] = nil }
        refused(s, "no entry for blk.1.ffn_down.weight")
        s.imatrix = try file("short.gguf") { $0["blk.0.attn_k.weight"]!.sums.removeLast() }
        refused(s, "blk.0.attn_k.weight has 575 values")
        let corrupt = dir.appendingPathComponent("corrupt.gguf")
        try Data(try Data(contentsOf: URL(fileURLWithPath: try file("c.gguf") { _ in })).prefix(200)).write(to: corrupt)
        s.imatrix = corrupt.path
        refused(s, corrupt.lastPathComponent)
        s.imatrix = try file("good2.gguf") { _ in }
        var gptq = s
        gptq.method = .gptq
        refused(gptq, "--imatrix applies to --method rtn")
        var noSearch = s
        noSearch.scaleSearch = false
        refused(noSearch, "drop --no-scale-search")
        // Export: only from a job that gathers statistics, never over a foreign file.
        var out = Assets.spec(model: model, out: dir.appendingPathComponent("o.gguf"), method: .rtn)
        out.imatrixOut = dir.appendingPathComponent("new.imatrix.gguf").path
        refused(out, "gathers none")
        out.method = .gptq
        XCTAssertNoThrow(try out.validate())
        let foreign = dir.appendingPathComponent("notes.txt")
        try Data("mine".utf8).write(to: foreign)
        out.imatrixOut = foreign.path
        refused(out, "already exists")
        out.overwrite = true
        refused(out, "not an imatrix file")
        out.imatrixOut = s.imatrix
        XCTAssertNoThrow(try out.validate())
        out.imatrixOut = s.calibration
        refused(out, "--calib")
    }
}
