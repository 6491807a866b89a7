// Bits where they matter: each tensor takes one of its candidate types so that the tensors
// together stay within a bit budget and their summed sensitivity (error) is least.
//
// This is a multiple-choice knapsack. Each tensor's candidates are reduced to the lower
// convex hull of (bits, error); then, from every tensor at its cheapest hull point, the
// upgrade that buys the most error per bit is taken while it fits the budget (ties: the
// earlier tensor). On convex hulls that greedy is the LP optimum up to the last upgrade that
// did not fit, and it is a pure function of its inputs: the same sensitivities give the same
// types whatever ran them.

public enum BitAllocation {
    public struct Candidate: Sendable, Equatable {
        public var format: WeightFormat
        public var error: Double

        public init(format: WeightFormat, error: Double) {
            self.format = format
            self.error = error
        }
    }

    public struct Tensor: Sendable, Equatable {
        public var name: String
        public var weights: Int
        public var candidates: [Candidate]

        public init(name: String, weights: Int, candidates: [Candidate]) {
            self.name = name
            self.weights = weights
            self.candidates = candidates
        }
    }

    public struct Choice: Sendable, Equatable {
        /// The chosen format of each tensor, in the input's order.
        public var formats: [WeightFormat]
        /// The tensors' bits per weight with these formats.
        public var bitsPerWeight: Double
        /// Their summed error.
        public var error: Double
    }

    public struct AllocationError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// The formats of least summed error whose bits per weight, over all tensors, is at most `target`.
    public static func choose(_ tensors: [Tensor], targetBitsPerWeight target: Double) throws -> Choice {
        guard target.isFinite, target > 0 else {
            throw AllocationError(description: "target bits per weight \(target) must be a positive number")
        }
        var hulls: [[Candidate]] = []
        var totalWeights = 0.0
        for t in tensors {
            guard t.weights > 0 else { throw AllocationError(description: "tensor '\(t.name)': no weights") }
            for c in t.candidates {
                guard c.format.bitsPerWeight != nil else {
                    throw AllocationError(description: "tensor '\(t.name)': \(c.format.rawValue) has no fixed size")
                }
                guard c.error.isFinite, c.error >= 0 else {
                    throw AllocationError(
                        description: "tensor '\(t.name)': \(c.format.rawValue)'s error \(c.error) is not finite")
                }
            }
            let hull = lowerHull(t.candidates)
            guard !hull.isEmpty else { throw AllocationError(description: "tensor '\(t.name)': no candidate types") }
            hulls.append(hull)
            totalWeights += Double(t.weights)
        }
        func bits(_ i: Int, _ k: Int) -> Double { hulls[i][k].format.bitsPerWeight! * Double(tensors[i].weights) }
        var at = [Int](repeating: 0, count: tensors.count)
        var used = tensors.indices.reduce(0.0) { $0 + bits($1, 0) }
        let budget = target * totalWeights
        guard used <= budget * (1 + 1e-12) else {
            throw AllocationError(
                description: "target \(target) bits per weight is below the least these types allow: "
                    + "\(used / totalWeights)")
        }
        var open = Set(tensors.indices)
        while true {
            var best: (i: Int, gain: Double)?
            for i in tensors.indices where open.contains(i) {
                let k = at[i]
                guard k + 1 < hulls[i].count else { continue }
                let gain = (hulls[i][k].error - hulls[i][k + 1].error) / (bits(i, k + 1) - bits(i, k))
                if best == nil || gain > best!.gain { best = (i, gain) }
            }
            guard let (i, _) = best else { break }
            let extra = bits(i, at[i] + 1) - bits(i, at[i])
            if used + extra <= budget * (1 + 1e-12) {
                used += extra
                at[i] += 1
            } else {
                // On a convex hull every later upgrade of i costs more still: i is done.
                open.remove(i)
            }
        }
        let error = tensors.indices.reduce(0.0) { $0 + hulls[$1][at[$1]].error }
        return Choice(
            formats: tensors.indices.map { hulls[$0][at[$0]].format }, bitsPerWeight: used / totalWeights,
            error: error)
    }

    /// The candidates on the lower convex hull of (bits per weight, error), by increasing bits:
    /// a candidate that costs more bits for no less error, or lies above the chord of its
    /// neighbours, is never the best buy.
    public static func lowerHull(_ candidates: [Candidate]) -> [Candidate] {
        let sorted = candidates.enumerated().sorted { a, b in
            let (x, y) = (a.element.format.bitsPerWeight!, b.element.format.bitsPerWeight!)
            if x != y { return x < y }
            if a.element.error != b.element.error { return a.element.error < b.element.error }
            return a.offset < b.offset
        }.map(\.element)
        var hull: [Candidate] = []
        for c in sorted {
            if let last = hull.last, c.error >= last.error { continue }
            if let last = hull.last, last.format.bitsPerWeight! == c.format.bitsPerWeight! { continue }
            while hull.count >= 2 {
                let (a, b) = (hull[hull.count - 2], hull[hull.count - 1])
                let (ax, bx, cx) = (a.format.bitsPerWeight!, b.format.bitsPerWeight!, c.format.bitsPerWeight!)
                // b is above (or on) the chord from a to c: drop it.
                if (b.error - a.error) * (cx - ax) >= (c.error - a.error) * (bx - ax) {
                    hull.removeLast()
                } else {
                    break
                }
            }
            hull.append(c)
        }
        return hull
    }
}

extension WeightFormat {
    /// Bits per weight a GGUF block type stores (codes, scales and minimums); nil for `.integer`,
    /// whose size depends on the recipe.
    public var bitsPerWeight: Double? {
        switch self {
        case .integer: return nil
        case .ggufQ4_0: return 4.5
        case .ggufQ4_1: return 5
        case .ggufQ5_0: return 5.5
        case .ggufQ5_1: return 6
        case .ggufQ8_0: return 8.5
        case .ggufQ2_K: return 2.625
        case .ggufQ3_K: return 3.4375
        case .ggufQ4_K: return 4.5
        case .ggufQ5_K: return 5.5
        case .ggufQ6_K: return 6.5625
        }
    }
}
