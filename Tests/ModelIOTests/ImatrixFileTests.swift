import Foundation
import ModelIO
import TestSupport
import XCTest

/// llama.cpp's imatrix encodings: both round trip, and a damaged file fails naming the file.
final class ImatrixFileTests: XCTestCase {
    func sample() -> Imatrix {
        Imatrix(
            entries: [
                "blk.0.attn_q.weight": .init(sums: (0..<64).map { Float($0) * 0.37 + 1 }, count: 512),
                "blk.0.ffn_down.weight": .init(sums: (0..<96).map { Float($0 % 7) * 3.1 }, count: 512),
            ], datasets: ["calib.txt"], chunkCount: 4, chunkSize: 128)
    }

    func testGGUFRoundTripIsExact() throws {
        let url = Paths.tempDir("kiln-imatrix").appendingPathComponent("m.gguf")
        try sample().writeGGUF(to: url)
        XCTAssertEqual(try Imatrix.read(url), sample())
        // Kiln never replaces a file unless asked.
        XCTAssertThrowsError(try sample().writeGGUF(to: url))
        try sample().writeGGUF(to: url, replace: true)
    }

    /// The legacy file holds mean(x^2) * ncall (ncall = ceil(count / chunk size)); read back, its
    /// importance (sums / count) is the mean again, as llama-quantize divides.
    func testLegacyRoundTripKeepsTheImportance() throws {
        let url = Paths.tempDir("kiln-imatrix").appendingPathComponent("m.dat")
        let m = sample()
        try m.writeLegacy(to: url)
        let back = try Imatrix.read(url)
        XCTAssertEqual(back.datasets, ["calib.txt"])
        XCTAssertEqual(back.chunkCount, 4)
        XCTAssertEqual(Set(back.entries.keys), Set(m.entries.keys))
        for name in m.entries.keys {
            XCTAssertEqual(back.entries[name]!.count, 4)
            for (a, b) in zip(back.importance(name)!, m.importance(name)!) {
                XCTAssertEqual(a, b, accuracy: abs(b) * 1e-6, name)
            }
        }
    }

    func testDamagedFilesFailNamingTheFile() throws {
        let dir = Paths.tempDir("kiln-imatrix")
        let gguf = dir.appendingPathComponent("m.gguf")
        let dat = dir.appendingPathComponent("m.dat")
        try sample().writeGGUF(to: gguf)
        try sample().writeLegacy(to: dat)
        for (url, cut) in [(gguf, 40), (gguf, 700), (dat, 3), (dat, 100)] {
            let bad = dir.appendingPathComponent("cut-\(cut)-" + url.lastPathComponent)
            try Data(try Data(contentsOf: url).prefix(cut)).write(to: bad)
            XCTAssertThrowsError(try Imatrix.read(bad)) {
                XCTAssertTrue("\($0)".contains(bad.lastPathComponent), "\($0)")
            }
        }
        // A lying entry count and value count are refused before anything is allocated.
        var lying = Data()
        for v: Int32 in [Int32.max, 4] { withUnsafeBytes(of: v.littleEndian) { lying.append(contentsOf: $0) } }
        let liar = dir.appendingPathComponent("liar.dat")
        try lying.write(to: liar)
        XCTAssertThrowsError(try Imatrix.read(liar)) { XCTAssertTrue("\($0)".contains("entry count"), "\($0)") }
        var big = try Data(contentsOf: dat)
        // The first entry's value count (after n, len, name, ncall) set to 2^30.
        let at = 4 + 4 + "blk.0.attn_q.weight".utf8.count + 4
        big.replaceSubrange(at..<(at + 4), with: withUnsafeBytes(of: Int32(1 << 30).littleEndian) { Data($0) })
        let bigURL = dir.appendingPathComponent("big.dat")
        try big.write(to: bigURL)
        XCTAssertThrowsError(try Imatrix.read(bigURL)) {
            XCTAssertTrue("\($0)".contains("blk.0.attn_q.weight"), "\($0)")
        }
        // Negative or non-finite sums name the entry.
        var nan = sample()
        nan.entries["blk.0.attn_q.weight"]!.sums[3] = .nan
        XCTAssertThrowsError(try nan.writeGGUF(to: dir.appendingPathComponent("nan.gguf"))) {
            XCTAssertTrue("\($0)".contains("blk.0.attn_q.weight"), "\($0)")
        }
    }
}
