import Calibration
import Foundation
import Tensor
import XCTest

/// Opt-in measurement (KILN_BENCH=1, release): what the exact fixed-point add costs on top of
/// the ssyrk that builds each batch's Gram matrix, at SmolLM2's widths and a 512-token window,
/// one BLAS thread as tasks run.
final class StatisticsBenchmark: XCTestCase {
    func testFixedPointAddVersusSyrk() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["KILN_BENCH"] == "1", "set KILN_BENCH=1 to run")
        let saved = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        func time(_ body: () throws -> Void) rethrows -> Double {
            var best = Double.infinity
            for _ in 0..<5 {
                let s = DispatchTime.now().uptimeNanoseconds
                try body()
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
            }
            return best
        }
        for n in [576, 1536] {
            var seed: UInt64 = 1
            let x = Matrix(
                rows: 512, cols: n,
                data: (0..<512 * n).map { _ in
                    seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    return Float(Int64(bitPattern: seed) >> 40) * 0x1p-21
                })
            var g = Matrix(rows: n, cols: n)
            let syrk = time { BLAS.syrkTransposed(x, into: &g) }
            var acc = HessianAccumulator(columns: n)
            let add = try time { try acc.add(x) }
            print(
                String(
                    format:
                        "statistics n=%d, 512 tokens: ssyrk %.2f ms; whole add %.2f ms (checks, fixed-point add: %.2f ms, %.2f of ssyrk)",
                    n, syrk * 1e3, add * 1e3, (add - syrk) * 1e3, (add - syrk) / syrk))
        }
    }
}
