import Tensor

/// A quantized linear weight [out, in] as it is stored and sent: integer codes, per
/// (row, group) parameters and the group of every input column. The writers pack it,
/// the cluster carries it, and propagate runs with its dequantized values.
public struct QuantizedTensor: Sendable, Equatable {
    public var rows: Int
    public var columns: Int
    public var recipe: QuantRecipe
    /// Columns per group (== columns for per-channel).
    public var groupSize: Int
    public var groupCount: Int
    /// Codes [rows, columns] in the original column order (0...2^bits-1; Q8_0: int8 bit patterns).
    public var codes: [UInt8]
    /// Parameters [rows, groupCount], row-major: scale / zero as the grid defines them (GGUF: fp16-rounded).
    public var parameters: [GroupParameters]
    /// g_idx: the group of each original input column (HF GPTQ layout). Without act-order
    /// (or with static groups) this is column / groupSize.
    public var groupIndex: [Int32]
    /// K formats: the super-block fields the file stores (`parameters` is their sub-blocks'
    /// `GroupParameters`, one group per sub-block); nil for every other format.
    public var kScales: KQuantScales?

    public init(
        rows: Int, columns: Int, recipe: QuantRecipe, groupSize: Int, groupCount: Int, codes: [UInt8],
        parameters: [GroupParameters], groupIndex: [Int32], kScales: KQuantScales? = nil
    ) {
        self.rows = rows
        self.columns = columns
        self.recipe = recipe
        self.groupSize = groupSize
        self.groupCount = groupCount
        self.codes = codes
        self.parameters = parameters
        self.groupIndex = groupIndex
        self.kScales = kScales
    }

    /// Scales [rows, groupCount] (GGUF: fp16-rounded d).
    public var scales: [Float] { parameters.map(\.scale) }
    /// Zero points [rows, groupCount] (`.integer`: code units; Q4_1: fp16-rounded m; see GroupParameters).
    public var zeros: [Float] { parameters.map(\.zero) }

    public func parameters(row: Int, group: Int) -> GroupParameters { parameters[row * groupCount + group] }

    /// The grid's value of every code, [rows, columns].
    public func dequantized() -> Matrix {
        dequantize(value: recipe.makeGrid().value)
    }

    /// `value(code, parameters)` of every code, [rows, columns].
    public func dequantize(value: (UInt8, GroupParameters) -> Float) -> Matrix {
        Tensor.dequantize(
            rows: rows, columns: columns, codes: codes, parameters: parameters, groupIndex: groupIndex,
            groupCount: groupCount, value: value)
    }
}

/// A quantizer's result: the stored tensor plus, for checking, the act-order permutations
/// and the dequantized weights as the quantizer computed them. The stored fields read
/// through (`weight.codes`).
@dynamicMemberLookup
public struct QuantizedWeight: Sendable, Equatable {
    public var stored: QuantizedTensor
    /// Act-order only: position -> original column (perm) and its inverse (invperm).
    public var permutation: [Int32]?
    public var inversePermutation: [Int32]?
    /// scale * (code - zero) etc. per the grid, [rows, columns], original column order.
    public var dequantized: Matrix

    public init(
        rows: Int, columns: Int, recipe: QuantRecipe, groupSize: Int, groupCount: Int, codes: [UInt8],
        parameters: [GroupParameters], groupIndex: [Int32], permutation: [Int32]?,
        inversePermutation: [Int32]?, dequantized: Matrix, kScales: KQuantScales? = nil
    ) {
        stored = QuantizedTensor(
            rows: rows, columns: columns, recipe: recipe, groupSize: groupSize, groupCount: groupCount, codes: codes,
            parameters: parameters, groupIndex: groupIndex, kScales: kScales)
        self.permutation = permutation
        self.inversePermutation = inversePermutation
        self.dequantized = dequantized
    }

    public subscript<T>(dynamicMember field: KeyPath<QuantizedTensor, T>) -> T { stored[keyPath: field] }

    public func parameters(row: Int, group: Int) -> GroupParameters { stored.parameters(row: row, group: group) }
}

/// The GPTQ result: the quantized weight and the reference's per-weight Losses
/// ((w - q)^2 / Hinv[i,i]^2 / 2, original column order).
public struct GPTQResult: Sendable {
    public var weight: QuantizedWeight
    public var losses: Matrix
    /// sum(Losses), accumulated in Float64.
    public var totalLoss: Double
    /// Input columns whose Hessian diagonal was zero (weights zeroed, H[i,i] set to 1).
    public var deadColumns: [Int]
    /// The dampening added to diag(H).
    public var damp: Float
}

enum Checks {
    static func finiteWeight(_ w: Matrix, tensor: String) throws {
        if w.count == 0 { throw QuantizationError.emptyTensor(tensor: tensor) }
        for (k, v) in w.data.enumerated() where !v.isFinite {
            throw QuantizationError.nonFiniteWeight(tensor: tensor, row: k / w.cols, column: k % w.cols, value: v)
        }
    }

    /// The per-column importance a scale search weighs by: `given` checked (one finite,
    /// non-negative value per input column), or all ones.
    static func importance(_ given: [Float]?, columns: Int, tensor: String) throws -> [Float] {
        guard let given else { return [Float](repeating: 1, count: columns) }
        guard given.count == columns else {
            throw QuantizationError.shapeMismatch(
                tensor: tensor, detail: "importance has \(given.count) values, weight has \(columns) input columns")
        }
        if let k = given.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw QuantizationError.shapeMismatch(
                tensor: tensor, detail: "importance of column \(k) is \(given[k]); it must be finite and >= 0")
        }
        return given
    }

    static func scalesFit(_ p: [GroupParameters], groups: Int, recipe: QuantRecipe, tensor: String) throws {
        guard recipe.format != .integer else { return }
        for (k, q) in p.enumerated() where !q.scale.isFinite || !q.zero.isFinite {
            throw QuantizationError.scaleOverflow(
                tensor: tensor, row: k / groups, group: k % groups,
                scale: q.scale.isFinite ? q.zero : q.scale)
        }
    }
}
