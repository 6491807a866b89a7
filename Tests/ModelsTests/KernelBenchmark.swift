import Foundation
import Models
import Tensor
import XCTest

/// Opt-in (KILN_BENCH=1) timings of the element-wise kernels and attention pieces.
final class KernelBenchmark: XCTestCase {
    func testKernelTimings() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["KILN_BENCH"] == "1", "set KILN_BENCH=1 to run")
        func best(_ n: Int = 5, _ body: () -> Void) -> Double {
            var b = Double.infinity
            for _ in 0..<n {
                let s = DispatchTime.now().uptimeNanoseconds
                body()
                b = min(b, Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
            }
            return b
        }
        var g = Matrix(rows: 512, cols: 1536, data: (0..<(512 * 1536)).map { Float($0 % 97) * 0.01 - 0.5 })
        let u = g
        print(
            String(
                format: "siluMul 512x1536: %.5f s",
                best {
                    var x = g
                    Kernels.siluMul(gate: &x, up: u)
                    g.data[0] += x.data[1] * 0
                }))
        let x576 = Matrix(rows: 512, cols: 576, data: (0..<(512 * 576)).map { Float($0 % 89) * 0.01 })
        let w = [Float](repeating: 1, count: 576)
        print(String(format: "rmsNorm 512x576: %.5f s", best { _ = Kernels.rmsNorm(x576, weight: w, eps: 1e-5) }))
        var row = [Float](repeating: 0, count: 512 * 512)
        for i in row.indices { row[i] = Float(i % 101) * 0.05 }
        print(
            String(
                format: "softmax 512 rows x 512: %.5f s",
                best {
                    var r = row
                    r.withUnsafeMutableBufferPointer { p in
                        for i in 0..<512 { Kernels.softmaxRow(p.baseAddress! + i * 512, count: 512) }
                    }
                }))
        print(
            String(
                format: "copy 512x512: %.5f s",
                best {
                    var r = row
                    r[0] += 1
                }))
        // Attention-shaped gemms: 9 heads x 4 row blocks, QK^T and PV.
        let q = x576
        let kv = Matrix(rows: 512, cols: 192, data: Array(x576.data.prefix(512 * 192)))
        var s = [Float](repeating: 0, count: 128 * 512)
        var o = Matrix(rows: 512, cols: 576)
        for threads in [1, 2] {
            let saved = BLAS.threads
            BLAS.threads = threads
            let t = best {
                q.data.withUnsafeBufferPointer { pq in
                    kv.data.withUnsafeBufferPointer { pk in
                        s.withUnsafeMutableBufferPointer { ps in
                            o.data.withUnsafeMutableBufferPointer { po in
                                for h in 0..<9 {
                                    for b in 0..<4 {
                                        let keys = (b + 1) * 128
                                        Kernels.sgemm(
                                            transB: true, m: 128, n: keys, k: 64,
                                            a: pq.baseAddress! + b * 128 * 576 + h * 64, lda: 576,
                                            b: pk.baseAddress! + (h / 3) * 64, ldb: 192, c: ps.baseAddress!, ldc: keys)
                                        Kernels.sgemm(
                                            m: 128, n: 64, k: keys, a: ps.baseAddress!, lda: keys,
                                            b: pk.baseAddress! + (h / 3) * 64, ldb: 192,
                                            c: po.baseAddress! + b * 128 * 576 + h * 64, ldc: 576)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            BLAS.threads = saved
            let flops: Double = 4.0 * 576.0 * 128.0 * 128.0 * 10.0
            print(
                String(
                    format: "attention gemms (1 layer), %d threads: %.5f s = %.1f GFLOP/s", threads, t, flops / t / 1e9)
            )
        }
    }
}
