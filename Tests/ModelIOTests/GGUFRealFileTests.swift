import Foundation
import ModelIO
import TestSupport
import XCTest

/// The real SmolLM2-135M Q4_1 GGUF: table, config and dequantized values.
/// Expected numbers come from the Python `gguf` package 0.19 (GGUFReader +
/// gguf.quants.dequantize), an implementation independent of Kiln's.
final class GGUFRealFileTests: XCTestCase {
    func skipIfMissing() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Paths.smollm2.path), "SmolLM2 asset missing")
    }

    func testHeaderAndTable() throws {
        try skipIfMissing()
        let f = try GGUFFile(Paths.smollm2)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.tensorTable.count, 272)
        XCTAssertEqual(f.alignment, 32)
        XCTAssertEqual(f.dataOffset, 1_785_664)
        XCTAssertEqual(f.metadata["general.architecture"], .string("llama"))
        XCTAssertEqual(f.metadata["tokenizer.ggml.tokens"]?.array?.count, 49152)
        XCTAssertEqual(f.metadata["tokenizer.ggml.merges"]?.array?.count, 48900)
        let counts = Dictionary(grouping: f.tensors, by: \.dtype).mapValues(\.count)
        XCTAssertEqual(counts, [.q4_1: 210, .f32: 61, .q8_0: 1])
        let embd = try XCTUnwrap(f.tensor("token_embd.weight"))
        XCTAssertEqual(embd.info.shape, [49152, 576])
        XCTAssertEqual(embd.ne, [576, 49152])
        XCTAssertEqual(embd.info.byteCount, 30_081_024)
        XCTAssertEqual(embd.range.lowerBound, f.dataOffset)
        XCTAssertEqual(f.tensor("blk.0.attn_k.weight")?.info.shape, [192, 576])
        XCTAssertEqual(f.tensor("blk.0.attn_norm.weight")?.info.shape, [576])
    }

    func testConfig() throws {
        try skipIfMissing()
        let m = try openModel(Paths.smollm2)
        XCTAssertEqual(m.format, "gguf")
        XCTAssertEqual(m.naming, .gguf)
        let c = m.config
        XCTAssertEqual(c.architecture, "llama")
        XCTAssertEqual(c.hiddenSize, 576)
        XCTAssertEqual(c.layerCount, 30)
        XCTAssertEqual(c.headCount, 9)
        XCTAssertEqual(c.kvHeadCount, 3)
        XCTAssertEqual(c.intermediateSize, 1536)
        XCTAssertEqual(c.vocabSize, 49152)
        XCTAssertEqual(c.contextLength, 8192)
        XCTAssertEqual(c.headDim, 64)
        XCTAssertTrue(c.tiedEmbeddings)
        XCTAssertFalse(c.attentionBias)
        XCTAssertEqual(c.ropeTheta, 100000)
        XCTAssertEqual(c.normEps, 1e-5, accuracy: 1e-9)
        guard case let .ggufMetadata(tok)? = m.tokenizer else { return XCTFail("no GGUF tokenizer") }
        XCTAssertEqual(tok["tokenizer.ggml.model"], .string("gpt2"))
        XCTAssertNil(tok["llama.block_count"])
    }

    /// Decodes the first Q4_1 block of blk.0.attn_q.weight by hand from the raw bytes.
    func testQ4_1AgainstHandDecode() throws {
        try skipIfMissing()
        let f = try GGUFFile(Paths.smollm2)
        let raw = try f.rawBytes("blk.0.attn_q.weight")
        XCTAssertEqual(raw.count, 207_360)
        let w = try f.load("blk.0.attn_q.weight")
        XCTAssertEqual(w.shape, [576, 576])
        let b = [UInt8](raw.prefix(20))
        let d = Float(Float16(bitPattern: UInt16(b[0]) | UInt16(b[1]) << 8))
        let m = Float(Float16(bitPattern: UInt16(b[2]) | UInt16(b[3]) << 8))
        for j in 0..<32 {
            let nibble = j < 16 ? b[4 + j] & 15 : b[4 + j - 16] >> 4
            XCTAssertEqual(w[0, j], Float(nibble) * d + m, "element \(j)")
        }
        // From gguf-py.
        XCTAssertEqual(Array(w.data[0..<4]), [-0.09631348, 0.15734863, -0.09631348, -0.73046875])
        XCTAssertEqual(w[5, 100], -0.296875)
        XCTAssertEqual(w.data.reduce(0.0) { $0 + Double($1) }, 59.22322082519531, accuracy: 1e-3)
    }

    /// Rows 0 and 1000 of the Q8_0 embedding (the whole tensor is slow in debug builds).
    func testQ8_0Embedding() throws {
        try skipIfMissing()
        let f = try GGUFFile(Paths.smollm2)
        XCTAssertEqual(f.tensor("token_embd.weight")?.type, .q8_0)
        let rowBytes = 576 / 32 * 34
        func row(_ r: Int) throws -> [Float] {
            try f.withRawBytes("token_embd.weight") { b in
                Dequantize.floats(
                    UnsafeRawBufferPointer(rebasing: b[(r * rowBytes)..<((r + 1) * rowBytes)]), type: .q8_0, count: 576)!
            }
        }
        // gguf-py printed to 8 digits.
        for (r, c, v) in [
            (0, 0, -0.10654449), (0, 1, 0.03297806), (0, 2, 0.0481987), (0, 3, -0.02283096),
            (1000, 0, -0.11193848), (1000, 1, -0.07395935), (1000, 2, 0.03797913),
        ] as [(Int, Int, Float)] {
            XCTAssertEqual(try row(r)[c], v, accuracy: 1e-7, "[\(r), \(c)]")
        }
        let norm = try f.load("blk.0.attn_norm.weight")
        XCTAssertEqual(norm.shape, [1, 576])
    }

    /// Speed check; in debug builds Swift loops are 10-50x slower, so only release runs it.
    func testWholeModelDequantizes() throws {
        #if DEBUG
        try XCTSkipIf(true, "timing test runs in release builds only")
        #endif
        try skipIfMissing()
        let m = try openModel(Paths.smollm2)
        let start = Date()
        var total = 0
        for t in m.tensors { total += try m.load(t.name).count }
        let e = try m.load("token_embd.weight")
        XCTAssertEqual(e.shape, [49152, 576])
        XCTAssertEqual(e.data.reduce(0.0) { $0 + Double($1) }, -15353.04449415207, accuracy: 0.05)  // gguf-py
        XCTAssertEqual(total, m.tensors.reduce(0) { $0 + $1.elementCount })
        print("dequantized \(total) values in \(Date().timeIntervalSince(start)) s")
    }
}
