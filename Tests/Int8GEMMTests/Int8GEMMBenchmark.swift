import Foundation
import Int8GEMM
import Tensor
import XCTest

/// Speed of Int8GEMM against OpenBLAS sgemm on the same shapes, in the same process and at
/// the same thread count. Prints only (timings on a shared machine are not assertions);
/// INT8_BENCH_REPS raises the repetitions (default 5, best taken).
final class Int8GEMMBenchmark: XCTestCase {
    func best(_ reps: Int, _ body: () throws -> Void) rethrows -> Double {
        var t = Double.infinity
        for _ in 0..<reps {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            t = min(t, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return t
    }

    func testRatioAgainstSgemm() throws {
        let reps = Int(ProcessInfo.processInfo.environment["INT8_BENCH_REPS"] ?? "") ?? 5
        let savedThreads = BLAS.threads
        defer { BLAS.threads = savedThreads }
        var g = SplitMix(state: 9)
        for threads in [1, 2] {
            BLAS.threads = threads
            let gemm = try Int8GEMM()
            gemm.threads = threads
            // [512 x 576] x [576 x 1536] (q/gate-like) and [512 x 1536] x [1536 x 576] (down-like).
            for (m, k, n) in [(512, 576, 1536), (512, 1536, 576)] {
                let a = (0..<(m * k)).map { _ in Int8.random(in: -127...127, using: &g) }
                let b = (0..<(n * k)).map { _ in Int8.random(in: -127...127, using: &g) }
                let x = Matrix(rows: m, cols: k, data: a.map(Float.init))
                let w = Matrix(rows: n, cols: k, data: b.map(Float.init))
                var c = Matrix(rows: m, cols: n)
                _ = try gemm.multiply(a: a, b: b, m: m, n: n, k: k)  // primitive creation, not timed
                let tInt = try best(reps) { _ = try gemm.multiply(a: a, b: b, m: m, n: n, k: k) }
                let tF32 = best(reps) { BLAS.gemm(x, w, transB: true, into: &c) }
                let gflop = 2 * Double(m * n * k) / 1e9
                print(
                    String(
                        format:
                            "Int8GEMM %dx%dx%d threads %d: int8 %.2f ms (%.0f GOP/s), sgemm %.2f ms (%.0f GFLOP/s), sgemm/int8 time ratio %.2f [openblas %@, onednn %@]",
                        m, k, n, threads, tInt * 1e3, gflop / tInt, tF32 * 1e3, gflop / tF32, tF32 / tInt,
                        BLAS.coreName, try gemm.implementation(m: m, n: n, k: k)))
            }
        }
    }
}
