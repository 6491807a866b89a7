import Foundation
import Quantization
import Tensor
import TestSupport
import XCTest

/// AWQ's scale and clip searches against the independent NumPy reimplementation of
/// Ops/gen-awq-fixtures.py (Tests/Fixtures/awq): two linears sharing an input with four
/// outlier channels, on the integer grid (4-bit, group 16, asym) and GGUF Q4_0.
final class AWQTests: XCTestCase {
    struct Case {
        var name: String
        var recipe: QuantRecipe
        var losses: [Double]
        var bestIndex: Int
        var rtnError: Double
        var awqError: Double
        var awqClipError: Double
    }

    static let fixture = try! FixtureTensors(Paths.fixture("awq/awq_reference.safetensors"))
    static let cases: [Case] = {
        let json = try! fixtureJSON("awq/awq_reference.json")
        return (json["cases"] as! [[String: Any]]).map { c in
            let format = WeightFormat(rawValue: c["format"] as! String)!
            let recipe =
                format == .integer
                ? QuantRecipe(bits: c["bits"] as! Int, symmetric: c["sym"] as! Bool, groupSize: c["group"] as! Int)
                : QuantRecipe.gguf(format)
            func number(_ key: String) -> Double { (c[key] as! NSNumber).doubleValue }
            return Case(
                name: c["name"] as! String, recipe: recipe,
                losses: (c["losses"] as! [NSNumber]).map(\.doubleValue), bestIndex: c["best_alpha_index"] as! Int,
                rtnError: number("rtn_output_error"), awqError: number("awq_output_error"),
                awqClipError: number("awq_clip_output_error"))
        }
    }()

    static func matrix(_ name: String) -> Matrix {
        let s = fixture.shape(name)
        return Matrix(rows: s[0], cols: s[1], data: fixture.floats(name))
    }

    static let x = matrix("X")
    static let h = matrix("H")
    static let meanAbs = fixture.floats("mean_abs")
    static let linears = [AWQ.Linear(name: "W1", weight: matrix("W1")), AWQ.Linear(name: "W2", weight: matrix("W2"))]

    /// Summed `OutputError.fromActivations` of the group's linears on X.
    static func outputError(_ effective: [Matrix]) -> Double {
        zip(linears, effective).reduce(0.0) {
            $0 + OutputError.fromActivations(weight: $1.0.weight, quantized: $1.1, activations: x)
        }
    }

    func testTwoCasesArePresent() {
        XCTAssertEqual(Self.cases.map(\.name), ["int4_g16_asym", "q4_0"])
    }

    func testScaleSearchMatchesNumPyReference() throws {
        for c in Self.cases {
            let search = try AWQ.searchScales(
                Self.linears, hessian: Self.h, meanAbsActivation: Self.meanAbs, recipe: c.recipe)
            XCTAssertEqual(search.bestIndex, c.bestIndex, c.name)
            XCTAssertEqual(search.alpha, Float(c.bestIndex) / 20, c.name)
            XCTAssertEqual(search.losses.count, 20)
            for (k, (a, b)) in zip(search.losses, c.losses).enumerated() {
                XCTAssertEqual(a, b, accuracy: b * 1e-4, "\(c.name) alpha \(k)")
            }
            XCTAssertEqual(search.rtnLoss, search.losses[0])
            let ref = Self.fixture.floats("\(c.name).scales")
            for (a, b) in zip(search.scales, ref) { XCTAssertEqual(a, b, accuracy: abs(b) * 1e-6, c.name) }
            // alpha 0 is plain RTN: its loss is RTN's output error on X
            XCTAssertEqual(search.rtnLoss, c.rtnError, accuracy: c.rtnError * 1e-4, c.name)
        }
    }

    func testClipSearchMatchesNumPyReference() throws {
        for c in Self.cases {
            let s = Self.fixture.floats("\(c.name).scales")
            let hs = AWQ.scaledHessian(Self.h, scales: s)
            var differ = 0
            var total = 0
            for (k, l) in Self.linears.enumerated() {
                let clip = try AWQClip.search(
                    AWQ.scaleColumns(l.weight, by: s), hessian: hs, recipe: c.recipe, name: l.name)
                let ref = Self.fixture.ints("\(c.name).clip_index.W\(k + 1)")
                XCTAssertEqual(clip.ratioIndex.count, ref.count)
                differ += zip(clip.ratioIndex, ref).filter { $0 != Int($1) }.count
                total += ref.count
                XCTAssertLessThanOrEqual(clip.lossAfter, clip.lossBefore, "\(c.name) \(l.name)")
                XCTAssertTrue(clip.ratioIndex.contains { $0 > 0 }, "\(c.name) \(l.name): nothing was clipped")
            }
            print("AWQ \(c.name): clip ratio differs from NumPy's in \(differ) of \(total) (row, group)")
            // Float32 (Kiln) against float64 (NumPy) errors can only flip near-exact ties.
            XCTAssertLessThanOrEqual(Double(differ), 0.02 * Double(total), "\(c.name): \(differ) of \(total) differ")
        }
    }

    func testScalingAndClippingLowerTheOutputErrorOnX() throws {
        for c in Self.cases {
            let rtn = try Self.outputError(
                Self.linears.map { try RTN.quantize($0.weight, recipe: c.recipe).dequantized })
            let p = try AWQ.prepare(
                Self.linears, hessian: Self.h, meanAbsActivation: Self.meanAbs, previous: Self.norm, recipe: c.recipe,
                clip: nil)
            let awq = try Self.outputError(
                p.linears.map { try Self.effective(RTN.quantize($0.weight, recipe: c.recipe).dequantized, p) })
            let pc = try AWQ.prepare(
                Self.linears, hessian: Self.h, meanAbsActivation: Self.meanAbs, previous: Self.norm, recipe: c.recipe)
            let awqClip = try Self.outputError(
                pc.linears.map { try Self.effective(RTN.quantize($0.weight, recipe: c.recipe).dequantized, pc) })
            print("AWQ \(c.name): alpha \(p.search.alpha) RTN \(rtn) AWQ \(awq) AWQ+clip \(awqClip)")
            XCTAssertEqual(rtn, c.rtnError, accuracy: c.rtnError * 1e-4, c.name)
            XCTAssertEqual(awq, c.awqError, accuracy: c.awqError * 1e-4, c.name)
            XCTAssertEqual(awqClip, c.awqClipError, accuracy: c.awqClipError * 1e-4, c.name)
            XCTAssertLessThan(awq, rtn, c.name)
            XCTAssertLessThan(awqClip, awq, c.name)
        }
    }

    func testAWQThenGPTQIsNoWorseThanGPTQAlone() throws {
        for c in Self.cases {
            let gptq = try Self.outputError(
                Self.linears.map { try GPTQ.quantize($0.weight, hessian: Self.h, recipe: c.recipe).weight.dequantized })
            let p = try AWQ.prepare(
                Self.linears, hessian: Self.h, meanAbsActivation: Self.meanAbs, previous: Self.norm, recipe: c.recipe)
            let both = try Self.outputError(
                p.linears.map {
                    try Self.effective(
                        GPTQ.quantize($0.weight, hessian: p.hessian, recipe: c.recipe).weight.dequantized, p)
                })
            print("AWQ \(c.name): GPTQ \(gptq) AWQ+clip+GPTQ \(both)")
            XCTAssertLessThanOrEqual(both, gptq, c.name)
        }
    }

    /// The clipped weight is what RTN then quantizes: its error over the diagonal blocks is the
    /// search's `lossAfter`, on every grid (Q4_1 and Q8_0 have no NumPy reference here, so this
    /// and the loss ordering are what they are checked on).
    func testRTNOfTheClippedWeightReproducesTheSearchOnEveryGrid() throws {
        let recipes = Self.cases.map(\.recipe) + [QuantRecipe.gguf(.ggufQ4_1), QuantRecipe.gguf(.ggufQ8_0)]
        for recipe in recipes {
            let p = try AWQ.prepare(
                Self.linears, hessian: Self.h, meanAbsActivation: Self.meanAbs, previous: Self.norm, recipe: recipe)
            XCTAssertLessThanOrEqual(p.search.loss, p.search.rtnLoss, "\(recipe.format)")
            let g = recipe.effectiveGroupSize(columns: 64)
            for (k, l) in Self.linears.enumerated() {
                let ws = AWQ.scaleColumns(l.weight, by: p.search.scales)
                let q = try RTN.quantize(p.linears[k].weight, recipe: recipe).dequantized
                var blocks = 0.0
                for c0 in stride(from: 0, to: 64, by: g) {
                    let cols = c0..<(c0 + g)
                    blocks += OutputError.fromHessian(
                        weight: ws.columns(cols), quantized: q.columns(cols),
                        hessian: p.hessian.rows(cols).columns(cols))
                }
                let clip = p.clips[k]
                XCTAssertEqual(blocks, clip.lossAfter, accuracy: clip.lossAfter * 1e-4, "\(recipe.format) \(l.name)")
                XCTAssertLessThanOrEqual(clip.lossAfter, clip.lossBefore, "\(recipe.format) \(l.name)")
            }
        }
    }

    static let norm = AWQFold.Previous.norm(name: "norm", weight: [Float](repeating: 1, count: 64), bias: nil)

    /// Q diag(1/s): what the quantized scaled weight computes on the original input.
    static func effective(_ q: Matrix, _ p: AWQ.Prepared) -> Matrix { AWQ.unscaleColumns(q, by: p.search.scales) }

    // MARK: scales and folding on small hand-made data

    func testScalesAreFlooredAndNormalised() {
        let m: [Float] = [0, 0.5, 2, 8]
        XCTAssertEqual(AWQ.scales(meanAbsActivation: m, alpha: 0), [1, 1, 1, 1])
        let s = AWQ.scales(meanAbsActivation: m, alpha: 0.5)
        // raw: [1e-4, sqrt(0.5), sqrt(2), sqrt(8)], divided by sqrt(max * min)
        let norm = (Float(8).squareRoot() * 1e-4).squareRoot()
        XCTAssertEqual(s[0], 1e-4 / norm, accuracy: 1e-6)
        XCTAssertEqual(s[3], Float(8).squareRoot() / norm, accuracy: 1e-3)
        XCTAssertEqual(s.max()! * s.min()!, 1, accuracy: 1e-5)
    }

    func testFoldingKeepsTheNormThenLinearFunction() throws {
        var rng = SystemRandomNumberGenerator()
        let n = 8
        let x = Matrix(rows: 5, cols: n, data: (0..<40).map { _ in Float.random(in: -1...1, using: &rng) })
        let gamma = (0..<n).map { _ in Float.random(in: 0.5...1.5, using: &rng) }
        let w = Matrix(rows: 3, cols: n, data: (0..<24).map { _ in Float.random(in: -1...1, using: &rng) })
        let s = (0..<n).map { _ in Float.random(in: 0.25...4, using: &rng) }
        let folded = try AWQFold.fold(
            scales: s, linears: [AWQ.Linear(name: "q", weight: w)], previous: .norm(name: "n", weight: gamma, bias: nil)
        )
        guard case let .norm(_, g2, _) = folded.previous else { return XCTFail("norm expected") }
        let before = BLAS.linear(Self.timesRowVector(x, gamma), w)
        let after = BLAS.linear(Self.timesRowVector(x, g2), folded.linears[0].weight)
        for (a, b) in zip(before.data, after.data) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }

    func testFoldingKeepsTheLinearThenLinearFunction() throws {
        var rng = SystemRandomNumberGenerator()
        let n = 6
        let up = Matrix(rows: n, cols: 4, data: (0..<24).map { _ in Float.random(in: -1...1, using: &rng) })
        let down = Matrix(rows: 3, cols: n, data: (0..<18).map { _ in Float.random(in: -1...1, using: &rng) })
        let s = (0..<n).map { _ in Float.random(in: 0.25...4, using: &rng) }
        let folded = try AWQFold.fold(
            scales: s, linears: [AWQ.Linear(name: "down", weight: down)],
            previous: .linear(name: "up", weight: up, bias: nil))
        guard case let .linear(_, up2, _) = folded.previous else { return XCTFail("linear expected") }
        let before = BLAS.matmul(down, up)
        let after = BLAS.matmul(folded.linears[0].weight, up2)
        for (a, b) in zip(before.data, after.data) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }

    func testShapeErrorsNameTheTensor() {
        let s = [Float](repeating: 1, count: 8)
        let o = AWQ.Linear(name: "blk.0.attn_output", weight: Matrix(rows: 8, cols: 8))
        // grouped-query attention: v has 4 rows, o 8 input columns
        let v = AWQFold.Previous.linear(name: "blk.0.attn_v", weight: Matrix(rows: 4, cols: 8), bias: nil)
        XCTAssertThrowsError(try AWQFold.fold(scales: s, linears: [o], previous: v)) {
            XCTAssertTrue("\($0)".contains("blk.0.attn_v"), "\($0)")
        }
        let norm = AWQFold.Previous.norm(name: "blk.0.attn_norm", weight: [1, 1], bias: nil)
        XCTAssertThrowsError(try AWQFold.fold(scales: s, linears: [o], previous: norm)) {
            XCTAssertTrue("\($0)".contains("blk.0.attn_norm"), "\($0)")
        }
        let bad = AWQ.Linear(name: "blk.0.attn_k", weight: Matrix(rows: 2, cols: 4))
        XCTAssertThrowsError(
            try AWQ.searchScales(
                [o, bad], hessian: Matrix(rows: 8, cols: 8), meanAbsActivation: s, recipe: QuantRecipe(bits: 4))
        ) { XCTAssertTrue("\($0)".contains("blk.0.attn_k"), "\($0)") }
        XCTAssertThrowsError(
            try AWQFold.fold(
                scales: [1, 0, 1, 1, 1, 1, 1, 1], linears: [o], previous: .norm(name: "nrm", weight: s, bias: nil))
        ) { XCTAssertEqual($0 as? AWQError, .invalidScale(tensor: "nrm", channel: 1, value: 0)) }
    }

    /// x * diag(v): each row times v.
    static func timesRowVector(_ x: Matrix, _ v: [Float]) -> Matrix {
        AWQ.scaleColumns(x, by: v)
    }
}
