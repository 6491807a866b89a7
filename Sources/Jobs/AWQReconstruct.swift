import Calibration
import Foundation
import ModelIO
import Models
import Quantization
import Tensor

/// AWQ for one reconstruct unit (`--method awq | awq+gptq`): the group's scales searched
/// on its whole linears (every row slice of the group searches the same, so the result does
/// not depend on `--row-parts`), folded into the RMSNorm before the group, and each linear
/// clipped; the quantizer then runs on the scaled weights with the scaled input's Hessian.
///
/// Scaled: q,k,v (previous op: attn_norm) and gate,up (ffn_norm). Not scaled (clip only):
/// o (previous: v) and down (previous: up). Their fold would change v's or up's weights,
/// which the q,k,v or gate,up task quantizes, so those two tasks would depend on each
/// other; a later "scales first" task (search every group's s, then quantize) can add them.
/// AutoAWQ does not clip q and k (their error shows through softmax, not the Hessian).
struct AWQGroup {
    /// Each linear's weight as the quantizer takes it (W diag(s), clipped), whole rows.
    var weights: [String: Matrix]
    /// s per input column; nil for a group that is only clipped.
    var scales: [Float]?
    /// diag(1/s) H diag(1/s) (H itself when not scaled).
    var hessian: Matrix
    /// The norm before the group divided by s (nil when not scaled).
    var folded: FoldedTensor?
    /// The chosen alpha (nil when not scaled).
    var alpha: Float?

    /// The RMSNorm before the group of `linears`, by its file name; nil for o and down.
    static func previousNorm(_ linears: [String], block b: Int, naming: TensorNaming) -> String? {
        if linears.contains(Linear.attnQ.rawValue) { return LlamaTensorNames.attnNorm(b, naming) }
        if linears.contains(Linear.ffnGate.rawValue) { return LlamaTensorNames.ffnNorm(b, naming) }
        return nil
    }

    static func clipped(_ linear: String) -> Bool {
        linear != Linear.attnQ.rawValue && linear != Linear.attnK.rawValue
    }

    /// `groupLinears`: every linear of the unit's group (whole, not the unit's slice).
    static func prepare(
        _ ctx: JobContext, block b: Int, groupLinears: [String], hessian h: Matrix, meanAbs: [Float]
    ) throws -> AWQGroup {
        let recipe = ctx.spec.recipe
        let naming = ctx.view.naming
        var linears: [AWQ.Linear] = []
        for name in groupLinears {
            linears.append(
                AWQ.Linear(
                    name: LlamaTensorNames.linear(name, block: b, naming: naming),
                    weight: try ctx.linearWeight(block: b, name)))
        }
        var out = AWQGroup(weights: [:], scales: nil, hessian: h, folded: nil, alpha: nil)
        if let norm = previousNorm(groupLinears, block: b, naming: naming) {
            let gamma = try ctx.view.load(norm).data
            let search = try AWQ.searchScales(linears, hessian: h, meanAbsActivation: meanAbs, recipe: recipe)
            let folded = try AWQFold.fold(
                scales: search.scales, linears: linears, previous: .norm(name: norm, weight: gamma, bias: nil))
            linears = folded.linears
            guard case let .norm(_, weight, _) = folded.previous else {
                throw JobError("AWQ: \(norm) did not fold as a norm")
            }
            out.scales = search.scales
            out.hessian = AWQ.scaledHessian(h, scales: search.scales)
            out.folded = FoldedTensor(name: norm, values: weight)
            out.alpha = search.alpha
        }
        for (name, l) in zip(groupLinears, linears) {
            if clipped(name) {
                out.weights[name] = try AWQClip.search(l.weight, hessian: out.hessian, recipe: recipe, name: l.name)
                    .clipped
            } else {
                out.weights[name] = l.weight
            }
        }
        return out
    }
}

extension LlamaBlock {
    /// Replaces the block's attn_norm or ffn_norm (by its file name) with AWQ's folded values.
    mutating func setNorm(_ name: String, _ values: [Float], naming: TensorNaming) throws {
        let path: WritableKeyPath<LlamaBlockWeights, [Float]>
        switch name {
        case LlamaTensorNames.attnNorm(index, naming): path = \.attnNorm
        case LlamaTensorNames.ffnNorm(index, naming): path = \.ffnNorm
        default: throw JobError("block \(index): '\(name)' is not its attn_norm or ffn_norm")
        }
        guard weights[keyPath: path].count == values.count else {
            throw JobError(
                "block \(index): '\(name)' has \(weights[keyPath: path].count) values, the fold \(values.count)")
        }
        weights[keyPath: path] = values
    }
}
