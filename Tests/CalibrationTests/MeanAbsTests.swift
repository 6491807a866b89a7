import Calibration
import Foundation
import Tensor
import TestSupport
import XCTest

/// AWQ's statistic: mean |x| per input channel from an exact fixed-point sum of |x|.
final class MeanAbsTests: XCTestCase {
    func testMeanAbsAgreesWithPlainReductionAndIsExactUnderMerge() throws {
        let x = StatisticsTests.matrix("A.X")
        let cuts = [0, 50, 96, 200, 333, 400, 512, 700, 768]
        let shards = try (0..<8).map { k -> ChannelStatistics in
            var c = ChannelStatistics(columns: x.cols)
            try c.add(x.rows(cuts[k]..<cuts[k + 1]))
            return c
        }
        func merged(_ order: [Int]) throws -> ChannelStatistics {
            var m = shards[order[0]]
            for k in order.dropFirst() { try m.merge(shards[k]) }
            return m
        }
        let a = try merged(Array(0..<8))
        let b = try merged([3, 7, 0, 5, 1, 6, 2, 4])
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.meanAbs!.map(\.bitPattern), b.meanAbs!.map(\.bitPattern))
        for c in 0..<x.cols {
            var s = 0.0
            for r in 0..<x.rows { s += Double(abs(x[r, c])) }
            XCTAssertEqual(Double(a.meanAbs![c]), s / Double(x.rows), accuracy: 1e-5 * max(1, s / Double(x.rows)))
        }
    }

    func testAPartWithoutSumsDropsThem() throws {
        let x = StatisticsTests.matrix("A.X")
        var with = ChannelStatistics(columns: x.cols)
        try with.add(x.rows(0..<100))
        var without = ChannelStatistics(columns: x.cols)
        try without.add(x.rows(100..<200))
        // As a result of a version that did not gather the sums.
        without = try ChannelStatistics(
            columns: without.columns, tokens: without.tokens, absMax: without.absMax, min: without.min,
            max: without.max)
        XCTAssertTrue(with.hasAbsSum)
        XCTAssertFalse(without.hasAbsSum)
        XCTAssertNil(without.meanAbs)
        var m = with
        try m.merge(without)
        XCTAssertNil(m.meanAbs, "the sum would not cover every token")
        XCTAssertEqual(m.tokens, 200)
        XCTAssertThrowsError(
            try ChannelStatistics(
                columns: x.cols, tokens: 1, absMax: with.absMax, min: with.min, max: with.max,
                absSumHigh: [0], absSumLow: [0]))
    }
}
