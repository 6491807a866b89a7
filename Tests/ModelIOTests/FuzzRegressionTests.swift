import Foundation
import ModelIO
import TestSupport
import XCTest

/// Inputs the fuzzers (Ops/fuzz.sh) once crashed on, replayed through the ModelIO
/// entry points of Fuzz/gguf.swift and Fuzz/safetensors.swift: each must now be
/// refused with a ModelIOError naming the file.
final class ModelIOFuzzRegressionTests: XCTestCase {
    /// What Fuzz/gguf.swift does with ModelIO: open from bytes, read every small
    /// tensor, build the model view (config from the metadata).
    static func openGGUF(_ bytes: Data) throws {
        let file = try GGUFFile(bytes: bytes, name: "fuzz.gguf")
        for t in file.tensorTable where t.info.elementCount <= 1 << 16 {
            _ = try file.load(t.info.name)
        }
        _ = try GGUFModel(file: file)
    }

    /// What Fuzz/safetensors.swift does: config.json, a NUL byte, the checkpoint.
    static func openCheckpoint(_ bytes: Data) throws {
        let dir = Paths.tempDir("fuzz-safetensors")
        let split = bytes.firstIndex(of: 0) ?? bytes.endIndex
        try Data(bytes[bytes.startIndex..<split]).write(to: dir.appendingPathComponent("config.json"))
        let st = dir.appendingPathComponent("model.safetensors")
        try Data(split < bytes.endIndex ? bytes[(split + 1)...] : Data()).write(to: st)
        let model = try SafeTensorsModel(directory: dir, files: [st], given: st)
        for t in model.tensors where t.elementCount <= 1 << 16 {
            _ = try model.load(t.name)
        }
    }

    func testRecordedGGUFInputsAreRefused() throws {
        let inputs = Paths.fuzzInputs("gguf")
        XCTAssertFalse(inputs.isEmpty, "no inputs under Tests/Fixtures/fuzz/gguf")
        for url in inputs {
            let bytes = try Data(contentsOf: url)
            assertModelIOError(["fuzz.gguf"]) { try Self.openGGUF(bytes) }
        }
    }

    func testRecordedSafetensorsInputsAreRefused() throws {
        let inputs = Paths.fuzzInputs("safetensors")
        if inputs.isEmpty { throw XCTSkip("no inputs under Tests/Fixtures/fuzz/safetensors") }
        for url in inputs {
            let bytes = try Data(contentsOf: url)
            assertModelIOError([]) { try Self.openCheckpoint(bytes) }
        }
    }

    /// What Fuzz/imatrix.swift does: either encoding from bytes.
    func testRecordedImatrixInputsAreRefused() throws {
        let inputs = Paths.fuzzInputs("imatrix")
        if inputs.isEmpty { throw XCTSkip("no inputs under Tests/Fixtures/fuzz/imatrix") }
        for url in inputs {
            let bytes = try Data(contentsOf: url)
            assertModelIOError(["fuzz.imatrix"]) { _ = try Imatrix.read(bytes: bytes, name: "fuzz.imatrix") }
        }
    }

    /// A zero-sized tensor [0, 2^40, 2^40] passed the size check (its product is 0),
    /// then its element count, multiplied outermost first, trapped.
    func testZeroSizedTensorWithHugeDimensionsIsRefused() throws {
        var d = Data("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        u32(3)
        u64(1)
        u64(0)
        u64(1)
        d.append(UInt8(ascii: "t"))
        u32(3)
        [0, 1 << 40, 1 << 40].forEach { u64($0) }
        u32(0)
        u64(0)
        d.append(Data(count: 32 - d.count % 32))
        assertModelIOError(["zero.gguf", "tensor 't': shape [0, 1099511627776, 1099511627776] overflows"]) {
            try GGUFFile(bytes: d, name: "zero.gguf")
        }
        let header = #"{"t": {"dtype": "F32", "shape": [0, 1099511627776, 1099511627776], "data_offsets": [0, 0]}}"#
        let st = safetensorsBytes(headerJSON: Data(header.utf8), data: Data())
        assertModelIOError(["zero.safetensors", "tensor 't': shape [0, 1099511627776, 1099511627776] overflows"]) {
            try SafeTensorsFile(try tempFile("zero.safetensors", st))
        }
    }

    /// The in-memory reader the fuzzer uses is the file reader.
    func testBytesReaderMatchesFileReader() throws {
        let url = Paths.fixture("gguf/quants.gguf")
        let mapped = try GGUFFile(url)
        let copied = try GGUFFile(bytes: Data(contentsOf: url), name: url.lastPathComponent)
        XCTAssertEqual(copied.metadata, mapped.metadata)
        XCTAssertEqual(copied.tensors.map(\.name), mapped.tensors.map(\.name))
        XCTAssertEqual(copied.tensors.map(\.shape), mapped.tensors.map(\.shape))
        for t in mapped.tensors {
            XCTAssertEqual(
                try copied.load(t.name).data.map(\.bitPattern), try mapped.load(t.name).data.map(\.bitPattern), t.name)
        }
    }
}
