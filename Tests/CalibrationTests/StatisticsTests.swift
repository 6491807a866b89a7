import Calibration
import Foundation
import Tensor
import TestSupport
import XCTest

final class StatisticsTests: XCTestCase {
    static let fixture = try! FixtureTensors(Paths.fixture("gptq/gptq_reference.safetensors"))
    static func matrix(_ name: String) -> Matrix {
        let s = fixture.shape(name)
        return Matrix(rows: s[0], cols: s[1], data: fixture.floats(name))
    }

    /// The reference's H (4 equal add_batch calls of token rows) from our accumulator.
    func testHessianMatchesReference() throws {
        for pair in ["A", "B"] {
            let x = Self.matrix("\(pair).X")
            let ref = Self.matrix("\(pair).H")
            var acc = HessianAccumulator(columns: x.cols)
            let batch = x.rows / 4
            for b in 0..<4 { try acc.add(x.rows((b * batch)..<((b + 1) * batch)), name: "\(pair).X") }
            XCTAssertEqual(acc.samples, 4)
            XCTAssertEqual(acc.tokens, x.rows)
            let h = acc.hessian()
            let n = x.cols
            var worst: Float = 0
            for i in 0..<n {
                for j in 0..<n {
                    let denom = (ref[i, i] * ref[j, j]).squareRoot()
                    if denom == 0 {
                        XCTAssertEqual(h[i, j], 0)
                        XCTAssertEqual(ref[i, j], 0)
                        continue
                    }
                    worst = max(worst, abs(h[i, j] - ref[i, j]) / denom)
                }
            }
            print("Hessian \(pair): worst |H - Href| / sqrt(Hii Hjj) = \(worst)")
            XCTAssertLessThan(worst, 2e-6, pair)
            if pair == "B" {
                XCTAssertEqual(h[7, 7], 0)
                XCTAssertEqual(h[200, 200], 0)
            }
            // token normalization: 2/T instead of 2/samples
            let ht = acc.hessian(normalization: .tokens)
            XCTAssertEqual(ht[0, 0], Float(acc.gram()[0] * 2 / Double(x.rows)))
        }
    }

    func testMergeIsBitIdenticalInAnyGrouping() throws {
        let x = Self.matrix("A.X")
        // 8 shards of uneven sizes
        let cuts = [0, 50, 96, 200, 333, 400, 512, 700, 768]
        var shards: [LinearStatistics] = []
        for k in 0..<8 {
            var s = LinearStatistics(name: "A.in", columns: x.cols)
            try s.add(x.rows(cuts[k]..<cuts[k + 1]))
            shards.append(s)
        }
        let sequential = try LinearStatistics.merged(shards)
        let reversed = try LinearStatistics.merged(shards.reversed())
        func pair(_ a: LinearStatistics, _ b: LinearStatistics) throws -> LinearStatistics {
            var m = a
            try m.merge(b)
            return m
        }
        let tree = try pair(
            try pair(try pair(shards[0], shards[1]), try pair(shards[2], shards[3])),
            try pair(try pair(shards[4], shards[5]), try pair(shards[6], shards[7])))
        let shuffled = try LinearStatistics.merged([3, 7, 0, 5, 1, 6, 2, 4].map { shards[$0] })
        // one accumulator fed the same batches in order
        var direct = LinearStatistics(name: "A.in", columns: x.cols)
        for k in 0..<8 { try direct.add(x.rows(cuts[k]..<cuts[k + 1])) }
        let bits = sequential.finalHessian().data.map(\.bitPattern)
        for other in [reversed, tree, shuffled, direct] {
            XCTAssertEqual(other, sequential)
            XCTAssertEqual(other.finalHessian().data.map(\.bitPattern), bits)
            XCTAssertEqual(other.hessian.gram().map(\.bitPattern), sequential.hessian.gram().map(\.bitPattern))
        }
        XCTAssertEqual(sequential.tokens, 768)
        XCTAssertEqual(sequential.samples, 8)
    }

    func testChannelStatistics() throws {
        let x = Matrix(rows: 3, cols: 2, data: [1, -5, -2, 4, 0.5, 3])
        var a = ChannelStatistics(columns: 2)
        try a.add(x.rows(0..<2))
        var b = ChannelStatistics(columns: 2)
        try b.add(x.rows(2..<3))
        var m = b
        try m.merge(a)
        XCTAssertEqual(m.min, [-2, -5])
        XCTAssertEqual(m.max, [1, 4])
        XCTAssertEqual(m.absMax, [2, 5])
        XCTAssertEqual(m.tokens, 3)
        var whole = ChannelStatistics(columns: 2)
        try whole.add(x)
        XCTAssertEqual(whole, m)
        var empty = ChannelStatistics(columns: 2)
        try empty.merge(m)
        XCTAssertEqual(empty, m)
    }

    /// The eight-lane reduction against a plain one on real activations (the reference
    /// layer's X), with a column count that leaves a tail (13) and one that does not.
    func testChannelStatisticsAgreeWithPlainReduction() throws {
        let full = Self.matrix("A.X")
        for cols in [13, 256] {
            let x = full.columns(0..<cols)
            var s = ChannelStatistics(columns: cols)
            try s.add(x.rows(0..<5))
            try s.add(x.rows(5..<x.rows))
            for c in 0..<cols {
                let column = (0..<x.rows).map { x[$0, c] }
                XCTAssertEqual(s.min[c], column.min()!, "column \(c)")
                XCTAssertEqual(s.max[c], column.max()!, "column \(c)")
                XCTAssertEqual(s.absMax[c], column.map(\.magnitude).max()!, "column \(c)")
            }
        }
        // A non-finite value is named, in a SIMD lane and in the tail.
        for (row, col, v) in [(3, 5, Float.nan), (1, 12, -Float.infinity)] {
            var x = full.columns(0..<13).rows(0..<8)
            x[row, col] = v
            var s = ChannelStatistics(columns: 13)
            XCTAssertThrowsError(try s.add(x)) {
                guard case let .nonFiniteActivation(_, r, c, _)? = $0 as? StatisticsError else {
                    return XCTFail("\($0)")
                }
                XCTAssertEqual([r, c], [row, col])
            }
            XCTAssertEqual(s.tokens, 0)
        }
    }

    func testCodableRoundTripAndRawArrays() throws {
        var s = LinearStatistics(name: "B.in", columns: 320)
        try s.add(Self.matrix("B.X").rows(0..<100))
        let data = try JSONEncoder().encode(s)
        let back = try JSONDecoder().decode(LinearStatistics.self, from: data)
        XCTAssertEqual(back, s)
        let h = s.hessian
        let raw = try HessianAccumulator(
            columns: h.columns, samples: h.samples, tokens: h.tokens, high: h.high, low: h.low)
        XCTAssertEqual(raw, h)
        XCTAssertThrowsError(try HessianAccumulator(columns: 3, samples: 1, tokens: 1, high: [0], low: [0]))
    }

    func testErrorsNameTheInput() throws {
        var s = LinearStatistics(name: "blk.2.ffn_down.input", columns: 4)
        var x = Matrix(rows: 3, cols: 4, repeating: 1)
        x[2, 1] = .nan
        XCTAssertThrowsError(try s.add(x)) {
            guard case let .nonFiniteActivation(name, row, column, _)? = $0 as? StatisticsError else {
                return XCTFail("\($0)")
            }
            XCTAssertEqual(name, "blk.2.ffn_down.input")
            XCTAssertEqual(row, 2)
            XCTAssertEqual(column, 1)
        }
        XCTAssertEqual(s.tokens, 0)  // nothing half-added
        XCTAssertThrowsError(try s.add(Matrix(rows: 2, cols: 5))) {
            XCTAssertEqual($0 as? StatisticsError, .columnMismatch(name: "blk.2.ffn_down.input", expected: 4, got: 5))
        }
        var big = HessianAccumulator(columns: 1)
        XCTAssertThrowsError(try big.add(Matrix(rows: 1, cols: 1, data: [3e9])))  // 9e18 > 2^62
    }

    func testFixedPointHandlesTinyAndNegativeValues() throws {
        // negative off-diagonals, tiny and subnormal-scale values, exact cancellation
        let x = Matrix(rows: 2, cols: 3, data: [1e-10, -3, 0.75, 2e-25, 3, -0.75])
        var a = HessianAccumulator(columns: 3)
        try a.add(x.rows(0..<1))
        var b = HessianAccumulator(columns: 3)
        try b.add(x.rows(1..<2))
        let g = try a.merging(b).gram()
        XCTAssertEqual(g[1 * 3 + 1], 18)
        XCTAssertEqual(g[1 * 3 + 2], -4.5)
        // each batch entry is the Float32 ssyrk product, summed exactly (6e-25 is below the 2^-64 grid)
        XCTAssertEqual(g[0 * 3 + 1], Double(Float(1e-10) * Float(-3)), accuracy: 0x1p-64)
        XCTAssertEqual(g[0], Double(Float(1e-10) * Float(1e-10)), accuracy: 1e-19)
    }
}
