import Foundation
import Int8GEMM
import ModelIO
import Models
import Tensor

/// The perplexity of a compressed-tensors-w8a8 output as a W8A8 runtime computes it: every
/// block linear through `W8A8.linear` (the int8 codes and scales as written, activations
/// quantized per token at run time, an exact int32 product on oneDNN, dequantized), the norms
/// as written (SmoothQuant's folded ones, fp16), embeddings, final norm and head in Float32.
enum W8A8Evaluation {
    static let source = "int8 W8A8 (oneDNN)"

    static func perplexity(
        model: LlamaModel, naming: TensorNaming, ids: [Int32], spec: JobSpec, linears: [String: QuantizedLinear],
        progress: ((Int, Int) -> Void)?
    ) throws -> BlockwisePerplexity.Result {
        let gemm = try Int8GEMM()
        gemm.threads = BLAS.threads
        var running: W8A8Kernel?
        // SmoothQuant's scales migrated from down into up, as the file holds them.
        let linears = try ScaleMigration.apply(linears)
        let result = try BlockwisePerplexity.evaluate(
            model: model, ids: ids, context: spec.evalContext, windows: spec.evalWindows,
            block: { b in
                try running?.check()
                var blk = try model.block(b)
                var weights: [Linear: Int8Rows] = [:]
                for name in blk.linearNames {
                    let t = LlamaTensorNames.linear(name, block: b, naming: naming)
                    guard let q = linears[t], let l = Linear(rawValue: name) else {
                        throw JobError("W8A8 evaluation: no quantized result for \(t)")
                    }
                    weights[l] = try W8A8Output.int8Rows(q)
                    if let f = q.foldedInputOp { try blk.setNorm(f.name, f.values, naming: naming) }
                }
                // The file's norms are fp16.
                blk.weights.attnNorm = blk.weights.attnNorm.map(roundToF16)
                blk.weights.ffnNorm = blk.weights.ffnNorm.map(roundToF16)
                let kernel = W8A8Kernel(weights: weights, gemm: gemm)
                blk.kernel = kernel
                running = kernel
                return blk
            }, progress: progress)
        try running?.check()
        return result
    }

    static func roundToF16(_ x: Float) -> Float { HalfConversion.f16ToF32(HalfConversion.f32ToF16(x)) }
}

/// A block's linears as `W8A8.linear` on one `Int8GEMM`. The forward pass cannot throw, so
/// a oneDNN failure is kept (the output is zeros) and thrown by `check()` after the block.
final class W8A8Kernel: LinearKernel, @unchecked Sendable {
    private let weights: [Linear: Int8Rows]
    private let gemm: Int8GEMM
    private let lock = NSLock()
    private var failure: (any Error)?

    init(weights: [Linear: Int8Rows], gemm: Int8GEMM) {
        self.weights = weights
        self.gemm = gemm
    }

    func apply(_ linear: Linear, block: Int, _ x: Matrix) -> Matrix? {
        guard let w = weights[linear] else { return nil }
        do { return try W8A8.linear(x, weight: w, gemm: gemm) } catch {
            lock.withLock { failure = failure ?? error }
            return Matrix(rows: x.rows, cols: w.rows)
        }
    }

    func check() throws {
        if let e = lock.withLock({ failure }) { throw JobError("W8A8 evaluation: \(e)") }
    }
}
