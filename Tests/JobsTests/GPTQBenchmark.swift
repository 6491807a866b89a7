import Calibration
import Foundation
import ModelIO
import Models
import Quantization
import Tensor
import TestSupport
import XCTest

/// Opt-in measurement (KILN_BENCH=1, release): the GPTQ phase's FLOP rate as a ratio of
/// sgemm's on the same shapes, in the same process. Real SmolLM2 block-0 weights and
/// Hessians gathered from 8 calibration windows; one BLAS thread, as tasks run.
///
/// GPTQ's arithmetic, counted as the algorithm needs it: the error updates (every
/// column's error reaches every later column of every row: m * n^2 flops as
/// multiply-adds counted twice over half the triangle), plus the dampened Hessian's
/// Cholesky, inverse and Cholesky again (4/3 n^3). The baseline is sgemm of [m, n] by
/// [n, n] (2 m n^2 flops), i.e. what the same update would cost as one dense product.
final class GPTQBenchmark: XCTestCase {
    func testGPTQPhaseVersusSgemm() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["KILN_BENCH"] == "1", "set KILN_BENCH=1 to run")
        let model = try loadCausalLM(view: try openModel(try Assets.smollm2()))
        let tokenizer = try loadTokenizer(try openModel(try Assets.smollm2()).tokenizer!)
        let tokens = try Sampler.tokens(file: Assets.calib) { tokenizer.encode($0) }
        let windows = try Sampler.windows(tokens: tokens, count: 8, length: 512, kind: .random, seed: 0)
        let blk = try model.block(0)
        var stats = LlamaBlock.linearGroups.map { LinearStatistics(name: $0[0], columns: blk.weight($0[0])!.cols) }
        for w in windows {
            _ = blk.forward(
                hidden: model.embed(w),
                context: ForwardContext(hook: { li in
                    let g = LlamaBlock.linearGroups.firstIndex(of: li.linears)!
                    try! stats[g].add(li.input)
                }))
        }
        // One BLAS thread, as every task runs (LocalExecutor, workers).
        let saved = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = saved }
        print("openblas core: \(BLAS.coreName), threads: \(BLAS.threads)")
        func time(_ body: () throws -> Void) rethrows -> Double {
            let s = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9
        }
        let recipes: [(String, QuantRecipe)] = [
            (
                "gptq 4-bit g64 act-order static",
                QuantRecipe(bits: 4, symmetric: true, groupSize: 64, actOrder: true, staticGroups: true)
            ),
            ("gguf q4_0", QuantRecipe.gguf(.ggufQ4_0)),
        ]
        for (label, recipe) in recipes {
            var gptqTime = 0.0
            var gemmTime = 0.0
            var flops = 0.0
            var gemmFlops = 0.0
            var digest = Digest()
            var factorTime = 0.0
            for (g, names) in LlamaBlock.linearGroups.enumerated() {
                let h = stats[g].finalHessian()
                for name in names {
                    let w = blk.weight(name)!
                    let m = Double(w.rows)
                    let n = Double(w.cols)
                    var best = Double.infinity
                    for _ in 0..<3 {
                        best = min(best, try time { _ = try GPTQ.quantize(w, hessian: h, recipe: recipe, name: name) })
                    }
                    digest.add(try GPTQ.quantize(w, hessian: h, recipe: recipe, name: name))
                    gptqTime += best
                    factorTime += try Self.factorTime(h, percentDamp: Float(recipe.percentDamp))
                    flops += m * n * n + 4.0 / 3.0 * n * n * n
                    var gb = Double.infinity
                    for _ in 0..<3 { gb = min(gb, time { _ = BLAS.matmul(w, h) }) }
                    gemmTime += gb
                    gemmFlops += 2 * m * n * n
                }
            }
            let rate = flops / gptqTime / 1e9
            let base = gemmFlops / gemmTime / 1e9
            print(
                String(
                    format:
                        "GPTQ %@: block 0 (7 linears) %.3f s, %.1f GFLOP/s; sgemm same shapes %.1f GFLOP/s; ratio %.2f",
                    label, gptqTime, rate, base, rate / base))
            print(
                String(
                    format: "GPTQ %@: of which LAPACK (potrf, potri, potrf) %.3f s, the rest %.3f s", label,
                    factorTime, gptqTime - factorTime))
            print("GPTQ \(label): output digest \(String(digest.value, radix: 16))")
        }
    }
}

extension GPTQBenchmark {
    /// Best of 3: the dampened Hessian's Cholesky, inverse and Cholesky again, as GPTQ runs them.
    static func factorTime(_ h: Matrix, percentDamp: Float) throws -> Double {
        let n = h.rows
        var best = Double.infinity
        for _ in 0..<3 {
            var a = h.data
            var diag = 0.0
            for i in 0..<n { diag += Double(a[i * n + i]) }
            let damp = percentDamp * Float(diag / Double(n))
            for i in 0..<n { a[i * n + i] += damp }
            let start = DispatchTime.now().uptimeNanoseconds
            try a.withUnsafeMutableBufferPointer { p in
                try LAPACK.choleskyUpper(columnMajor: p.baseAddress!, n: n)
                try LAPACK.inverseFromCholeskyUpper(columnMajor: p.baseAddress!, n: n)
                try LAPACK.choleskyUpper(columnMajor: p.baseAddress!, n: n)
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return best
    }
}

/// FNV-1a over every output bit of GPTQ results (codes, parameters, values, losses, total
/// loss), so a speed change can be checked for identical results on real data.
struct Digest {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ r: GPTQResult) {
        let w = r.weight
        w.codes.forEach { mix(UInt64($0)) }
        let scales: [Float] = w.scales
        let zeros: [Float] = w.zeros
        scales.forEach { mix(UInt64($0.bitPattern)) }
        zeros.forEach { mix(UInt64($0.bitPattern)) }
        w.dequantized.data.forEach { mix(UInt64($0.bitPattern)) }
        r.losses.data.forEach { mix(UInt64($0.bitPattern)) }
        mix(r.totalLoss.bitPattern)
        mix(UInt64(r.damp.bitPattern))
    }

    mutating func mix(_ x: UInt64) {
        value = (value ^ x) &* 0x100_0000_01b3
    }
}
