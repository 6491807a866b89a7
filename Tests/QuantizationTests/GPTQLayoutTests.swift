import Quantization
import Tensor
import XCTest

/// GPTQ moves data between row-major and column-major layouts in tiles (16 rows of floats,
/// 8 x 8 bytes); shapes that are not whole tiles take the edge paths. On a 13 x 100 slice
/// of the reference fixture's A pair, every stored code must give exactly its stored value,
/// and the losses must add up to the total.
final class GPTQLayoutTests: XCTestCase {
    func testUnevenShapesKeepCodesValuesAndLossesTogether() throws {
        let fx = GPTQReferenceTests.self
        let wFull = fx.matrix("A.W")
        let hFull = fx.matrix("A.H")
        let rows = 13
        let n = 100
        XCTAssertGreaterThanOrEqual(wFull.rows, rows)
        XCTAssertGreaterThanOrEqual(wFull.cols, n)
        let w = Matrix(rows: rows, cols: n, data: (0..<rows * n).map { wFull[$0 / n, $0 % n] })
        let h = Matrix(rows: n, cols: n, data: (0..<n * n).map { hFull[$0 / n, $0 % n] })
        let recipes = [
            QuantRecipe(bits: 4, symmetric: true, groupSize: 24, actOrder: true, staticGroups: true),
            QuantRecipe(bits: 3, symmetric: false, groupSize: 24, actOrder: true, staticGroups: false),
            QuantRecipe(bits: 4, symmetric: false, groupSize: 24, actOrder: false, staticGroups: false),
            QuantRecipe(bits: 8, symmetric: true, groupSize: -1, actOrder: true, staticGroups: false),
        ]
        for recipe in recipes {
            let result = try GPTQ.quantize(w, hessian: h, recipe: recipe, name: "A.W")
            let qw = result.weight
            let grid = recipe.makeGrid()
            var mismatches = 0
            for r in 0..<rows {
                for c in 0..<n {
                    let p = qw.parameters(row: r, group: Int(qw.groupIndex[c]))
                    if grid.value(qw.codes[r * n + c], p).bitPattern != qw.dequantized[r, c].bitPattern {
                        mismatches += 1
                    }
                }
            }
            XCTAssertEqual(mismatches, 0, "\(recipe)")
            XCTAssertTrue(result.losses.data.allSatisfy { $0 >= 0 && $0.isFinite }, "\(recipe)")
            let sum = result.losses.data.reduce(0.0) { $0 + Double($1) }
            XCTAssertEqual(result.totalLoss, sum, accuracy: 1e-9 * max(sum, 1), "\(recipe)")
            XCTAssertGreaterThan(result.totalLoss, 0, "\(recipe)")
            if recipe.actOrder, let perm = qw.permutation, let inv = qw.inversePermutation {
                XCTAssertEqual(perm.indices.map { Int(inv[Int(perm[$0])]) }, Array(0..<n))
            }
        }
    }
}
