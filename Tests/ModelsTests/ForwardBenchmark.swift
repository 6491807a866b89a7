import Foundation
import ModelIO
import Models
import Tensor
import TestSupport
import XCTest

/// Opt-in measurement (KILN_BENCH=1, release): forward FLOP rate over a 512-token
/// window against plain sgemm on the same linear shapes, in the same process.
final class ForwardBenchmark: XCTestCase {
    func testForwardVersusSgemm() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["KILN_BENCH"] == "1", "set KILN_BENCH=1 to run")
        let m = try loadCausalLM(view: try openModel(Paths.smollm2))
        let ids = Array(
            try FixtureTensors(Paths.fixture("smollm2/fortunes_eval_ids.safetensors")).ints("ids").prefix(4096))
        let t = 512
        let window = Array(ids.prefix(t))
        let c = m.config
        print("openblas core: \(BLAS.coreName), threads: \(BLAS.threads)")

        func time(_ body: () throws -> Void) rethrows -> Double {
            let s = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9
        }
        func best(_ n: Int, _ body: () throws -> Void) rethrows -> Double {
            var b = Double.infinity
            for _ in 0..<n { b = min(b, try time(body)) }
            return b
        }

        // Linear FLOPs of one window (blocks + head over all 512 rows).
        var linearFlops = 0.0
        let b0 = try m.blockWeights(0)
        for w in [b0.q, b0.k, b0.v, b0.o, b0.gate, b0.up, b0.down] {
            linearFlops += 2 * Double(t * w.rows * w.cols) * Double(c.layerCount)
        }
        let headFlops = 2 * Double(t * c.vocabSize * c.hiddenSize)
        // Causal attention: QK^T and PV, about half of the full T x T.
        let attnFlops = 2 * 2 * Double(c.headCount * c.headDim) * Double(t * (t + 1) / 2) * Double(c.layerCount)
        let totalFlops = linearFlops + headFlops + attnFlops

        // Raw sgemm on the same shapes (one block's weights, repeated per layer, plus the head).
        let xs: [Int: Matrix] = [
            c.hiddenSize: Matrix(rows: t, cols: c.hiddenSize, repeating: 0.01),
            c.intermediateSize: Matrix(rows: t, cols: c.intermediateSize, repeating: 0.01),
        ]
        var sink: Float = 0
        let gemmTime = best(3) {
            for _ in 0..<c.layerCount {
                for w in [b0.q, b0.k, b0.v, b0.o, b0.gate, b0.up, b0.down] {
                    sink += BLAS.linear(xs[w.cols]!, w).data[0]
                }
            }
            sink += BLAS.linear(xs[c.hiddenSize]!, m.headWeight).data[0]
        }
        let gemmRate = (linearFlops + headFlops) / gemmTime

        var logitsSink: Float = 0
        let forwardTime = try best(3) { logitsSink += try m.forward(ids: window).data[0] }
        let blocksTime = try best(3) { logitsSink += try m.finalHidden(ids: window).data[0] }
        let normed = try m.finalHidden(ids: window)
        let headTime = best(3) { logitsSink += m.logits(normed).data[0] }
        let headGemm = best(3) { logitsSink += BLAS.linear(xs[c.hiddenSize]!, m.headWeight).data[0] }
        print(String(format: "head: logits() %.3f s, sgemm %.3f s", headTime, headGemm))
        let forwardRate = totalFlops / forwardTime
        let linearOnlyRate = (linearFlops + headFlops) / forwardTime

        // Stage breakdown of one block through the hook's timestamps.
        let block = try m.block(5)
        let h = m.embed(window)
        var stamps: [(String, UInt64)] = []
        var stageTotals: [String: Double] = [:]
        for _ in 0..<5 {
            stamps = [("start", DispatchTime.now().uptimeNanoseconds)]
            let out = block.forward(
                hidden: h,
                context: ForwardContext(hook: { stamps.append(($0.linears[0], DispatchTime.now().uptimeNanoseconds)) }))
            stamps.append(("end", DispatchTime.now().uptimeNanoseconds))
            logitsSink += out.data[0]
            for i in 1..<stamps.count {
                let name = "\(stamps[i - 1].0) -> \(stamps[i].0)"
                let v = Double(stamps[i].1 - stamps[i - 1].1) / 1e9
                stageTotals[name] = min(stageTotals[name] ?? .infinity, v)
            }
        }
        let g = { (x: Matrix, w: Matrix) in best(5) { logitsSink += BLAS.linear(x, w).data[0] } }
        let x576 = xs[c.hiddenSize]!
        let x1536 = xs[c.intermediateSize]!
        print(
            String(
                format: "gemm-only: qkv %.4f, o %.4f, gate+up %.4f, down %.4f s",
                g(x576, block.weights.q) + g(x576, block.weights.k) + g(x576, block.weights.v),
                g(x576, block.weights.o), g(x576, block.weights.gate) + g(x576, block.weights.up),
                g(x1536, block.weights.down)))
        for (k, v) in stageTotals.sorted(by: { $0.key < $1.key }) { print(String(format: "stage %@: %.4f s", k, v)) }

        var nllSink = 0.0
        let eightTime = try time {
            nllSink += try Perplexity.evaluate(model: m, ids: ids, contextLength: t, windows: 8).perplexity
        }

        print(
            String(
                format: "sgemm on forward shapes: %.3f s for %.1f GFLOP = %.1f GFLOP/s", gemmTime,
                (linearFlops + headFlops) / 1e9, gemmRate / 1e9))
        print(
            String(
                format:
                    "forward 512 tokens: %.3f s (blocks + final norm %.3f s); %.1f GFLOP incl. attention = %.1f GFLOP/s",
                forwardTime, blocksTime, totalFlops / 1e9, forwardRate / 1e9))
        print(
            String(
                format: "forward/sgemm FLOP-rate ratio: %.3f (counting attention FLOPs), %.3f (linear FLOPs only)",
                forwardRate / gemmRate, linearOnlyRate / gemmRate))
        print(String(format: "perplexity, 8 windows of 512: %.2f s (%.2f s/window)", eightTime, eightTime / 8))
        XCTAssertFalse(sink.isNaN || logitsSink.isNaN || nllSink.isNaN)
    }
}
