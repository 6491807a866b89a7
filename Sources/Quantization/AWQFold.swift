import Tensor

/// Folds AWQ's per-channel scales s into the model so that it computes the same function:
/// the group's linears read x / s, so their weights become W * diag(s), and the op that
/// produces x is divided by s on its output channels. As AutoAWQ's `scale_ln_fcs` /
/// `scale_fc_fc` and llm-compressor's `_smooth`:
///
/// - RMSNorm / LayerNorm before q,k,v or gate,up: gamma / s (and beta / s).
/// - A linear before a linear (v -> o, up -> down): its row i (output channel i) divided by
///   s_i, bias too. With grouped-query attention v has fewer rows than o has columns, so
///   v -> o does not fold (AutoAWQ skips it); that is a shape error here.
///
/// Pure: returns new tensors and leaves the caller's alone.
public enum AWQFold {
    /// The op whose output is the group's input.
    public enum Previous: Sendable, Equatable {
        case norm(name: String, weight: [Float], bias: [Float]?)
        case linear(name: String, weight: Matrix, bias: [Float]?)

        public var name: String {
            switch self {
            case let .norm(name, _, _), let .linear(name, _, _): return name
            }
        }
    }

    public struct Folded: Sendable, Equatable {
        /// The group's linears with W * diag(s), in the order given.
        public var linears: [AWQ.Linear]
        public var previous: Previous
    }

    public static func fold(scales s: [Float], linears: [AWQ.Linear], previous: Previous) throws -> Folded {
        if let k = s.firstIndex(where: { !$0.isFinite || $0 <= 0 }) {
            throw AWQError.invalidScale(tensor: previous.name, channel: k, value: s[k])
        }
        guard !linears.isEmpty else { throw AWQError.emptyGroup }
        var scaled: [AWQ.Linear] = []
        for l in linears {
            guard l.weight.cols == s.count else {
                throw AWQError.shapeMismatch(
                    tensor: l.name, detail: "has \(l.weight.cols) input columns, AWQ has \(s.count) scales")
            }
            scaled.append(AWQ.Linear(name: l.name, weight: AWQ.scaleColumns(l.weight, by: s)))
        }
        return Folded(linears: scaled, previous: try divide(previous, by: s))
    }

    /// The previous op with its output channels divided by s.
    public static func divide(_ previous: Previous, by s: [Float]) throws -> Previous {
        switch previous {
        case let .norm(name, weight, bias):
            try checkCount(weight.count, s, name, "norm weight")
            return .norm(name: name, weight: zip(weight, s).map { $0 / $1 }, bias: try divideBias(bias, s, name))
        case let .linear(name, weight, bias):
            guard weight.rows == s.count else {
                throw AWQError.shapeMismatch(
                    tensor: name,
                    detail:
                        "has \(weight.rows) output rows, the next group \(s.count) input columns (grouped-query v -> o cannot fold)"
                )
            }
            var out = weight
            out.data.withUnsafeMutableBufferPointer { p in
                for i in 0..<weight.rows {
                    Kernels.scale(p.baseAddress! + i * weight.cols, count: weight.cols, by: 1 / s[i])
                }
            }
            return .linear(name: name, weight: out, bias: try divideBias(bias, s, name))
        }
    }

    static func divideBias(_ bias: [Float]?, _ s: [Float], _ name: String) throws -> [Float]? {
        guard let bias else { return nil }
        try checkCount(bias.count, s, name, "bias")
        return zip(bias, s).map { $0 / $1 }
    }

    static func checkCount(_ count: Int, _ s: [Float], _ name: String, _ what: String) throws {
        guard count == s.count else {
            throw AWQError.shapeMismatch(
                tensor: name, detail: "\(what) has \(count) channels, AWQ has \(s.count) scales")
        }
    }
}
