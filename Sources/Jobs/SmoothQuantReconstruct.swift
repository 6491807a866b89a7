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
/// group's first linear. o and down are not smoothed in this version (their fold would
/// change v's or up's weights, which another task quantizes): nil for their groups.
enum SmoothQuantGroup {
    static func prepare(
        _ ctx: JobContext, block b: Int, groupLinears: [String], statistics: LinearStatistics?, hessian h: Matrix?,
        alpha: Double
    ) throws -> AWQGroup? {
        let naming = ctx.view.naming
        guard let norm = AWQGroup.previousNorm(groupLinears, block: b, naming: naming) else { return nil }
        guard let stats = statistics, let h else {
            throw JobError("SmoothQuant of block \(b) \(groupLinears): needs the group's merged statistics")
        }
        let weights = try groupLinears.map { try ctx.linearWeight(block: b, $0) }
        let s = SmoothQuant.scales(activationAbsMax: stats.channels.absMax, weights: weights, alpha: alpha)
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
}
