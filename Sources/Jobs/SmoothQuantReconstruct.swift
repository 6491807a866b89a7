import Calibration
import Foundation
import ModelIO
import Models
import Quantization
import Tensor

/// SmoothQuant for one reconstruct unit (compressed-tensors-w8a8): the group's scales from
/// the merged per-channel max|x| and its whole linears (every row slice computes the same),
/// folded into the RMSNorm before the group. The result takes AWQ's shape (`AWQGroup`), so
/// the quantizer, the error report and the folded norm's path to the writers and propagate
/// are AWQ's: W diag(s) quantized with diag(1/s) H diag(1/s), the norm carried on the
/// group's first linear. down's input is silu(gate) * up, linear in up's output rows, so
/// its scales migrate into up (`MigratedScales`): up's task quantizes up unchanged, and
/// the block's assembly divides up's per-row scales by s, which the int8 per-row grid
/// takes exactly. o is not smoothed: its migration into v (tied over the query heads of a
/// kv head) gained nothing on SmolLM2 (docs/ARCHITECTURE.md); nil for its group.
enum SmoothQuantGroup {
    static func prepare(
        _ ctx: JobContext, block b: Int, groupLinears: [String], statistics: LinearStatistics?, hessian h: Matrix?,
        alpha: Double
    ) throws -> AWQGroup? {
        let naming = ctx.view.naming
        let norm = AWQGroup.previousNorm(groupLinears, block: b, naming: naming)
        let down = groupLinears == [Linear.ffnDown.rawValue]
        guard norm != nil || down else { return nil }
        guard let stats = statistics, let h else {
            throw JobError("SmoothQuant of block \(b) \(groupLinears): needs the group's merged statistics")
        }
        let weights = try groupLinears.map { try ctx.linearWeight(block: b, $0) }
        let s = SmoothQuant.scales(activationAbsMax: stats.channels.absMax, weights: weights, alpha: alpha)
        guard let norm else {
            return AWQGroup(
                weights: [groupLinears[0]: AWQ.scaleColumns(weights[0], by: s)], scales: s,
                hessian: AWQ.scaledHessian(h, scales: s), folded: nil, alpha: Float(alpha))
        }
        let folded = SmoothQuant.fold(scales: s, weights: weights, norm: try ctx.view.load(norm).data)
        return AWQGroup(
            weights: Dictionary(uniqueKeysWithValues: zip(groupLinears, folded.weights)), scales: s,
            hessian: AWQ.scaledHessian(h, scales: s), folded: FoldedTensor(name: norm, values: folded.norm),
            alpha: Float(alpha))
    }
}

extension Tasks {
    /// SmoothQuant's fold for the reconstruct input's group; nil when the job does not smooth
    /// or the group has no norm before it.
    static func smoothGroup(_ ctx: JobContext, _ input: ReconstructInput, hessian h: Matrix?) throws -> AWQGroup? {
        guard let alpha = ctx.spec.resolvedSmooth else { return nil }
        let g = ReconstructUnits(spec: ctx.spec).group(input.group)
        return try SmoothQuantGroup.prepare(
            ctx, block: input.block, groupLinears: groups[g], statistics: input.statistics, hessian: h, alpha: alpha)
    }

    /// The scales `linear` carries into the linear before it (SmoothQuant of ffn_down: into ffn_up).
    static func smoothMigration(_ ctx: JobContext, block b: Int, linear: String, _ group: AWQGroup?) -> MigratedScales?
    {
        guard ctx.spec.resolvedSmooth != nil, linear == Linear.ffnDown.rawValue, let s = group?.scales else {
            return nil
        }
        return MigratedScales(
            into: LlamaTensorNames.linear(Linear.ffnUp.rawValue, block: b, naming: ctx.view.naming), scales: s)
    }
}
