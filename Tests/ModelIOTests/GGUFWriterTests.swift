import Foundation
import ModelIO
import Tensor
import TestSupport
import XCTest

// MARK: - Shared helpers (also used by GPTQWriterTests)

/// Deterministic pseudo-random numbers for test data.
struct TestRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(Int(next() >> 40)) / Float(1 << 23) - 1 }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in float() * scale } }
}

/// Float32 bit patterns from a JSON array of integers.
func jsonBits(_ any: Any?) -> [UInt32] {
    ((any as? [Any]) ?? []).map { UInt32(truncating: $0 as! NSNumber) }
}

func fileNames(in dir: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
}

/// The writers' temporary siblings of `name` in `dir` (".NAME.kiln-RANDOM.partial").
func partials(of name: String, in dir: URL) -> [String] {
    fileNames(in: dir).filter { $0.hasPrefix(".\(name).kiln-") && $0.hasSuffix(".partial") }
}

// MARK: - A small GGUF parser local to the tests (an independent reading of the layout)

struct TestGGUF {
    struct Tensor {
        var name: String
        var ne: [Int]
        var type: UInt32
        var offset: Int
    }
    var version: UInt32 = 0
    var metadata: [(String, GGUFValue)] = []
    var tensors: [Tensor] = []
    var dataStart = 0
    let bytes: Data

    init(_ url: URL, alignment: Int = 32) throws {
        let bytes = try Data(contentsOf: url)
        self.bytes = bytes
        var p = 0
        func u32() -> UInt32 {
            defer { p += 4 }
            return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: p, as: UInt32.self) }
        }
        func u64() -> UInt64 {
            defer { p += 8 }
            return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: p, as: UInt64.self) }
        }
        func str() -> String {
            let n = Int(u64())
            defer { p += n }
            return String(decoding: bytes[p..<(p + n)], as: UTF8.self)
        }
        func value(_ t: UInt32) -> GGUFValue {
            switch t {
            case 0:
                defer { p += 1 }
                return .uint8(bytes[p])
            case 1:
                defer { p += 1 }
                return .int8(Int8(bitPattern: bytes[p]))
            case 2:
                defer { p += 2 }
                return .uint16(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: p, as: UInt16.self) })
            case 3:
                defer { p += 2 }
                return .int16(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: p, as: Int16.self) })
            case 4: return .uint32(u32())
            case 5: return .int32(Int32(bitPattern: u32()))
            case 6: return .float32(Float(bitPattern: u32()))
            case 7:
                defer { p += 1 }
                return .bool(bytes[p] != 0)
            case 8: return .string(str())
            case 9:
                let et = u32()
                let n = Int(u64())
                return .array((0..<n).map { _ in value(et) })
            case 10: return .uint64(u64())
            case 11: return .int64(Int64(bitPattern: u64()))
            case 12: return .float64(Double(bitPattern: u64()))
            default: fatalError("bad type \(t)")
            }
        }
        precondition(u32() == 0x4655_4747)
        version = u32()
        let nt = Int(u64())
        let nkv = Int(u64())
        for _ in 0..<nkv {
            let k = str()
            let t = u32()
            metadata.append((k, value(t)))
        }
        for _ in 0..<nt {
            let name = str()
            let nd = Int(u32())
            let ne = (0..<nd).map { _ in Int(u64()) }
            let type = u32()
            let off = Int(u64())
            tensors.append(Tensor(name: name, ne: ne, type: type, offset: off))
        }
        dataStart = (p + alignment - 1) / alignment * alignment
    }

    func data(_ t: Tensor, byteCount: Int) -> Data {
        bytes.subdata(in: (dataStart + t.offset)..<(dataStart + t.offset + byteCount))
    }
}

// MARK: - Tests

final class GGUFWriterTests: XCTestCase {
    var dir: URL!
    override func setUp() { dir = Paths.tempDir("gguf-writer") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// Metadata of every GGUF value type.
    static let allMetadata: [(String, GGUFValue)] = [
        ("general.architecture", .string("llama")),
        ("general.name", .string("tiny \"test\" — ünïcode")),
        ("test.u8", .uint8(250)), ("test.i8", .int8(-120)),
        ("test.u16", .uint16(65000)), ("test.i16", .int16(-32000)),
        ("test.u32", .uint32(4_000_000_000)), ("test.i32", .int32(-2_000_000_000)),
        ("test.u64", .uint64(18_000_000_000_000_000_000)), ("test.i64", .int64(-9_000_000_000_000_000_000)),
        ("test.f32", .float32(0.1)), ("test.f64", .float64(1e-300)),
        ("test.bool.t", .bool(true)), ("test.bool.f", .bool(false)),
        ("tokenizer.ggml.tokens", .array([.string("<s>"), .string("a b"), .string(""), .string("Ġthe")])),
        ("test.arr.i32", .array([.int32(1), .int32(-2), .int32(3)])),
        ("test.arr.f32", .array([.float32(1.5), .float32(-0.25)])),
        ("test.arr.u8", .array([.uint8(0), .uint8(255)])),
        ("test.arr.bool", .array([.bool(true), .bool(false)])),
        ("test.arr.empty", .array([])),
    ]

    /// The tensors of the round-trip file: name, type, shape, encoded bytes, expected values.
    func sampleTensors() throws -> [(String, DType, [Int], Data, [Float], GGUFQuantizedTensor?)] {
        var rng = TestRNG(7)
        var r: [(String, DType, [Int], Data, [Float], GGUFQuantizedTensor?)] = []
        let f32 = rng.floats(3 * 64, scale: 3)
        r.append(("w.f32", .f32, [3, 64], GGUFBlocks.packF32(f32), f32, nil))
        let f16src = rng.floats(2 * 3 * 32)
        let f16 = f16src.map { HalfConversion.f16ToF32(HalfConversion.f32ToF16($0)) }
        r.append(("w.f16", .f16, [2, 3, 32], GGUFBlocks.packF16(f16src), f16, nil))
        let norm = rng.floats(5)
        r.append(("norm.f32", .f32, [5], GGUFBlocks.packF32(norm), norm, nil))
        // Quantizer-style inputs: codes plus fp16 scale/min bit patterns.
        let q8 = GGUFQuantizedTensor(
            type: .q8_0, shape: [2, 64],
            codes: .signed((0..<128).map { _ in Int8(truncatingIfNeeded: rng.int(256) - 128) }),
            scales: (0..<4).map { _ in HalfConversion.f32ToF16(abs(rng.float()) * 0.05) })
        r.append(("w.q8_0", .q8_0, q8.shape, try GGUFBlocks.pack(q8), q8.values, q8))
        let q40 = GGUFQuantizedTensor(
            type: .q4_0, shape: [3, 64], codes: .unsigned((0..<192).map { _ in UInt8(rng.int(16)) }),
            scales: (0..<6).map { _ in HalfConversion.f32ToF16(rng.float() * 0.1) })
        r.append(("w.q4_0", .q4_0, q40.shape, try GGUFBlocks.pack(q40), q40.values, q40))
        let q41 = GGUFQuantizedTensor(
            type: .q4_1, shape: [2, 32], codes: .unsigned((0..<64).map { _ in UInt8(rng.int(16)) }),
            scales: (0..<2).map { _ in HalfConversion.f32ToF16(abs(rng.float()) * 0.1) },
            mins: (0..<2).map { _ in HalfConversion.f32ToF16(-abs(rng.float())) })
        r.append(("w.q4_1", .q4_1, q41.shape, try GGUFBlocks.pack(q41), q41.values, q41))
        // RTN from Float32 (the convenience quantizer), with a zero block and ties.
        var src = rng.floats(4 * 64, scale: 2)
        for j in 0..<32 { src[j] = 0 }
        src[40] = 2.5
        src[41] = -2.5
        r.append(("rtn.src", .f32, [4, 64], GGUFBlocks.packF32(src), src, nil))
        for t in [DType.q8_0, .q4_0, .q4_1] {
            let q = try GGUFBlocks.quantizeRTN(src, shape: [4, 64], type: t)
            r.append(
                ("rtn.\(t.rawValue.lowercased())", t, [4, 64], try GGUFBlocks.pack(q), q.values, q))
        }
        return r
    }

    func writeSample(_ url: URL) throws -> [(String, DType, [Int], Data, [Float], GGUFQuantizedTensor?)] {
        let tensors = try sampleTensors()
        let w = try GGUFWriter(url: url)
        try w.addMetadata(Self.allMetadata)
        try w.addMetadata("test.arr.nested", .array([.array([.int32(1), .int32(2)]), .array([.int32(3)])]))
        for (n, t, s, _, _, _) in tensors { try w.declareTensor(n, type: t, shape: s) }
        for (n, _, _, d, _, q) in tensors {
            if let q, n.hasPrefix("w.") { try w.writeTensor(n, quantized: q) } else { try w.writeTensor(n, bytes: d) }
        }
        try w.finish()
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int, w.fileByteCount)
        return tensors
    }

    func testBlockLayoutsByHand() throws {
        // Q4_0: d, then byte j = code[j] | code[j + 16] << 4.
        let codes = (0..<32).map { UInt8($0 % 16) }
        let q = GGUFQuantizedTensor(type: .q4_0, shape: [32], codes: .unsigned(codes), scales: [0x3C00])
        let b = [UInt8](try GGUFBlocks.pack(q))
        XCTAssertEqual(b.count, 18)
        XCTAssertEqual(Array(b[0..<2]), [0x00, 0x3C])
        for j in 0..<16 { XCTAssertEqual(b[2 + j], UInt8(j % 16) | UInt8((j + 16) % 16) << 4) }
        XCTAssertEqual(Dequantize.floats(Data(b), type: .q4_0, count: 32), codes.map { Float(Int($0) - 8) })
        // Q4_1: d, m, nibbles; x = q * d + m.
        let q1 = GGUFQuantizedTensor(
            type: .q4_1, shape: [32], codes: .unsigned(codes), scales: [0x3800], mins: [0xBC00])
        let b1 = [UInt8](try GGUFBlocks.pack(q1))
        XCTAssertEqual(b1.count, 20)
        XCTAssertEqual(Array(b1[0..<4]), [0x00, 0x38, 0x00, 0xBC])
        XCTAssertEqual(Dequantize.floats(Data(b1), type: .q4_1, count: 32), codes.map { Float($0) * 0.5 - 1 })
        // Q8_0: d, 32 int8.
        let c8 = (0..<32).map { Int8($0 * 8 - 128) }
        let q8 = GGUFQuantizedTensor(type: .q8_0, shape: [32], codes: .signed(c8), scales: [0x4000])
        let b8 = [UInt8](try GGUFBlocks.pack(q8))
        XCTAssertEqual(b8.count, 34)
        XCTAssertEqual(Array(b8[2...]), c8.map { UInt8(bitPattern: $0) })
        XCTAssertEqual(Dequantize.floats(Data(b8), type: .q8_0, count: 32), c8.map { Float($0) * 2 })
        // Byte counts and errors naming the tensor.
        XCTAssertEqual(try GGUFBlocks.byteCount(type: .q4_1, shape: [4, 64]), 8 * 20)
        XCTAssertThrowsError(try GGUFBlocks.byteCount(type: .q4_0, shape: [4, 48], name: "blk.0.ffn_up.weight")) {
            XCTAssertTrue("\($0)".contains("blk.0.ffn_up.weight"))
        }
        let bad = GGUFQuantizedTensor(
            type: .q4_0, shape: [32], codes: .unsigned([UInt8](repeating: 16, count: 32)), scales: [0])
        XCTAssertThrowsError(try GGUFBlocks.pack(bad, name: "x.weight")) { XCTAssertTrue("\($0)".contains("x.weight")) }
    }

    func testRTNReferenceSemantics() throws {
        // Q4_0: d = max / -8 where max is the signed value of largest magnitude.
        var x = [Float](repeating: 0, count: 32)
        x[0] = -4
        x[1] = 1
        x[2] = 4
        x[3] = 0.25
        x[4] = -0.25
        let q = try GGUFBlocks.quantizeRTN(x, shape: [32], type: .q4_0)
        XCTAssertEqual(HalfConversion.f16ToF32(q.scales[0]), 0.5)  // -4 / -8
        guard case let .unsigned(c) = q.codes else { return XCTFail() }
        // x * (1/d) + 8.5 truncated, capped at 15: -4 -> 0, 1 -> 10, 4 -> 16 -> 15, .25 -> 9, -.25 -> 8.
        XCTAssertEqual(Array(c[0..<5]), [0, 10, 15, 9, 8])
        // Q8_0: roundf (half away from zero).
        var y = [Float](repeating: 0, count: 32)
        y[0] = 127
        y[1] = 0.5
        y[2] = -0.5
        y[3] = 1.5
        y[4] = -2.5
        let q8 = try GGUFBlocks.quantizeRTN(y, shape: [32], type: .q8_0)
        guard case let .signed(c8) = q8.codes else { return XCTFail() }
        XCTAssertEqual(Array(c8[0..<5]), [127, 1, -1, 2, -3])
        // All-zero block: d = 0, codes 8 (Q4_0) / 0 (Q8_0) / 0 (Q4_1).
        let z = [Float](repeating: 0, count: 32)
        XCTAssertEqual(
            try GGUFBlocks.quantizeRTN(z, shape: [32], type: .q4_0).codes, .unsigned([UInt8](repeating: 8, count: 32)))
        XCTAssertEqual(
            try GGUFBlocks.quantizeRTN(z, shape: [32], type: .q4_1).codes, .unsigned([UInt8](repeating: 0, count: 32)))
        // encode == pack(quantizeRTN).
        let r = TestRNG(3).floatsCopy(64)
        XCTAssertEqual(
            try GGUFBlocks.encode(r, shape: [2, 32], type: .q4_1),
            try GGUFBlocks.pack(GGUFBlocks.quantizeRTN(r, shape: [2, 32], type: .q4_1)))
    }

    func testHeaderLayoutAndMetadataRoundTrip() throws {
        let url = dir.appendingPathComponent("m.gguf")
        let tensors = try writeSample(url)
        XCTAssertEqual(fileNames(in: dir), ["m.gguf"])
        let g = try TestGGUF(url)
        XCTAssertEqual(g.version, 3)
        // Every metadata value comes back, in order, then general.alignment.
        let expected =
            Self.allMetadata + [
                ("test.arr.nested", GGUFValue.array([.array([.int32(1), .int32(2)]), .array([.int32(3)])])),
                ("general.alignment", .uint32(32)),
            ]
        XCTAssertEqual(g.metadata.map(\.0), expected.map(\.0))
        for ((k, v), (_, got)) in zip(expected, g.metadata) { XCTAssertEqual(got, v, k) }
        // Tensor table: ne reversed, ggml type ids, aligned offsets, data as encoded.
        XCTAssertEqual(g.tensors.map(\.name), tensors.map(\.0))
        XCTAssertEqual(g.dataStart % 32, 0)
        for ((n, t, s, d, vals, _), info) in zip(tensors, g.tensors) {
            XCTAssertEqual(info.ne, s.reversed(), n)
            XCTAssertEqual(info.type, GGUFBlocks.ggmlTypeID(t), n)
            XCTAssertEqual(info.offset % 32, 0, n)
            let stored = g.data(info, byteCount: d.count)
            XCTAssertEqual(stored, d, n)
            let back = try XCTUnwrap(Dequantize.floats(stored, type: t, count: vals.count), n)
            XCTAssertEqual(back.map(\.bitPattern), vals.map(\.bitPattern), n)
        }
        // Padding after the last tensor up to the alignment.
        XCTAssertEqual(g.bytes.count % 32, 0)
    }

    /// Round trip through ModelIO's own GGUF reader.
    func testRoundTripThroughModelIOReader() throws {
        let url = dir.appendingPathComponent("rt.gguf")
        let tensors = try writeSample(url)
        let f = try GGUFFile(url)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 32)
        let expected =
            Self.allMetadata + [
                ("test.arr.nested", GGUFValue.array([.array([.int32(1), .int32(2)]), .array([.int32(3)])])),
                ("general.alignment", .uint32(32)),
            ]
        XCTAssertEqual(f.metadataKeys, expected.map(\.0))
        for (k, v) in expected { XCTAssertEqual(f.metadata[k], v, k) }
        XCTAssertEqual(f.tensors.map(\.name), tensors.map(\.0))
        for ((n, t, s, d, vals, _), info) in zip(tensors, f.tensors) {
            XCTAssertEqual(info.dtype, t, n)
            XCTAssertEqual(info.shape, s, n)
            XCTAssertEqual(info.byteCount, d.count, n)
            XCTAssertEqual(try f.rawBytes(n), d, n)
            let m = try f.load(n)
            XCTAssertEqual(m.cols, s.last!, n)
            XCTAssertEqual(
                m.data.map(\.bitPattern), vals.map(\.bitPattern), "\(n): reader and writer dequantize differently")
        }
    }

    func testPythonGGUFReadsFile() throws {
        let url = dir.appendingPathComponent("py.gguf")
        let tensors = try writeSampleWithoutNested(url)
        let j = try PythonCheck.run(
            "Ops/check_gguf.py",
            [url.path, "--rtn", "rtn.src:rtn.q8_0", "--rtn", "rtn.src:rtn.q4_0", "--rtn", "rtn.src:rtn.q4_1"],
            modules: ["gguf", "numpy"])
        XCTAssertEqual(j["version"] as? Int, 3)
        XCTAssertEqual(j["alignment"] as? Int, 32)
        let meta = j["metadata"] as! [String: [String: Any]]
        for (k, v) in Self.allMetadata {
            guard let m = meta[k] else {
                XCTFail("python lacks \(k)")
                continue
            }
            XCTAssertEqual(m["type"] as? String, Self.pyTypeName(v), k)
            if case let .array(items) = v {
                if let first = items.first { XCTAssertEqual(m["subtype"] as? String, Self.pyTypeName(first), k) }
                let got = m["value"] as? [Any] ?? []
                XCTAssertEqual(got.count, items.count, k)
                for (a, b) in zip(items, got) { XCTAssertTrue(Self.matches(a, b), "\(k): \(a) vs \(b)") }
            } else {
                XCTAssertTrue(Self.matches(v, m["value"] as Any), "\(k): \(v) vs \(String(describing: m["value"]))")
            }
        }
        XCTAssertEqual(meta["general.alignment"]?["value"] as? String, "32")
        let py = j["tensors"] as! [[String: Any]]
        XCTAssertEqual(py.map { $0["name"] as! String }, tensors.map(\.0))
        for ((n, t, s, d, vals, _), p) in zip(tensors, py) {
            XCTAssertEqual(p["type"] as? String, t.rawValue, n)
            XCTAssertEqual(p["shape"] as? [Int], s, n)
            XCTAssertEqual(p["n_bytes"] as? Int, d.count, n)
            XCTAssertEqual((p["data_offset"] as! Int) % 32, 0, n)
            XCTAssertEqual(jsonBits(p["f32_bits"]), vals.map(\.bitPattern), "\(n): python dequantization differs")
        }
        // Kiln's RTN equals the gguf package's port of ggml's quantize_row_*_ref, byte for byte.
        let rtn = j["rtn"] as! [String: Bool]
        XCTAssertEqual(rtn, ["rtn.q8_0": true, "rtn.q4_0": true, "rtn.q4_1": true])
    }

    func testPythonRTNOnWiderData() throws {
        // Many blocks of varied magnitudes, against the gguf package's reference port.
        var rng = TestRNG(11)
        let n = 64 * 256
        var x = [Float](repeating: 0, count: n)
        for b in 0..<(n / 32) {
            let scale = Float(pow(10.0, Double(rng.int(9)) - 5))
            for j in 0..<32 { x[b * 32 + j] = rng.float() * scale }
            if b % 7 == 0 { x[b * 32 + rng.int(32)] = -scale * 3 }
        }
        let url = dir.appendingPathComponent("rtn.gguf")
        let w = try GGUFWriter(url: url)
        try w.declareTensor("src", type: .f32, shape: [64, 256])
        for t in ["q8_0", "q4_0", "q4_1"] {
            try w.declareTensor(t, type: DType(rawValue: t.uppercased())!, shape: [64, 256])
        }
        try w.writeTensor("src", floats: x)
        for t in ["q8_0", "q4_0", "q4_1"] { try w.writeTensor(t, floats: x) }
        try w.finish()
        let j = try PythonCheck.run(
            "Ops/check_gguf.py", [url.path, "--rtn", "src:q8_0", "--rtn", "src:q4_0", "--rtn", "src:q4_1"],
            modules: ["gguf", "numpy"])
        XCTAssertEqual(j["rtn"] as? [String: Bool], ["q8_0": true, "q4_0": true, "q4_1": true])
    }

    func writeSampleWithoutNested(_ url: URL) throws -> [(String, DType, [Int], Data, [Float], GGUFQuantizedTensor?)] {
        let tensors = try sampleTensors()
        let w = try GGUFWriter(url: url)
        try w.addMetadata(Self.allMetadata)
        for (n, t, s, _, _, _) in tensors { try w.declareTensor(n, type: t, shape: s) }
        for (n, _, _, d, _, _) in tensors { try w.writeTensor(n, bytes: d) }
        try w.finish()
        return tensors
    }

    static func pyTypeName(_ v: GGUFValue) -> String {
        [
            "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64",
            "INT64", "FLOAT64",
        ][Int(GGUFWriter.typeCode(v))]
    }

    static func matches(_ v: GGUFValue, _ py: Any) -> Bool {
        switch v {
        case let .string(s): return py as? String == s
        case let .bool(b): return (py as? Bool) == b
        case let .float32(f):
            return (py as? String).flatMap(Double.init).map { Float($0) == f && Double(f) == $0 } ?? false
        case let .float64(f): return (py as? String).flatMap(Double.init) == f
        case let .uint64(u): return py as? String == String(u)
        default: return py as? String == String(v.int!)
        }
    }

    // MARK: Streaming contract

    func testErrorsNameTensorAndLeaveNoFile() throws {
        let url = dir.appendingPathComponent("bad.gguf")
        // Wrong byte count.
        do {
            let w = try GGUFWriter(url: url)
            try w.declareTensor("a.weight", type: .f32, shape: [2, 32])
            try w.declareTensor("b.weight", type: .q4_0, shape: [2, 32])
            try w.writeTensor("a.weight", floats: [Float](repeating: 1, count: 64))
            XCTAssertEqual(partials(of: "bad.gguf", in: dir).count, 1)
            XCTAssertThrowsError(try w.writeTensor("b.weight", bytes: Data(count: 35))) {
                XCTAssertTrue("\($0)".contains("b.weight"), "\($0)")
                XCTAssertTrue("\($0)".contains("36"), "\($0)")
            }
            XCTAssertThrowsError(try w.finish())
        }
        XCTAssertEqual(fileNames(in: dir), [])
        // Out of order, undeclared, missing at finish.
        do {
            let w = try GGUFWriter(url: url)
            try w.declareTensor("a.weight", type: .f16, shape: [32])
            try w.declareTensor("b.weight", type: .f16, shape: [32])
            XCTAssertThrowsError(try w.writeTensor("b.weight", bytes: Data(count: 64))) {
                XCTAssertTrue("\($0)".contains("b.weight") && "\($0)".contains("a.weight"))
            }
        }
        XCTAssertEqual(fileNames(in: dir), [])
        do {
            let w = try GGUFWriter(url: url)
            try w.declareTensor("a.weight", type: .f16, shape: [32])
            try w.declareTensor("b.weight", type: .f16, shape: [32])
            try w.writeTensor("a.weight", bytes: Data(count: 64))
            XCTAssertThrowsError(try w.finish()) { XCTAssertTrue("\($0)".contains("b.weight"), "\($0)") }
        }
        XCTAssertEqual(fileNames(in: dir), [])
        // Dropped without finish: the temporary file goes away.
        do {
            let w = try GGUFWriter(url: url)
            try w.declareTensor("a.weight", type: .f16, shape: [32])
            try w.writeTensor("a.weight", bytes: Data(count: 64))
            XCTAssertEqual(fileNames(in: dir), partials(of: "bad.gguf", in: dir))
            XCTAssertEqual(fileNames(in: dir).count, 1)
        }
        XCTAssertEqual(fileNames(in: dir), [])
        // Abandon.
        do {
            let w = try GGUFWriter(url: url)
            try w.declareTensor("a.weight", type: .f16, shape: [32])
            try w.writeTensor("a.weight", bytes: Data(count: 64))
            w.abandon()
            XCTAssertEqual(fileNames(in: dir), [])
            XCTAssertThrowsError(try w.finish())
        }
        // Declaration errors name the tensor / key.
        let w = try GGUFWriter(url: url)
        XCTAssertThrowsError(try w.declareTensor("odd.weight", type: .q8_0, shape: [3, 33])) {
            XCTAssertTrue("\($0)".contains("odd.weight"))
        }
        XCTAssertThrowsError(try w.declareTensor(String(repeating: "x", count: 64), type: .f32, shape: [1]))
        XCTAssertThrowsError(try w.declareTensor("u8.weight", type: .u8, shape: [4])) {
            XCTAssertTrue("\($0)".contains("u8.weight"))
        }
        try w.addMetadata("k", .uint8(1))
        XCTAssertThrowsError(try w.addMetadata("k", .uint8(2))) { XCTAssertTrue("\($0)".contains("k")) }
        XCTAssertThrowsError(try w.addMetadata("mixed", .array([.int32(1), .string("x")]))) {
            XCTAssertTrue("\($0)".contains("mixed"))
        }
        XCTAssertThrowsError(try w.addMetadata("general.alignment", .uint32(64)))
        try w.declareTensor("a.weight", type: .q4_1, shape: [32])
        let q = GGUFQuantizedTensor(
            type: .q4_0, shape: [32], codes: .unsigned([UInt8](repeating: 0, count: 32)), scales: [0])
        XCTAssertThrowsError(try w.writeTensor("a.weight", quantized: q)) {
            XCTAssertTrue("\($0)".contains("a.weight"))
        }
        XCTAssertEqual(fileNames(in: dir), [])
    }

    func testReplacesExistingFileOnlyOnFinish() throws {
        let url = dir.appendingPathComponent("m.gguf")
        try Data("old".utf8).write(to: url)
        let w = try GGUFWriter(url: url, replace: true)
        try w.declareTensor("a", type: .f32, shape: [1])
        try w.writeTensor("a", floats: [1])
        XCTAssertEqual(try Data(contentsOf: url), Data("old".utf8))
        try w.finish()
        XCTAssertEqual(try TestGGUF(url).tensors.map(\.name), ["a"])
        XCTAssertEqual(fileNames(in: dir), ["m.gguf"])
        // No tensors at all is a valid file too.
        let e = try GGUFWriter(url: dir.appendingPathComponent("e.gguf"))
        try e.addMetadata("general.architecture", .string("none"))
        try e.finish()
        XCTAssertEqual(try TestGGUF(dir.appendingPathComponent("e.gguf")).metadata.count, 2)
    }
}

extension TestRNG {
    func floatsCopy(_ n: Int) -> [Float] {
        var r = self
        return r.floats(n)
    }
}
