import Int8GEMM
import Tensor
import XCTest

final class W8A8Tests: XCTestCase {
    func gaussian(_ rows: Int, _ cols: Int, _ g: inout SplitMix) -> Matrix {
        Matrix(rows: rows, cols: cols, data: (0..<(rows * cols)).map { _ in g.gaussian() })
    }

    func testQuantizeRowsScalesRoundsAndClamps() {
        // Row 0: max 2.54 gives scale 0.02; 0.03 / 0.02 = 1.5 ties to 2, 0.05 / 0.02 = 2.5 ties to 2.
        let x = Matrix(rows: 3, cols: 4, data: [2.54, -2.54, 0.03, 0.05, 0, 0, 0, 0, -1, 0.5, 0.25, 1])
        let q = W8A8.quantizeRows(x)
        XCTAssertEqual(q.scales[0], Float(2.54) / 127)
        XCTAssertEqual(Array(q.codes[0..<2]), [127, -127])
        XCTAssertEqual(Array(q.codes[2..<4]), [Int8((0.03 / q.scales[0]).rounded(.toNearestOrEven)), 2])
        XCTAssertEqual(q.scales[1], 0)
        XCTAssertEqual(Array(q.codes[4..<8]), [0, 0, 0, 0])
        XCTAssertEqual(Array(q.codes[8..<12]), [-127, 64, 32, 127])  // 63.5 and 31.75 round to 64 and 32
    }

    func testStoredScaleIsTheScaleUsed() {
        var g = SplitMix(state: 3)
        let w = gaussian(32, 100, &g)
        for storage in [W8A8.ScaleStorage.bf16, .f16] {
            let q = W8A8.quantizeRows(w, scales: storage)
            for r in 0..<q.rows {
                XCTAssertEqual(storage.round(q.scales[r]), q.scales[r])
                for c in 0..<q.cols {
                    let v = w[r, c] / q.scales[r]
                    XCTAssertEqual(q.codes[r * q.cols + c], Int8(min(max(v.rounded(.toNearestOrEven), -127), 127)))
                }
            }
        }
    }

    /// Every entry of y_int8 - X W^T lies within the bound the rounding errors allow:
    /// with x = sx qx + ex, |ex| <= sx / 2, and w likewise,
    /// |y - x.w| <= (sw / 2) |x|_1 + (sx / 2) |w|_1 + k sx sw / 4; and the relative
    /// Frobenius error on Gaussian data is about sqrt(2 / 12) max / 127, ~1.2% at k = 576.
    func testCloseToTheFloatProductWithinTheRoundingBound() throws {
        var g = SplitMix(state: 4)
        let (m, n, k) = (48, 96, 576)
        let x = gaussian(m, k, &g)
        let w = gaussian(n, k, &g)
        let bias = (0..<n).map { Float($0) / 10 }
        let wq = W8A8.quantizeRows(w)
        let xq = W8A8.quantizeRows(x)
        let y = try W8A8.linear(x, weight: wq, bias: bias)
        let exact = BLAS.linear(x, w)
        var err2: Double = 0
        var ref2: Double = 0
        for t in 0..<m {
            let x1 = (0..<k).reduce(Float(0)) { $0 + abs(x[t, $1]) }
            for o in 0..<n {
                let w1 = (0..<k).reduce(Float(0)) { $0 + abs(w[o, $1]) }
                let (sx, sw) = (xq.scales[t], wq.scales[o])
                let bound = sw / 2 * x1 + sx / 2 * w1 + Float(k) * sx * sw / 4
                let d = y[t, o] - bias[o] - exact[t, o]
                XCTAssertLessThanOrEqual(abs(d), bound * 1.001 + 1e-4, "[\(t), \(o)]")
                err2 += Double(d * d)
                ref2 += Double(exact[t, o] * exact[t, o])
            }
        }
        let rel = (err2 / ref2).squareRoot()
        print("W8A8 relative Frobenius error vs float, Gaussian \(m)x\(k) * \(k)x\(n): \(rel)")
        XCTAssertLessThan(rel, 0.02)
        XCTAssertGreaterThan(rel, 0.002)  // it did quantize
    }

    /// The integer path equals the float emulation of the same arithmetic: dequantized
    /// int8 X times dequantized int8 W, summed in Double, rounded once to Float.
    func testEqualsDoubleEmulationOfTheIntegerArithmetic() throws {
        var g = SplitMix(state: 5)
        for (m, n, k) in [(1, 1536, 576), (7, 33, 129), (16, 576, 1536)] {
            let x = gaussian(m, k, &g)
            let w = gaussian(n, k, &g)
            let wq = W8A8.quantizeRows(w)
            let xq = W8A8.quantizeRows(x)
            let y = try W8A8.linear(x, weight: wq)
            var worst: Float = 0
            for t in 0..<m {
                for o in 0..<n {
                    var s: Double = 0
                    var mag: Double = 0
                    for p in 0..<k {
                        let v =
                            Double(xq.scales[t]) * Double(xq.codes[t * k + p]) * Double(wq.scales[o])
                            * Double(wq.codes[o * k + p])
                        s += v
                        mag += abs(v)
                    }
                    let d = abs(Double(y[t, o]) - s)
                    // One Float rounding of the result, plus Double's own summation error.
                    let tol = Double(Float(s).ulp) + 1e-13 * mag
                    XCTAssertLessThanOrEqual(d, tol, "\(m)x\(n)x\(k) [\(t), \(o)]")
                    worst = max(worst, Float(d / max(Double(Float(s).ulp), .leastNonzeroMagnitude)))
                }
            }
            // Also the sgemm of the dequantized operands, up to Float summation.
            let fake = BLAS.linear(xq.dequantized(), wq.dequantized())
            var e2: Float = 0
            var r2: Float = 0
            for i in y.data.indices {
                e2 += (y.data[i] - fake.data[i]) * (y.data[i] - fake.data[i])
                r2 += fake.data[i] * fake.data[i]
            }
            XCTAssertLessThan((e2 / r2).squareRoot(), 1e-6, "\(m)x\(n)x\(k)")
            print("W8A8 vs Double emulation \(m)x\(n)x\(k): worst \(worst) ulp")
        }
    }
}
