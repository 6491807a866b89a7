import Calibration
import Foundation
import ModelIO
import Models
import Quantization
import Tensor

/// SmoothQuant for one reconstruct unit (compressed-tensors-w8a8): the group's scales from
/// the merged per-channel max|x| and its whole linears (every row slice computes the same).
/// The result takes AWQ's shape (`AWQGroup`), so the quantizer, the error report and the
/// folded norm's path to the writers and propagate are AWQ's: W diag(s) quantized with
/// diag(1/s) H diag(1/s).
/// - q,k,v and gate,up: s folds into the RMSNorm before the group, carried on its first linear.
/// - down: its input silu(gate) * up is linear in up's output rows, and o's input (the
///   heads' attention outputs) in v's rows, so their scales migrate into up or v
///   (`MigratedScales`): that linear's task quantizes it unchanged, and the block's assembly
///   divides its per-row scales by s, which the int8 per-row grid takes exactly. With
///   grouped-query attention, o's columns that read one v row share its s.
enum SmoothQuantGroup {
    struct Smoothed {
        var group: AWQGroup
        /// down's or o's scales for up's or v's rows.
        var migrated: MigratedScales?
    }

    static func prepare(
        _ ctx: JobContext, block b: Int, groupLinears: [String], statistics: LinearStatistics?, hessian h: Matrix?,
        alpha: Double
    ) throws -> Smoothed {
        let naming = ctx.view.naming
        guard let stats = statistics, let h else {
            throw JobError("SmoothQuant of block \(b) \(groupLinears): needs the group's merged statistics")
        }
        let weights = try groupLinears.map { try ctx.linearWeight(block: b, $0) }
        let x = stats.channels.absMax
        func migrated(_ s: [Float], into previous: Linear, source: [Float]) -> Smoothed {
            Smoothed(
                group: AWQGroup(
                    weights: [groupLinears[0]: AWQ.scaleColumns(weights[0], by: s)], scales: s,
                    hessian: AWQ.scaledHessian(h, scales: s), folded: nil, alpha: Float(alpha)),
                migrated: MigratedScales(
                    into: LlamaTensorNames.linear(previous.rawValue, block: b, naming: naming), scales: source))
        }
        if groupLinears == [Linear.ffnDown.rawValue] {
            let s = SmoothQuant.scales(activationAbsMax: x, weights: weights, alpha: alpha)
            return migrated(s, into: .ffnUp, source: s)
        }
        if groupLinears == [Linear.attnOutput.rawValue] {
            let c = ctx.view.config
            let s = SmoothQuant.tiedScales(
                activationAbsMax: x, weight: weights[0], alpha: alpha, heads: c.headCount, kvHeads: c.kvHeadCount)
            return migrated(s.columns, into: .attnV, source: s.source)
        }
        guard let norm = AWQGroup.previousNorm(groupLinears, block: b, naming: naming) else {
            throw JobError("SmoothQuant of block \(b) \(groupLinears): no norm or linear before the group")
        }
        let s = SmoothQuant.scales(activationAbsMax: x, weights: weights, alpha: alpha)
        let folded = SmoothQuant.fold(scales: s, weights: weights, norm: try ctx.view.load(norm).data)
        return Smoothed(
            group: AWQGroup(
                weights: Dictionary(uniqueKeysWithValues: zip(groupLinears, folded.weights)), scales: s,
                hessian: AWQ.scaledHessian(h, scales: s), folded: FoldedTensor(name: norm, values: folded.norm),
                alpha: Float(alpha)),
            migrated: nil)
    }
}

extension Tasks {
    /// SmoothQuant for the reconstruct input's group; nil when the job does not smooth.
    static func smoothGroup(
        _ ctx: JobContext, _ input: ReconstructInput, hessian h: Matrix?
    ) throws -> SmoothQuantGroup.Smoothed? {
        guard let alpha = ctx.spec.resolvedSmooth else { return nil }
        let g = ReconstructUnits(spec: ctx.spec).group(input.group)
        return try SmoothQuantGroup.prepare(
            ctx, block: input.block, groupLinears: groups[g], statistics: input.statistics, hessian: h, alpha: alpha)
    }
}
