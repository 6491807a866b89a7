// Internal API (@testable): debug builds only (release test builds are not compiled for testing).
#if DEBUG
import Foundation
import Tensor
import XCTest

@testable import Calibration

/// The vectorized row add against the scalar `Fixed128.accumulate` it replaces in the hot loop.
final class FixedPointTests: XCTestCase {
    /// `addend` is `accumulate`'s conversion, over a spread of every exponent, sign and significand
    /// (the full 2^32 sweep passed once outside the suite; it takes too long for every run).
    func testAddendMatchesAccumulateConversion() {
        var patterns: [UInt32] = [0, 0x8000_0000, 1, 0x8000_0001, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000]
        for e in UInt32(0)...255 {
            for sign in [UInt32(0), 0x8000_0000] {
                for m in [UInt32(0), 1, 2, 3, 0x40_0000, 0x40_0001, 0x7F_FFFF, 0x55_5555, 0x2A_AAAB] {
                    patterns.append(sign | e << 23 | m)
                }
            }
        }
        for b in stride(from: UInt32(0), to: UInt32.max - 65_521, by: 65_521) { patterns.append(b) }
        for b in patterns {
            let v = Float(bitPattern: b)
            var high: Int64 = 0
            var low: UInt64 = 0
            let ok = Fixed128.accumulate(v, high: &high, low: &low)
            let a = Fixed128.addend(v)
            XCTAssertEqual(a.bad == 0, ok, "\(v) (bits \(b))")
            if ok {
                XCTAssertEqual(a.high, high, "\(v) (bits \(b))")
                XCTAssertEqual(a.low, low, "\(v) (bits \(b))")
            }
        }
    }

    /// Same sums as the scalar loop, carries and borrows included; on a failure, the same first
    /// index and the same entries left behind.
    func testRowMatchesScalarLoop() {
        var values: [Float] = [0.75, -0.75, 1e-30, -1e-30, 0x1p-64, -0x1p-65, 3e9, -3e9, 0x1.fffffep61, -0x1p61]
        var seed: UInt64 = 7
        for _ in 0..<200 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            values.append(Float(bitPattern: UInt32(truncatingIfNeeded: seed >> 33) & 0xDEFF_FFFF))
        }
        func scalar(_ g: [Float], _ high: inout [Int64], _ low: inout [UInt64]) -> Int? {
            for j in g.indices where !Fixed128.accumulate(g[j], high: &high[j], low: &low[j]) { return j }
            return nil
        }
        func row(_ g: [Float], _ high: inout [Int64], _ low: inout [UInt64]) -> Int? {
            g.withUnsafeBufferPointer { gp in
                high.withUnsafeMutableBufferPointer { hp in
                    low.withUnsafeMutableBufferPointer { lp in
                        Fixed128.accumulateRow(
                            gp.baseAddress!, count: gp.count, high: hp.baseAddress!, low: lp.baseAddress!)
                    }
                }
            }
        }
        let n = values.count
        // starting points: zero, negative, near the top of the range (so some adds overflow)
        let starts: [(Int64, UInt64)] = [
            (0, 0), (-1, UInt64.max), (-5, 3), (Int64.max - 1, UInt64.max - 2), (Int64.min + 1, 1),
        ]
        for (h0, l0) in starts {
            for rotate in [0, 3, 17] {
                let g = Array(values[rotate...] + values[..<rotate])
                var h1 = [Int64](repeating: h0, count: n)
                var l1 = [UInt64](repeating: l0, count: n)
                var h2 = h1
                var l2 = l1
                XCTAssertEqual(row(g, &h2, &l2), scalar(g, &h1, &l1))
                XCTAssertEqual(h2, h1)
                XCTAssertEqual(l2, l1)
            }
        }
        // a non-finite value mid-row
        var g = values.filter { $0.isFinite && $0.magnitude < 0x1p61 }
        g.insert(.nan, at: 5)
        var h1 = [Int64](repeating: 0, count: g.count)
        var l1 = [UInt64](repeating: 0, count: g.count)
        var h2 = h1
        var l2 = l1
        XCTAssertEqual(row(g, &h2, &l2), 5)
        XCTAssertEqual(scalar(g, &h1, &l1), 5)
        XCTAssertEqual(h2, h1)
        XCTAssertEqual(l2, l1)
    }
}
#endif
