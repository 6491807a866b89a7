import Foundation
import Tensor

/// Result of a perplexity evaluation.
public struct PerplexityResult: Sendable, Equatable {
    /// Sum of negative log-likelihoods (nats) of the scored tokens of each window.
    public var windowNLLSums: [Double]
    /// Tokens scored per window (contextLength - 1).
    public var scoredTokensPerWindow: Int

    public var scoredTokens: Int { scoredTokensPerWindow * windowNLLSums.count }
    public var meanNLL: Double { windowNLLSums.reduce(0, +) / Double(max(scoredTokens, 1)) }
    /// exp(sum NLL / scored tokens).
    public var perplexity: Double { Foundation.exp(meanNLL) }
}

/// Perplexity over non-overlapping windows (no I/O, no state).
///
/// Protocol: windows of `contextLength` tokens from the start of `ids`; in each window
/// tokens 1..<contextLength are scored given the tokens before them in the same window;
/// PPL = exp(sum NLL / ((contextLength - 1) * windows)).
public enum Perplexity {
    public struct Progress: Sendable {
        public var window: Int  // just finished, 0-based
        public var windows: Int
        public var windowNLLSum: Double
        public var runningPerplexity: Double
    }

    /// - Parameters:
    ///   - windows: how many windows (nil: every whole window in `ids`).
    ///   - headChunk: token rows per output-head matmul (bounds the logits buffer to
    ///     headChunk x vocab floats).
    public static func evaluate(
        model: any CausalLM, ids: [Int32], contextLength: Int = 512, windows: Int? = nil,
        headChunk: Int = 128, progress: ((Progress) -> Void)? = nil
    ) throws -> PerplexityResult {
        precondition(contextLength >= 2 && headChunk >= 1)
        let available = ids.count / contextLength
        let n = windows ?? available
        guard n <= available else {
            throw ModelError(
                file: "perplexity",
                "\(n) windows of \(contextLength) tokens need \(n * contextLength) tokens, have \(ids.count)")
        }
        var sums: [Double] = []
        for w in 0..<n {
            let window = Array(ids[(w * contextLength)..<((w + 1) * contextLength)])
            let s = try windowNLL(model: model, window: window, headChunk: headChunk)
            sums.append(s)
            if let progress {
                let r = PerplexityResult(windowNLLSums: sums, scoredTokensPerWindow: contextLength - 1)
                progress(Progress(window: w, windows: n, windowNLLSum: s, runningPerplexity: r.perplexity))
            }
        }
        return PerplexityResult(windowNLLSums: sums, scoredTokensPerWindow: contextLength - 1)
    }

    /// Sum of NLL of tokens 1..<window.count given their prefixes in the window.
    public static func windowNLL(model: any CausalLM, window: [Int32], headChunk: Int = 128) throws -> Double {
        let normed = try model.finalHidden(ids: window)
        return nll(model: model, normed: normed, targets: Array(window.dropFirst()), headChunk: headChunk)
    }

    /// NLL sum of `targets[t]` under the logits of normed row t (t < targets.count), with
    /// the head applied headChunk rows at a time.
    public static func nll(model: any CausalLM, normed: Matrix, targets: [Int32], headChunk: Int = 128) -> Double {
        precondition(targets.count <= normed.rows)
        var total = 0.0
        var r0 = 0
        while r0 < targets.count {
            let r1 = min(r0 + headChunk, targets.count)
            let logits = model.logits(normed.rows(r0..<r1))
            let vocab = logits.cols
            logits.data.withUnsafeBufferPointer { p in
                for r in 0..<(r1 - r0) {
                    let row = p.baseAddress! + r * vocab
                    let target = Int(targets[r0 + r])
                    precondition(target >= 0 && target < vocab, "target id \(target) outside vocabulary of \(vocab)")
                    total += Kernels.logSumExp(row, count: vocab) - Double(row[target])
                }
            }
            r0 = r1
        }
        return total
    }
}
