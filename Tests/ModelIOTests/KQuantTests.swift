import Foundation
import ModelIO
import Tensor
import TestSupport
import XCTest

/// Kiln's K-quants (Q2_K...Q6_K) against two outside references held in
/// Tests/Fixtures/gguf/kquants.gguf (see Ops/gen-kquant-fixtures.py): the Python gguf package's
/// dequantizer of random blocks, and llama.cpp's own quantize_q*_K of the same input.
final class KQuantTests: XCTestCase {
    let url = Paths.fixture("gguf/kquants.gguf")

    func testDequantizeMatchesGGUFPy() throws {
        let f = try GGUFFile(url)
        for type in KQuantType.allCases {
            let name = type.rawValue + ".random"
            XCTAssertEqual(f.tensor(name)?.info.dtype, type.dtype)
            let want = try f.load(name + ".expected")
            let got = try f.load(name)
            XCTAssertEqual(got.data, want.data, name)  // same products in the same order: bit-identical
        }
    }

    func testUnpackPackRoundTripsGGUFPyBlocks() throws {
        let f = try GGUFFile(url)
        for type in KQuantType.allCases {
            let name = type.rawValue + ".random"
            let raw = [UInt8](try f.rawBytes(name))
            let want = try f.load(name + ".expected").data
            XCTAssertEqual(raw.count % type.blockBytes, 0)
            for b in 0..<(raw.count / type.blockBytes) {
                let bytes = Array(raw[(b * type.blockBytes)..<((b + 1) * type.blockBytes)])
                let block = bytes.withUnsafeBytes { KQuantBlock(type: type, packed: $0) }
                XCTAssertEqual(block.packed, bytes, "\(name) block \(b)")
                XCTAssertEqual(block.values, Array(want[(b * 256)..<((b + 1) * 256)]), "\(name) block \(b)")
            }
        }
    }

    /// Without importance Kiln's RTN must give llama.cpp's quantize_row_q*_K_ref bytes; with an
    /// importance vector, quantize_row_q*_K_impl's.
    func testRTNMatchesLlamaCpp() throws {
        try assertRTNMatchesLlamaCpp(url)
    }

    /// The same on a larger file made by `KQUANT_OUT=... KQUANT_EXTRA_ROWS=2000 Ops/gen-kquant-fixtures.py`,
    /// when KILN_KQUANT_CHECK names it.
    func testRTNMatchesLlamaCppOnLargerInput() throws {
        guard let path = ProcessInfo.processInfo.environment["KILN_KQUANT_CHECK"], !path.isEmpty else {
            throw XCTSkip("KILN_KQUANT_CHECK is not set")
        }
        try assertRTNMatchesLlamaCpp(URL(fileURLWithPath: path))
    }

    private func assertRTNMatchesLlamaCpp(_ url: URL) throws {
        let f = try GGUFFile(url)
        let x = try f.load("input")
        let importance = try f.load("importance").data
        for type in KQuantType.allCases {
            for (suffix, w) in [(".llama", nil), (".llama_imatrix", importance)] as [(String, [Float]?)] {
                let name = type.rawValue + suffix
                let want = try f.rawBytes(name)
                let got = try KQuantBlocks.quantize(
                    x.data, shape: [x.rows, x.cols], type: type, importance: w, name: name)
                XCTAssertEqual(got.count, want.count, name)
                let differing = (0..<(got.count / type.blockBytes)).filter { b in
                    let r = (b * type.blockBytes)..<((b + 1) * type.blockBytes)
                    return got[r] != want[r]
                }
                XCTAssertEqual(differing, [], "\(name): blocks differing from llama.cpp's")
            }
        }
    }

    func testEncodeGoesThroughKQuants() throws {
        let x = gaussian(count: 2 * 512, seed: 3)
        for type in KQuantType.allCases {
            let encoded = try GGUFBlocks.encode(x, shape: [2, 512], type: type.dtype)
            XCTAssertEqual(encoded, try KQuantBlocks.quantize(x, shape: [2, 512], type: type))
            XCTAssertEqual(encoded.count, try GGUFBlocks.byteCount(type: type.dtype, shape: [2, 512]))
        }
    }

    /// Error on Gaussian weights: each bit roughly halves the RMSE; Q2_K is the worst.
    func testErrorShrinksWithBits() throws {
        let n = 64 * 256
        let x = gaussian(count: n, seed: 1)
        var rmse: [KQuantType: Double] = [:]
        for type in KQuantType.allCases {
            let q = try KQuantBlocks.quantize(x, shape: [n / 1024, 1024], type: type)
            let y = try XCTUnwrap(Dequantize.floats(q, type: type.dtype, count: n))
            rmse[type] = (zip(x, y).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / Double(n)).squareRoot()
        }
        print("K-quant RMSE on N(0,1):", KQuantType.allCases.map { "\($0.rawValue) \(rmse[$0]!)" })
        let order: [KQuantType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K]
        for (a, b) in zip(order, order.dropFirst()) {
            XCTAssertLessThan(rmse[b]! * 1.5, rmse[a]!, "\(b.rawValue) vs \(a.rawValue)")
        }
        XCTAssertLessThan(rmse[.q6_K]!, 0.03)
        XCTAssertLessThan(rmse[.q2_K]!, 0.5)
    }

    /// A skewed importance vector must lower the importance-weighted error against the
    /// unweighted quantization of the same data.
    func testImportanceLowersWeightedError() throws {
        let rows = 32
        let cols = 1024
        let x = gaussian(count: rows * cols, seed: 2)
        var rng = SplitMix(seed: 9)
        let importance = (0..<cols).map { _ in Float(exp(3 * rng.gaussian())) }
        for type in KQuantType.allCases {
            func weightedError(_ w: [Float]?) throws -> Double {
                let q = try KQuantBlocks.quantize(x, shape: [rows, cols], type: type, importance: w)
                let y = try XCTUnwrap(Dequantize.floats(q, type: type.dtype, count: x.count))
                var sum = 0.0
                for i in 0..<x.count {
                    let e = Double(x[i] - y[i])
                    sum += Double(importance[i % cols]) * e * e
                }
                return sum
            }
            let plain = try weightedError(nil)
            let weighted = try weightedError(importance)
            print("\(type.rawValue) importance-weighted error: \(weighted / plain) of the unweighted fit's")
            XCTAssertLessThan(weighted, 0.9 * plain, type.rawValue)
        }
    }

    func testRefusesRowsNotMultipleOf256() {
        for type in KQuantType.allCases {
            assertModelIOError(["blk.0.ffn_down.weight", "300", "multiple of", "256"]) {
                try KQuantBlocks.quantize(
                    [Float](repeating: 0, count: 600), shape: [2, 300], type: type, name: "blk.0.ffn_down.weight")
            }
        }
        assertModelIOError(["w", "importance has 3 entries for 256 columns"]) {
            try KQuantBlocks.quantize(
                [Float](repeating: 1, count: 256), shape: [1, 256], type: .q4_K,
                importance: [1, 2, 3], name: "w")
        }
        assertModelIOError(["w", "cannot quantize nan"]) {
            try KQuantBlocks.quantize([Float](repeating: .nan, count: 256), shape: [1, 256], type: .q6_K, name: "w")
        }
    }

    /// The super-block API GPTQ will use: codes from `code` under the block's parameters are the
    /// block's own (where the scale is not zero), `value` gives the dequantizer's floats, and a
    /// strided read of the same values fits the same block.
    func testGridCodeAndValueReproduceBlock() throws {
        let x = gaussian(count: 256 * 4, seed: 5)
        for type in KQuantType.allCases {
            let grid = KQuantGrid(type)
            let block = x.withUnsafeBufferPointer { grid.fit($0.baseAddress!) }
            var spread = [Float](repeating: 0, count: 4 * 256)
            for i in 0..<256 { spread[4 * i] = x[i] }
            let strided = spread.withUnsafeBufferPointer { grid.fit($0.baseAddress!, stride: 4) }
            XCTAssertEqual(block, strided, type.rawValue)
            let params = block.groupParameters
            XCTAssertEqual(params.count, type.subBlockCount)
            for i in 0..<256 {
                let p = params[i / type.subBlockSize]
                if p.scale != 0 { XCTAssertEqual(grid.code(x[i], p), block.codes[i], "\(type.rawValue) \(i)") }
            }
            let decoded = block.packed.withUnsafeBytes { Dequantize.floats($0, type: type.dtype, count: 256) }
            XCTAssertEqual((0..<256).map { grid.value(block.codes[$0], params[$0 / type.subBlockSize]) }, decoded)
        }
    }

    private func gaussian(count: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix(seed: seed)
        return (0..<count).map { _ in Float(rng.gaussian()) }
    }
}

/// SplitMix64 with Box-Muller: a small seeded source of test data.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }

    mutating func gaussian() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
}
