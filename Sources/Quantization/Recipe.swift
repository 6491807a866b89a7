import Tensor

/// The stored weight format a quantizer targets.
public enum WeightFormat: String, Codable, Sendable, CaseIterable {
    /// The GPTQ reference's integer grid (quant.py `Quantizer`): codes 0...2^bits-1,
    /// value = scale * (code - zero), per (row, group) scale and zero point.
    /// This is what HF GPTQ safetensors store.
    case integer
    /// GGUF Q4_0: 32 weights per block, value = (code - 8) * d, d in fp16.
    case ggufQ4_0
    /// GGUF Q4_1: 32 weights per block, value = code * d + m, d and m in fp16.
    case ggufQ4_1
    /// GGUF Q8_0: 32 weights per block, value = int8 code * d, d in fp16.
    case ggufQ8_0
    /// GGUF Q5_0 / Q5_1: Q4_0 / Q4_1 with 5-bit codes.
    case ggufQ5_0
    case ggufQ5_1
    /// GGUF K-quants: super-blocks of 256 columns in sub-blocks of 16 or 32 (the groups), each
    /// with an integer scale (and min) of the super-block's fp16 d (dmin); see `KQuantType`.
    case ggufQ2_K
    case ggufQ3_K
    case ggufQ4_K
    case ggufQ5_K
    case ggufQ6_K

    /// The K-quant type of a K format.
    public var kQuantType: KQuantType? {
        switch self {
        case .ggufQ2_K: return .q2_K
        case .ggufQ3_K: return .q3_K
        case .ggufQ4_K: return .q4_K
        case .ggufQ5_K: return .q5_K
        case .ggufQ6_K: return .q6_K
        default: return nil
        }
    }

    /// Block length along the input dimension that the format fixes (nil: free); a K format's sub-block.
    public var fixedGroupSize: Int? {
        if self == .integer { return nil }
        return kQuantType?.subBlockSize ?? 32
    }
    /// Columns a row must be a multiple of: the K super-block, else the group.
    public var rowMultiple: Int? { kQuantType != nil ? KQuantType.superBlockSize : fixedGroupSize }
    /// Bits per code that the format fixes (nil: free, 2...8).
    public var fixedBits: Int? {
        switch self {
        case .integer: return nil
        case .ggufQ4_0, .ggufQ4_1: return 4
        case .ggufQ5_0, .ggufQ5_1: return 5
        case .ggufQ8_0: return 8
        case .ggufQ2_K, .ggufQ3_K, .ggufQ4_K, .ggufQ5_K, .ggufQ6_K: return kQuantType!.bits
        }
    }
    /// Whether a GGUF format's grid is symmetric (no min); `.integer` leaves it to the recipe.
    public var isSymmetricGGUF: Bool {
        switch self {
        case .ggufQ4_1, .ggufQ5_1, .ggufQ2_K, .ggufQ4_K, .ggufQ5_K: return false
        default: return true
        }
    }
}

public enum QuantizationError: Error, CustomStringConvertible, Equatable {
    case invalidBits(bits: Int, format: WeightFormat)
    case invalidGroupSize(Int)
    case formatNeedsGroupSize(format: WeightFormat, required: Int, got: Int)
    case staticGroupsNeedGroupSize
    case actOrderNeedsStaticGroups(format: WeightFormat)
    case invalidBlockSize(Int)
    case invalidDamping(Double)
    case columnsNotMultipleOfBlock(tensor: String, columns: Int, block: Int)
    case shapeMismatch(tensor: String, detail: String)
    case emptyTensor(tensor: String)
    case nonFiniteWeight(tensor: String, row: Int, column: Int, value: Float)
    case nonFiniteHessian(tensor: String, row: Int, column: Int, value: Float)
    case hessianNotPositiveDefinite(tensor: String, detail: String)
    case scaleOverflow(tensor: String, row: Int, group: Int, scale: Float)

    public var description: String {
        switch self {
        case let .invalidBits(bits, format):
            if let fixed = format.fixedBits {
                return "recipe: format \(format.rawValue) stores \(fixed)-bit codes, got bits \(bits)"
            }
            return "recipe: bits must be in 2...8, got \(bits)"
        case let .invalidGroupSize(g):
            return
                "recipe: group size \(g) is invalid; use -1 for one group per output channel or a positive column count"
        case let .formatNeedsGroupSize(format, required, got):
            return "recipe: format \(format.rawValue) uses blocks of \(required) input columns, got group size \(got)"
        case .staticGroupsNeedGroupSize:
            return "recipe: static groups need a positive group size (got per-channel)"
        case let .actOrderNeedsStaticGroups(format):
            return
                "recipe: act-order with format \(format.rawValue) needs static groups (its blocks follow the stored column order)"
        case let .invalidBlockSize(b):
            return "recipe: GPTQ block size must be >= 1, got \(b)"
        case let .invalidDamping(d):
            return "recipe: dampening fraction must be finite and >= 0, got \(d)"
        case let .columnsNotMultipleOfBlock(tensor, columns, block):
            return "tensor '\(tensor)': \(columns) input columns are not a multiple of the format's block of \(block)"
        case let .shapeMismatch(tensor, detail):
            return "tensor '\(tensor)': \(detail)"
        case let .emptyTensor(tensor):
            return "tensor '\(tensor)': has no elements"
        case let .nonFiniteWeight(tensor, row, column, value):
            return "tensor '\(tensor)': non-finite weight \(value) at row \(row), column \(column)"
        case let .nonFiniteHessian(tensor, row, column, value):
            return "tensor '\(tensor)': Hessian has non-finite entry \(value) at (\(row), \(column))"
        case let .hessianNotPositiveDefinite(tensor, detail):
            return
                "tensor '\(tensor)': dampened Hessian is not positive definite (\(detail)); raise the dampening or gather more calibration tokens"
        case let .scaleOverflow(tensor, row, group, scale):
            return "tensor '\(tensor)': block scale \(scale) at row \(row), group \(group) overflows fp16"
        }
    }
}

/// How to quantize one linear weight [out, in].
public struct QuantRecipe: Codable, Sendable, Equatable {
    public var format: WeightFormat
    /// Bits per code: 2...8 for `.integer`; fixed by GGUF formats (2...8).
    public var bits: Int
    /// Symmetric grid (`.integer` only: the reference's sym; GGUF formats fix their own).
    public var symmetric: Bool
    /// Input columns per group; -1 = one group per output row (per channel). The last
    /// group may be partial (e.g. 576 columns with group 128). 0 is rejected.
    public var groupSize: Int
    /// GPTQ: process columns in descending diag(H) order.
    public var actOrder: Bool
    /// GPTQ: fit all groups' parameters on the original weights up front.
    public var staticGroups: Bool
    /// GPTQ: dampening as a fraction of mean(diag(H)).
    public var percentDamp: Double
    /// GPTQ: columns per lazy-update block.
    public var blockSize: Int
    /// Each group's parameters by importance-weighted search (`QuantizationGrid.fitWeighted`,
    /// the Hessian diagonal as importance) instead of the grid's max-based fit. GPTQ then also
    /// fits a group on the weights as updated so far (the reference reads them as of the block's start).
    public var scaleSearch: Bool

    public init(
        format: WeightFormat = .integer, bits: Int, symmetric: Bool = false, groupSize: Int = -1,
        actOrder: Bool = false, staticGroups: Bool = false, percentDamp: Double = 0.01, blockSize: Int = 128,
        scaleSearch: Bool = false
    ) {
        self.format = format
        self.bits = bits
        self.symmetric = symmetric
        self.groupSize = groupSize
        self.actOrder = actOrder
        self.staticGroups = staticGroups
        self.percentDamp = percentDamp
        self.blockSize = blockSize
        self.scaleSearch = scaleSearch
    }

    /// A recipe for a GGUF block format (group 32, the format's bits).
    public static func gguf(
        _ format: WeightFormat, actOrder: Bool = false, percentDamp: Double = 0.01,
        blockSize: Int = 128, scaleSearch: Bool = false
    ) -> QuantRecipe {
        QuantRecipe(
            format: format, bits: format.fixedBits ?? 4, symmetric: format.isSymmetricGGUF,
            groupSize: format.fixedGroupSize ?? 32, actOrder: actOrder, staticGroups: actOrder,
            percentDamp: percentDamp, blockSize: blockSize, scaleSearch: scaleSearch)
    }

    public var isPerChannel: Bool { groupSize == -1 }

    /// Checks the recipe alone.
    public func validate() throws {
        if let fixed = format.fixedBits {
            if bits != fixed { throw QuantizationError.invalidBits(bits: bits, format: format) }
        } else if !(2...8).contains(bits) {
            throw QuantizationError.invalidBits(bits: bits, format: format)
        }
        if groupSize != -1 && groupSize < 1 { throw QuantizationError.invalidGroupSize(groupSize) }
        if let g = format.fixedGroupSize, groupSize != g {
            throw QuantizationError.formatNeedsGroupSize(format: format, required: g, got: groupSize)
        }
        if staticGroups && groupSize == -1 { throw QuantizationError.staticGroupsNeedGroupSize }
        if actOrder && format != .integer && !staticGroups {
            throw QuantizationError.actOrderNeedsStaticGroups(format: format)
        }
        if blockSize < 1 { throw QuantizationError.invalidBlockSize(blockSize) }
        if !percentDamp.isFinite || percentDamp < 0 { throw QuantizationError.invalidDamping(percentDamp) }
    }

    /// Checks the recipe against a weight of `columns` input columns.
    public func validate(columns: Int, tensor: String) throws {
        try validate()
        if let g = format.rowMultiple, columns % g != 0 {
            throw QuantizationError.columnsNotMultipleOfBlock(tensor: tensor, columns: columns, block: g)
        }
    }

    /// Columns per group for a weight with `columns` input columns.
    public func effectiveGroupSize(columns: Int) -> Int { groupSize == -1 ? columns : groupSize }

    public func groupCount(columns: Int) -> Int {
        let g = effectiveGroupSize(columns: columns)
        return g == 0 ? 0 : (columns + g - 1) / g
    }
}

extension QuantRecipe {
    /// The stored type as users name it: the GGUF block type (Q4_0, Q5_K, ...) or
    /// "int<bits> g<group>" (per channel: "int<bits> pc") for the integer grid.
    public var typeName: String {
        switch format {
        case .integer: return "int\(bits) " + (groupSize == -1 ? "pc" : "g\(groupSize)")
        default: return String(format.rawValue.dropFirst("gguf".count))
        }
    }

    /// The grid this recipe quantizes onto.
    public func makeGrid() -> any QuantizationGrid {
        switch format {
        case .integer: return ReferenceGrid(bits: bits, symmetric: symmetric)
        case .ggufQ4_0: return GGUFQ4_0Grid()
        case .ggufQ4_1: return GGUFQ4_1Grid()
        case .ggufQ8_0: return GGUFQ8_0Grid()
        case .ggufQ5_0: return GGUFQ5_0Grid()
        case .ggufQ5_1: return GGUFQ5_1Grid()
        case .ggufQ2_K, .ggufQ3_K, .ggufQ4_K, .ggufQ5_K, .ggufQ6_K: return KQuantGrid(format.kQuantType!)
        }
    }
}
