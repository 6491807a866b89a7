import Foundation
import Models
import Tensor

/// Perplexity with the protocol of `kiln eval` (the text tokenized without special
/// tokens, non-overlapping windows of `context` tokens from the start, tokens 1..<context
/// scored), computed block by block over all windows at once: each block's weights are
/// read once, not once per window. Per window the operations are those of
/// `Perplexity.windowNLL`, so the figures agree with `kiln eval`.
public enum BlockwisePerplexity {
    public static func evaluate(
        model: LlamaModel, ids: [Int32], context: Int, windows n: Int,
        block: (Int) throws -> LlamaBlock,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> BlockwisePerplexity.Result {
        let available = ids.count / context
        guard n <= available else {
            throw JobError(
                "evaluation text has \(ids.count) tokens: \(available) windows of \(context), asked for \(n); lower --eval-windows"
            )
        }
        let windows = (0..<n).map { Array(ids[($0 * context)..<(($0 + 1) * context)]) }
        var hidden = windows.map { model.embed($0) }
        for b in 0..<model.blockCount {
            let blk = try block(b)
            for w in hidden.indices { hidden[w] = blk.forward(hidden: hidden[w], context: ForwardContext()) }
            progress?(b + 1, model.blockCount)
        }
        let sums = hidden.indices.map { w in
            Perplexity.nll(model: model, normed: model.normalize(hidden[w]), targets: Array(windows[w].dropFirst()))
        }
        return Result(windowNLLSums: sums, scoredTokensPerWindow: context - 1)
    }

    public struct Result: Sendable, Equatable {
        public var windowNLLSums: [Double]
        public var scoredTokensPerWindow: Int
        /// exp(sum NLL / scored tokens), as `PerplexityResult.perplexity`.
        public var perplexity: Double {
            Foundation.exp(windowNLLSums.reduce(0, +) / Double(max(scoredTokensPerWindow * windowNLLSums.count, 1)))
        }
    }
}
