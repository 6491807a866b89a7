import Foundation
import Tensor

/// AWQ, activation-aware weight quantization (Lin et al.), as pure functions on one
/// linear group (the linears that read the same input: q/k/v, gate/up, o, down).
///
/// Follows the scale search of AutoAWQ (`auto_scale`, `_compute_best_scale`) and of
/// llm-compressor's AWQModifier without duo scaling:
///
/// 1. For alpha = i/20, i < 20: s = mean|x|^alpha, floored at 1e-4 (a channel that never
///    fires would otherwise get s = 0), then normalised to s / sqrt(max(s) * min(s)).
///    alpha = 0 gives s = 1, plain RTN.
/// 2. Every linear's W * diag(s) is quantized with RTN on the recipe's grid; the effective
///    weight is Q * diag(1/s).
/// 3. The loss is the group's output error. The references run the block forward on the
///    calibration batch; Kiln already holds H = 2/T X^T X of the group's input, so the loss
///    is sum_k trace((W_k - Q_k diag(1/s)) H (...)^T) / 2 (`OutputError.fromHessian`, equal to
///    the per-token squared output error). It is computed in the scaled domain,
///    trace((W_k s - Q_k) H' (...)^T) / 2 with H' = diag(1/s) H diag(1/s), the Hessian of the
///    scaled input x / s, which is also what GPTQ is then handed.
/// 4. The lowest loss wins; ties go to the smallest alpha (the references' strict `<`).
///
/// Clipping (`AWQClip`) and folding s into the previous op (`AWQFold`) are separate steps;
/// `AWQ.prepare` chains the three for a job.
public enum AWQ {
    /// One linear of a group: its name (for errors) and weight [out, in].
    public struct Linear: Sendable, Equatable {
        public var name: String
        public var weight: Matrix

        public init(name: String, weight: Matrix) {
            self.name = name
            self.weight = weight
        }
    }

    /// The search grid. The defaults are AutoAWQ's.
    public struct Options: Sendable, Equatable {
        /// Candidate exponents (AutoAWQ: i / 20, i < 20).
        public var alphas: [Float]
        /// Lower bound on mean|x|^alpha before normalising (AutoAWQ: 1e-4).
        public var floor: Float

        public init(alphas: [Float] = Options.defaultAlphas, floor: Float = 1e-4) {
            self.alphas = alphas
            self.floor = floor
        }

        public static let defaultAlphas: [Float] = (0..<20).map { Float($0) / Float(20) }
    }

    /// What the scale search found.
    public struct ScaleSearch: Sendable, Equatable {
        public var alphas: [Float]
        /// The group's output error for every alpha (+infinity where a GGUF block scale
        /// overflowed fp16).
        public var losses: [Double]
        public var bestIndex: Int
        /// s at the chosen alpha, one per input channel.
        public var scales: [Float]
        /// The loss with s = 1 (plain RTN), for the report.
        public var rtnLoss: Double

        public var alpha: Float { alphas[bestIndex] }
        public var loss: Double { losses[bestIndex] }
    }

    /// s = max(mean|x|^alpha, floor) / sqrt(max(s) * min(s)).
    public static func scales(meanAbsActivation m: [Float], alpha: Float, floor: Float = 1e-4) -> [Float] {
        let raw = m.map { Swift.max(Foundation.pow($0, alpha), floor) }
        guard let hi = raw.max(), let lo = raw.min() else { return [] }
        let norm = (hi * lo).squareRoot()
        return raw.map { $0 / norm }
    }

    /// Searches s for one group (step 1-4 of the type's comment).
    public static func searchScales(
        _ linears: [Linear], hessian: Matrix, meanAbsActivation m: [Float], recipe: QuantRecipe,
        options: Options = Options()
    ) throws -> ScaleSearch {
        try checkGroup(linears, hessian: hessian, meanAbsActivation: m)
        guard !options.alphas.isEmpty else { throw AWQError.emptyAlphaGrid }
        for l in linears { try recipe.validate(columns: l.weight.cols, tensor: l.name) }
        var losses: [Double] = []
        for alpha in options.alphas {
            let s = scales(meanAbsActivation: m, alpha: alpha, floor: options.floor)
            losses.append(try groupLoss(linears, hessian: hessian, scales: s, recipe: recipe))
        }
        // First minimum: the smallest alpha on ties (the grid is ascending).
        var best = 0
        for k in losses.indices where losses[k] < losses[best] { best = k }
        guard losses[best].isFinite else {
            throw AWQError.noFiniteLoss(tensor: linears[0].name, detail: "every alpha's block scales overflow fp16")
        }
        let ones = [Float](repeating: 1, count: m.count)
        let rtnLoss =
            try options.alphas.firstIndex(of: 0).map { losses[$0] }
            ?? groupLoss(linears, hessian: hessian, scales: ones, recipe: recipe)
        return ScaleSearch(
            alphas: options.alphas, losses: losses, bestIndex: best,
            scales: scales(meanAbsActivation: m, alpha: options.alphas[best], floor: options.floor), rtnLoss: rtnLoss)
    }

    /// The group's output error with RTN of W * diag(s): sum over the linears of
    /// trace((W s - Q) H' (W s - Q)^T) / 2, H' = diag(1/s) H diag(1/s). A GGUF block scale
    /// that overflows fp16 makes the loss +infinity (that alpha is not a candidate).
    public static func groupLoss(
        _ linears: [Linear], hessian: Matrix, scales s: [Float], recipe: QuantRecipe
    ) throws -> Double {
        let hs = scaledHessian(hessian, scales: s)
        var total = 0.0
        for l in linears {
            let ws = scaleColumns(l.weight, by: s)
            do {
                let q = try RTN.quantize(ws, recipe: recipe, name: l.name)
                total += OutputError.fromHessian(weight: ws, quantized: q.dequantized, hessian: hs)
            } catch QuantizationError.scaleOverflow {
                return .infinity
            }
        }
        return total
    }

    /// diag(1/s) H diag(1/s): the Hessian of the scaled input x / s.
    public static func scaledHessian(_ h: Matrix, scales s: [Float]) -> Matrix {
        precondition(h.rows == s.count && h.cols == s.count, "scaledHessian: H is \(h.shape), \(s.count) scales")
        let inv = s.map { 1 / $0 }
        var out = h
        let n = s.count
        out.data.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let row = p.baseAddress! + i * n
                for j in 0..<n { row[j] = row[j] * inv[i] * inv[j] }
            }
        }
        return out
    }

    /// W * diag(s): column c times s[c].
    public static func scaleColumns(_ w: Matrix, by s: [Float]) -> Matrix {
        precondition(w.cols == s.count, "scaleColumns: \(w.cols) columns, \(s.count) scales")
        var out = w
        out.data.withUnsafeMutableBufferPointer { p in
            for r in 0..<w.rows {
                let row = p.baseAddress! + r * w.cols
                for c in 0..<w.cols { row[c] *= s[c] }
            }
        }
        return out
    }

    /// W * diag(1/s): the effective weight of a quantized scaled weight, for measuring it
    /// against the original.
    public static func unscaleColumns(_ w: Matrix, by s: [Float]) -> Matrix {
        scaleColumns(w, by: s.map { 1 / $0 })
    }

    static func checkGroup(_ linears: [Linear], hessian: Matrix, meanAbsActivation m: [Float]) throws {
        guard let first = linears.first else { throw AWQError.emptyGroup }
        let n = first.weight.cols
        for l in linears {
            if l.weight.count == 0 { throw QuantizationError.emptyTensor(tensor: l.name) }
            guard l.weight.cols == n else {
                throw AWQError.shapeMismatch(
                    tensor: l.name,
                    detail: "has \(l.weight.cols) input columns, '\(first.name)' of the same group has \(n)")
            }
        }
        guard hessian.rows == n && hessian.cols == n else {
            throw AWQError.shapeMismatch(
                tensor: first.name,
                detail: "the group input's Hessian is \(hessian.rows)x\(hessian.cols), expected \(n)x\(n)")
        }
        guard m.count == n else {
            throw AWQError.shapeMismatch(
                tensor: first.name, detail: "mean|x| has \(m.count) channels, the weight \(n) input columns")
        }
        if let k = m.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw AWQError.invalidStatistic(tensor: first.name, channel: k, value: m[k])
        }
    }
}

/// Errors of AWQ's searches and folding; each names the tensor.
public enum AWQError: Error, CustomStringConvertible, Equatable {
    case emptyGroup
    case emptyAlphaGrid
    case invalidClipGrid(grid: Int, maxShrink: Float)
    case shapeMismatch(tensor: String, detail: String)
    case invalidStatistic(tensor: String, channel: Int, value: Float)
    case invalidScale(tensor: String, channel: Int, value: Float)
    case noFiniteLoss(tensor: String, detail: String)

    public var description: String {
        switch self {
        case .emptyGroup:
            return "AWQ: a linear group needs at least one linear"
        case .emptyAlphaGrid:
            return "AWQ: the alpha grid is empty; pass at least one exponent (AutoAWQ: 0, 0.05, ..., 0.95)"
        case let .invalidClipGrid(grid, maxShrink):
            return
                "AWQ clip: grid \(grid) with max shrink \(maxShrink) gives no ratio; use grid >= 1 and max shrink in (0, 1)"
        case let .shapeMismatch(tensor, detail):
            return "AWQ: tensor '\(tensor)': \(detail)"
        case let .invalidStatistic(tensor, channel, value):
            return
                "AWQ: tensor '\(tensor)': mean|x| of input channel \(channel) is \(value); it must be finite and >= 0 (check the calibration statistics)"
        case let .invalidScale(tensor, channel, value):
            return
                "AWQ: tensor '\(tensor)': scale of input channel \(channel) is \(value); scales must be finite and > 0"
        case let .noFiniteLoss(tensor, detail):
            return "AWQ: group of '\(tensor)': \(detail)"
        }
    }
}

extension AWQ {
    /// A group made ready for RTN or GPTQ: quantize `linears[i].weight` with `hessian` (GPTQ)
    /// and store `previous` in place of the original op; the quantized weights then act on
    /// x / s, which the divided previous op produces.
    public struct Prepared: Sendable, Equatable {
        public var search: ScaleSearch
        /// W * diag(s), clipped when a clip search ran.
        public var linears: [Linear]
        /// The previous op divided by s.
        public var previous: AWQFold.Previous
        /// diag(1/s) H diag(1/s), the Hessian of the scaled input.
        public var hessian: Matrix
        /// One per linear when a clip search ran, else empty.
        public var clips: [AWQClip.Result]
    }

    /// Scale search, folding and (unless `clip` is nil) the clip search, for one group.
    public static func prepare(
        _ linears: [Linear], hessian: Matrix, meanAbsActivation m: [Float], previous: AWQFold.Previous,
        recipe: QuantRecipe, options: Options = Options(), clip: AWQClip.Options? = AWQClip.Options()
    ) throws -> Prepared {
        let search = try searchScales(linears, hessian: hessian, meanAbsActivation: m, recipe: recipe, options: options)
        let folded = try AWQFold.fold(scales: search.scales, linears: linears, previous: previous)
        let hs = scaledHessian(hessian, scales: search.scales)
        var out = folded.linears
        var clips: [AWQClip.Result] = []
        if let clip {
            for k in out.indices {
                let c = try AWQClip.search(out[k].weight, hessian: hs, recipe: recipe, options: clip, name: out[k].name)
                out[k].weight = c.clipped
                clips.append(c)
            }
        }
        return Prepared(search: search, linears: out, previous: folded.previous, hessian: hs, clips: clips)
    }
}
