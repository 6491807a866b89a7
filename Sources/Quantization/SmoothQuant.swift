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
        let n = x.count
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
        return (0..<n).map { j in
            let a = Double(max(x[j], floor))
            let b = Double(max(wmax[j], floor))
            return Float(Foundation.pow(a, alpha) / Foundation.pow(b, 1 - alpha))
        }
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
