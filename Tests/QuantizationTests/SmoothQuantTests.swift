import Foundation
import Quantization
import Tensor
import XCTest

/// SmoothQuant's fold on a norm -> linears pair with outlier channels: the float output is
/// unchanged, and the smoothed maxima are the formula's.
final class SmoothQuantTests: XCTestCase {
    /// Deterministic values in [-1, 1), a few input channels made outliers.
    func matrix(_ rows: Int, _ cols: Int, seed: Int, outliers: [Int: Float] = [:]) -> Matrix {
        var m = Matrix(rows: rows, cols: cols)
        for r in 0..<rows {
            for c in 0..<cols {
                let v = Float(((r * 131 + c * 71 + seed * 977) % 1009)) / 504.5 - 1
                m.data[r * cols + c] = v * (outliers[c] ?? 1)
            }
        }
        return m
    }

    func columnAbsMax(_ ms: [Matrix]) -> [Float] {
        var out = [Float](repeating: 0, count: ms[0].cols)
        for m in ms {
            for r in 0..<m.rows { for c in 0..<m.cols { out[c] = max(out[c], abs(m[r, c])) } }
        }
        return out
    }

    func testFoldKeepsTheOutputAndMovesTheRange() throws {
        let (n, tokens) = (16, 24)
        let hidden = matrix(tokens, n, seed: 1, outliers: [3: 40, 11: 25])
        let gamma = (0..<n).map { 0.5 + Float($0) / Float(n) }
        let eps: Float = 1e-5
        let x = Kernels.rmsNorm(hidden, weight: gamma, eps: eps)
        let weights = [matrix(8, n, seed: 2), matrix(5, n, seed: 3, outliers: [6: 3])]
        let xmax = columnAbsMax([x])
        for alpha in [0.5, 0.8] {
            let s = SmoothQuant.scales(activationAbsMax: xmax, weights: weights, alpha: alpha)
            let folded = SmoothQuant.fold(scales: s, weights: weights, norm: gamma)
            let xs = Kernels.rmsNorm(hidden, weight: folded.norm, eps: eps)
            for (w, ws) in zip(weights, folded.weights) {
                let y = BLAS.linear(x, w)
                let ys = BLAS.linear(xs, ws)
                for i in 0..<y.count {
                    XCTAssertEqual(ys.data[i], y.data[i], accuracy: 1e-4 * max(1, abs(y.data[i])), "alpha \(alpha)")
                }
            }
            // Smoothed maxima: activations (X W)^(1-alpha), weights (X W)^alpha per channel.
            let wmax = columnAbsMax(weights)
            let xsMax = columnAbsMax([xs])
            let wsMax = columnAbsMax(folded.weights)
            for j in 0..<n {
                let p = Double(xmax[j]) * Double(wmax[j])
                XCTAssertEqual(Double(xsMax[j]), pow(p, 1 - alpha), accuracy: 1e-4 * pow(p, 1 - alpha), "x \(j)")
                XCTAssertEqual(Double(wsMax[j]), pow(p, alpha), accuracy: 1e-4 * pow(p, alpha), "w \(j)")
            }
            // The outlier channels' activation range shrinks the most.
            let ratio = (0..<n).map { xsMax[$0] / xmax[$0] }
            XCTAssertLessThan(ratio[3], ratio[0])
            XCTAssertLessThan(ratio[11], ratio[0])
        }
    }

    func testDeadChannelsGetFiniteScales() {
        let w = Matrix(rows: 2, cols: 3, data: [0, 1, 2, 0, -1, 0.5])
        let s = SmoothQuant.scales(activationAbsMax: [0, 4, 0], weights: [w], alpha: 0.8)
        XCTAssertTrue(s.allSatisfy { $0.isFinite && $0 > 0 }, "\(s)")
    }
}
