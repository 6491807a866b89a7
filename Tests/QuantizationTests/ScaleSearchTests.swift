import Quantization
import Tensor
import TestSupport
import XCTest

/// Importance-weighted scale search (Sources/Tensor/ScaleSearch.swift): never worse than the
/// grid's own max-based fit under the weighted error it minimises, stored exactly, and lower
/// output error through RTN and GPTQ on the reference fixture's layers.
final class ScaleSearchTests: XCTestCase {
    /// Heavy-tailed groups (a Student-t-like mix) with log-normal importance, seeded.
    static func groups(count: Int, size: Int, seed: UInt64) -> (x: [Float], w: [Float]) {
        var rng = SplitMix(seed)
        var x = [Float](repeating: 0, count: count * size)
        var w = [Float](repeating: 0, count: count * size)
        for k in x.indices {
            let g = rng.gaussian()
            x[k] = k % 13 == 0 ? g * 4 : g
            w[k] = exp(1.5 * rng.gaussian())
        }
        return (x, w)
    }

    func check<G: QuantizationGrid>(_ grid: G, _ label: String, atMost ratio: Double) {
        let size = 32
        let n = 2000
        let (x, w) = Self.groups(count: n, size: size, seed: 7)
        var own = 0.0
        var searched = 0.0
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                for g in 0..<n {
                    let xs = xp.baseAddress! + g * size
                    let ws = wp.baseAddress! + g * size
                    let a = grid.weightedError(xs, ws, count: size, grid.fit(xs, count: size, stride: 1))
                    let b = grid.weightedError(xs, ws, count: size, grid.fitWeighted(xs, count: size, importance: ws))
                    XCTAssertLessThanOrEqual(b, a, "\(label): group \(g) scores worse than the grid's own fit")
                    own += a
                    searched += b
                }
            }
        }
        print("scale search \(label): weighted error \(String(format: "%.4f", searched / own)) of the max-based fit's")
        XCTAssertLessThan(searched / own, ratio, label)
    }

    func testSearchNeverScoresWorseThanTheGridsOwnFit() {
        check(GGUFQ4_0Grid(), "Q4_0", atMost: 0.9)
        check(GGUFQ4_1Grid(), "Q4_1", atMost: 0.9)
        check(GGUFQ8_0Grid(), "Q8_0", atMost: 1)
        check(ReferenceGrid(bits: 4, symmetric: false), "int4 asym", atMost: 0.95)
        check(ReferenceGrid(bits: 3, symmetric: true), "int3 sym", atMost: 0.95)
    }

    /// GGUF parameters are what the file stores (fp16), and the codes reproduce the values.
    func testSearchedParametersAreStoredExactly() throws {
        let w = GPTQReferenceTests.matrix("A.W")
        let h = GPTQReferenceTests.matrix("A.H")
        let importance = (0..<h.cols).map { h[$0, $0] }
        for format in [WeightFormat.ggufQ4_0, .ggufQ4_1, .ggufQ8_0] {
            let recipe = QuantRecipe.gguf(format, scaleSearch: true)
            let rtn = try RTN.quantize(w, recipe: recipe, importance: importance, name: "A.W")
            let gptq = try GPTQ.quantize(w, hessian: h, recipe: recipe, name: "A.W").weight
            for q in [rtn, gptq] {
                for p in q.stored.parameters {
                    XCTAssertEqual(Float(Float16(p.scale)), p.scale, "\(format) scale")
                    XCTAssertEqual(Float(Float16(p.zero)), p.zero, "\(format) zero")
                }
                XCTAssertEqual(q.stored.dequantized().data, q.dequantized.data, "\(format)")
            }
        }
    }

    /// On both fixture layers and three grids, searched parameters lower the output error
    /// measured on the layer's own activations, for RTN and for GPTQ.
    func testSearchLowersOutputErrorOnTheReferenceLayers() throws {
        for pair in ["A", "B"] {
            let w = GPTQReferenceTests.matrix("\(pair).W")
            let x = GPTQReferenceTests.matrix("\(pair).X")
            let h = GPTQReferenceTests.matrix("\(pair).H")
            let importance = (0..<h.cols).map { h[$0, $0] }
            let recipes: [(String, QuantRecipe)] = [
                ("Q4_0", .gguf(.ggufQ4_0)), ("Q4_1", .gguf(.ggufQ4_1)),
                ("int4 g32 asym", QuantRecipe(bits: 4, symmetric: false, groupSize: 32)),
                ("int3 g64 sym", QuantRecipe(bits: 3, symmetric: true, groupSize: 64)),
            ]
            for (label, plain) in recipes {
                var searched = plain
                searched.scaleSearch = true
                func error(_ q: QuantizedWeight) -> Double {
                    OutputError.fromActivations(weight: w, quantized: q.dequantized, activations: x)
                }
                let rtn = error(try RTN.quantize(w, recipe: plain))
                let rtnSearched = error(try RTN.quantize(w, recipe: searched, importance: importance))
                let gptq = error(try GPTQ.quantize(w, hessian: h, recipe: plain).weight)
                let gptqSearched = error(try GPTQ.quantize(w, hessian: h, recipe: searched).weight)
                print(
                    "scale search \(pair) \(label): RTN \(rtn) -> \(rtnSearched), GPTQ \(gptq) -> \(gptqSearched)")
                XCTAssertLessThan(rtnSearched, rtn, "\(pair) \(label) RTN")
                XCTAssertLessThan(gptqSearched, gptq, "\(pair) \(label) GPTQ")
            }
        }
    }

    func testImportanceIsChecked() {
        let w = GPTQReferenceTests.matrix("A.W")
        let recipe = QuantRecipe.gguf(.ggufQ4_0, scaleSearch: true)
        XCTAssertThrowsError(try RTN.quantize(w, recipe: recipe, importance: [1, 2], name: "blk.0.attn_q")) {
            XCTAssertEqual(
                "\($0)", "tensor 'blk.0.attn_q': importance has 2 values, weight has 256 input columns")
        }
        var bad = [Float](repeating: 1, count: w.cols)
        bad[5] = -1
        XCTAssertThrowsError(try RTN.quantize(w, recipe: recipe, importance: bad, name: "blk.0.attn_q")) {
            XCTAssertEqual("\($0)", "tensor 'blk.0.attn_q': importance of column 5 is -1.0; it must be finite and >= 0")
        }
    }
}

/// A small seeded generator for test data (SplitMix64, Box-Muller).
struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func gaussian() -> Float {
        let u = max(uniform(), 1e-7)
        return (-2 * log(u)).squareRoot() * cos(2 * Float.pi * uniform())
    }
}
