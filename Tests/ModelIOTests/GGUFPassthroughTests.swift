import Foundation
import ModelIO
import TestSupport
import XCTest

/// A tensor copied as stored from its input file (read a piece at a time, never mapped)
/// gives the bytes writing it from memory gives; a source shorter than its range fails
/// the write and leaves no output.
final class GGUFPassthroughTests: XCTestCase {
    func write(_ url: URL, _ body: (GGUFWriter) throws -> Void) throws {
        let w = try GGUFWriter(url: url, replace: true)
        try w.addMetadata("general.architecture", .string("llama"))
        try w.declareTensor("a", type: .f16, shape: [3, 7])
        try w.declareTensor("b", type: .f32, shape: [1000, 9])
        try body(w)
        try w.finish()
    }

    func testACopiedTensorIsTheSourceByteForByte() throws {
        var rng = TestRNG(7)
        let a = Data((0..<42).map { _ in UInt8(rng.int(256)) })
        let b = Data((0..<36000).map { _ in UInt8(rng.int(256)) })
        // The source: some bytes, a, some more, b, a tail.
        let source = try tempFile(
            "source.bin", Data(repeating: 1, count: 13) + a + Data(repeating: 2, count: 5) + b + Data([9]))
        let dir = Paths.tempDir("gguf-passthrough")
        let fromMemory = dir.appendingPathComponent("memory.gguf")
        let copied = dir.appendingPathComponent("copied.gguf")
        try write(fromMemory) { w in
            try w.writeTensor("a", bytes: a)
            try w.writeTensor("b", bytes: b)
        }
        try write(copied) { w in
            try w.writeTensor("a", copying: 13..<55, of: source)
            try w.writeTensor("b", copying: 60..<36060, of: source)
        }
        XCTAssertEqual(try Data(contentsOf: copied), try Data(contentsOf: fromMemory))

        // Pieces of any size cover the range exactly once, in order.
        for piece in [1, 1000, 7, 1 << 20] {
            var got = Data()
            try FileRange(url: source, range: 60..<36060).forEachPiece(piece: piece) { got.append(contentsOf: $0) }
            XCTAssertEqual(got, b, "piece \(piece)")
        }
    }

    func testASourceShorterThanItsRangeFailsTheWrite() throws {
        let source = try tempFile("short.bin", Data(repeating: 3, count: 100))
        let dir = Paths.tempDir("gguf-passthrough")
        let out = dir.appendingPathComponent("out.gguf")
        XCTAssertThrowsError(
            try write(out) { w in
                try w.writeTensor("a", copying: 0..<42, of: source)
                try w.writeTensor("b", copying: 50..<36050, of: source)
            }
        ) { XCTAssertTrue("\($0)".contains("short.bin"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        XCTAssertEqual(partials(of: "out.gguf", in: dir), [])
        // A range of the wrong size is refused before anything is read.
        XCTAssertThrowsError(try write(out) { w in try w.writeTensor("a", copying: 0..<41, of: source) }) {
            XCTAssertTrue("\($0)".contains("41 bytes"), "\($0)")
        }
    }
}
