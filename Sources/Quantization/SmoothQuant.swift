import Foundation
import Tensor

/// SmoothQuant (Xiao et al. 2023): moves activation outliers into the weights before W8A8
/// quantization. For a group of linears reading one normalized input x (q,k,v after
/// attn_norm; gate,up after ffn_norm), per input channel j
///
///     s_j = max|x_j|^alpha / max|W_:,j|^(1-alpha)
///
/// (the weight maximum over every linear of the group), then W <- W diag(s) and the norm's
/// gamma <- gamma / s, so x diag(1/s) (W diag(s))^T = x W^T: the float output is unchanged,
/// and the smoothed channel maxima are (max|x_j| max|W_:,j|)^(1-alpha) for the activations
/// and (max|x_j| max|W_:,j|)^alpha for the weights. llm-compressor doubles the weight maximum
/// first, a constant factor in s that per-row and per-token symmetric scales cancel.
public enum SmoothQuant {
    /// Maxima below this are raised to it, so a dead channel (max 0) gets a finite s > 0.
    public static let floor: Float = 1e-5

    /// s per input column. `activationAbsMax`: max|x_j| over the calibration tokens;
    /// `weights`: the group's linears [out, in], all with the same input columns.
    public static func scales(activationAbsMax x: [Float], weights: [Matrix], alpha: Double) -> [Float] {
        let wmax = columnMax(weights, columns: x.count)
        return (0..<x.count).map { scale(x[$0], wmax[$0], alpha) }
    }

    /// s for attn_output, whose input columns come from v's rows through the heads: with
    /// grouped-query attention every query head of a group reads the same v row for its
    /// column, so those columns must share one s (v's row is divided by it). The maxima are
    /// taken over each tied set. Returns s per v row (`source`, heads/kvHeads fewer) and per
    /// input column of o (`columns`). Columns are head-major: column h*dim + d reads v row
    /// (h / (heads/kvHeads))*dim + d.
    public static func tiedScales(
        activationAbsMax x: [Float], weight: Matrix, alpha: Double, heads: Int, kvHeads: Int
    ) -> (source: [Float], columns: [Float]) {
        precondition(heads > 0 && kvHeads > 0 && heads % kvHeads == 0 && x.count % heads == 0)
        let dim = x.count / heads
        let per = heads / kvHeads
        let wmax = columnMax([weight], columns: x.count)
        let sourceOf = { (j: Int) in (j / dim / per) * dim + j % dim }
        var xs = [Float](repeating: 0, count: kvHeads * dim)
        var ws = xs
        for j in 0..<x.count {
            xs[sourceOf(j)] = max(xs[sourceOf(j)], x[j])
            ws[sourceOf(j)] = max(ws[sourceOf(j)], wmax[j])
        }
        let source = (0..<xs.count).map { scale(xs[$0], ws[$0], alpha) }
        return (source, (0..<x.count).map { source[sourceOf($0)] })
    }

    static func scale(_ x: Float, _ w: Float, _ alpha: Double) -> Float {
        let a = Double(max(x, floor))
        let b = Double(max(w, floor))
        return Float(Foundation.pow(a, alpha) / Foundation.pow(b, 1 - alpha))
    }

    /// max|W_:,j| over every weight.
    static func columnMax(_ weights: [Matrix], columns n: Int) -> [Float] {
        var wmax = [Float](repeating: 0, count: n)
        for w in weights {
            precondition(w.cols == n, "SmoothQuant: weight has \(w.cols) columns, activations \(n)")
            w.data.withUnsafeBufferPointer { p in
                for r in 0..<w.rows {
                    let row = r * n
                    for j in 0..<n { wmax[j] = max(wmax[j], abs(p[row + j])) }
                }
            }
        }
        return wmax
    }

    /// The fold: each weight's columns times s, the norm's gamma divided by s.
    public static func fold(
        scales s: [Float], weights: [Matrix], norm gamma: [Float]
    ) -> (
        weights: [Matrix], norm: [Float]
    ) {
        precondition(gamma.count == s.count, "SmoothQuant: norm has \(gamma.count) values, \(s.count) scales")
        return (weights.map { AWQ.scaleColumns($0, by: s) }, zip(gamma, s).map { $0 / $1 })
    }
}
