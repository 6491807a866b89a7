import Foundation
import ModelIO
import TestSupport
import XCTest

/// Tests/Fixtures/gguf/quants.gguf: every supported type against the values
/// the Python gguf package dequantizes it to (see Ops/gen-gguf-fixtures.py).
final class GGUFFixtureTests: XCTestCase {
    let url = Paths.fixture("gguf/quants.gguf")

    func testEveryTypeMatchesReference() throws {
        let f = try GGUFFile(url)
        let types = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16", "F32"]
        for name in types {
            let t = try XCTUnwrap(f.tensor(name), name)
            XCTAssertEqual(t.info.dtype.rawValue, name)
            let got = try f.load(name)
            let want = try f.load(name + ".expected")
            XCTAssertEqual(got.shape, want.shape, name)
            XCTAssertEqual(got.shape, t.info.shape, name)
            // Same formula and rounding order as ggml: bit-identical.
            XCTAssertEqual(got.data, want.data, name)
        }
        XCTAssertEqual(f.tensor("Q4_K")?.info.byteCount, 3 * 2 * 144)
        XCTAssertEqual(f.tensor("Q6_K")?.info.byteCount, 3 * 2 * 210)
    }

    func testShapes() throws {
        let f = try GGUFFile(url)
        let v = try f.load("vector")
        XCTAssertEqual(f.tensor("vector")?.info.shape, [7])
        XCTAssertEqual(v.shape, [1, 7])
        XCTAssertEqual(v.data, (0..<7).map(Float.init))
        let c = try f.load("cube")
        XCTAssertEqual(f.tensor("cube")?.info.shape, [2, 3, 32])
        XCTAssertEqual(c.shape, [6, 32])
        XCTAssertEqual(c.data, (0..<192).map(Float.init))
        let raw = try f.rawBytes("vector")
        XCTAssertEqual(raw, floatBytes((0..<7).map(Float.init)))
    }

    func testMetadataValueTypes() throws {
        let m = try GGUFFile(url).metadata
        XCTAssertEqual(m["general.architecture"], .string("kilntest"))
        XCTAssertEqual(m["test.u8"], .uint8(200))
        XCTAssertEqual(m["test.i8"], .int8(-100))
        XCTAssertEqual(m["test.u16"], .uint16(60000))
        XCTAssertEqual(m["test.i16"], .int16(-30000))
        XCTAssertEqual(m["test.u32"], .uint32(4_000_000_000))
        XCTAssertEqual(m["test.i32"], .int32(-2_000_000_000))
        XCTAssertEqual(m["test.u64"], .uint64(1 << 63 + 5))
        XCTAssertNil(m["test.u64"]?.int)  // does not fit Int
        XCTAssertEqual(m["test.i64"], .int64(-(1 << 62)))
        XCTAssertEqual(m["test.f32"], .float32(1.5))
        XCTAssertEqual(m["test.f64"], .float64(-2.25))
        XCTAssertEqual(m["test.bool"], .bool(true))
        XCTAssertEqual(m["test.string"], .string("héllo"))
        XCTAssertEqual(m["test.array"], .array([.int32(1), .int32(2), .int32(3)]))
        XCTAssertEqual(m["test.strings"], .array([.string("a"), .string("bc"), .string("")]))
        XCTAssertEqual(m["test.nested"], .array([.array([.int32(1), .int32(2)]), .array([.int32(3)])]))
    }

    /// A GGUF without model hyper-parameters opens as a file but not as a model.
    func testNotAModel() throws {
        assertModelIOError(["quants.gguf", "kilntest.embedding_length"]) { try openModel(url) }
    }

    func testDequantizeRejectsBadSizes() {
        let bytes = [UInt8](repeating: 0, count: 20)
        bytes.withUnsafeBytes { b in
            XCTAssertNotNil(Dequantize.floats(b, type: .q4_1, count: 32))
            XCTAssertNil(Dequantize.floats(b, type: .q4_1, count: 64))
            XCTAssertNil(Dequantize.floats(b, type: .q4_1, count: 31))
            XCTAssertNil(Dequantize.floats(b, type: .q6_K, count: 256))
        }
    }
}
