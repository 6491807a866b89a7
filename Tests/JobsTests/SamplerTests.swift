import Calibration
import Foundation
import TestSupport
import XCTest

final class SamplerTests: XCTestCase {
    func testPythonRandomMatchesCPython() {
        // Values printed by CPython 3: random.seed(S); random.getrandbits / random.randint.
        var g = PythonRandom(seed: 0)
        XCTAssertEqual((0..<3).map { _ in g.next32() }, [3_626_764_237, 1_654_615_998, 3_255_389_356])
        var big = PythonRandom(seed: 12_345_678_901_234_567)  // a two-word seed
        XCTAssertEqual((0..<4).map { _ in big.int(through: 10_000 - 512 - 1) }, [1589, 9358, 9215, 4515])
        var wide = PythonRandom(seed: 0)  // randint above 2^32: two words per draw
        XCTAssertEqual((0..<2).map { _ in wide.int(through: 1 << 40) }, [849_735_321_549, 87_705_687_125])
    }

    func testRandomWindowsAreTheGPTQReferenceLoaders() throws {
        // The reference loader over fortunes_calib.txt's 367,503 tokens, seqlen 512, seed 0:
        // random.seed(0); [random.randint(0, 367503 - 512 - 1) for _ in range(8)].
        XCTAssertEqual(
            try Sampler.starts(tokenCount: 367_503, count: 8, length: 512, kind: .random, seed: 0),
            [201_979, 220_500, 21225, 135_746, 268_055, 254_766, 212_302, 159_023])
    }

    func testRandomWindowsAreReproducibleAndInRange() throws {
        let a = try Sampler.starts(tokenCount: 10_000, count: 64, length: 512, kind: .random, seed: 0)
        let b = try Sampler.starts(tokenCount: 10_000, count: 64, length: 512, kind: .random, seed: 0)
        let c = try Sampler.starts(tokenCount: 10_000, count: 64, length: 512, kind: .random, seed: 1)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertTrue(a.allSatisfy { $0 >= 0 && $0 <= 10_000 - 512 - 1 })
        // Exactly L + 1 tokens: the only start is 0.
        XCTAssertEqual(try Sampler.starts(tokenCount: 513, count: 3, length: 512, kind: .random, seed: 7), [0, 0, 0])
    }

    func testConsecutiveWindows() throws {
        let tokens = (0..<100).map(Int32.init)
        let w = try Sampler.windows(tokens: tokens, count: 3, length: 10, kind: .consecutive, seed: 99)
        XCTAssertEqual(w, [Array(0..<10), Array(10..<20), Array(20..<30)].map { $0.map(Int32.init) })
    }

    func testTooShortSaysTokensAndWhatToLower() {
        XCTAssertThrowsError(
            try Sampler.starts(tokenCount: 100, count: 2, length: 64, kind: .consecutive, seed: 0, file: "t.txt")
        ) {
            let m = "\($0)"
            XCTAssertTrue(
                m.contains("t.txt") && m.contains("has 100 tokens") && m.contains("need 128")
                    && m.contains("--samples or --seqlen"), m)
        }
        XCTAssertThrowsError(try Sampler.starts(tokenCount: 64, count: 1, length: 64, kind: .random, seed: 0)) {
            XCTAssertTrue("\($0)".contains("has 64 tokens"), "\($0)")
        }
    }

    func testEmptyAndMissingFiles() throws {
        let dir = Paths.tempDir("kiln-sampler")
        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        XCTAssertThrowsError(try Sampler.tokens(file: empty) { _ in [] }) {
            XCTAssertEqual($0 as? SamplerError, .emptyFile(file: "empty.txt"))
        }
        let spaces = dir.appendingPathComponent("blank.txt")
        try Data("   ".utf8).write(to: spaces)
        XCTAssertThrowsError(try Sampler.tokens(file: spaces) { _ in [] }) {
            XCTAssertTrue("\($0)".contains("is empty"), "\($0)")
        }
        XCTAssertThrowsError(try Sampler.tokens(file: dir.appendingPathComponent("nope.txt")) { _ in [1] }) {
            XCTAssertTrue("\($0)".contains("nope.txt"), "\($0)")
        }
    }
}
