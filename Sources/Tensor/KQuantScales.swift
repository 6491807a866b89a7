// A whole K-quant tensor's super-block fields, and the K grids as `QuantizationGrid`s for the
// column-by-column code choice of GPTQ and RTN.

/// The K-quant fields of a [rows, columns] weight besides its codes (columns a multiple of 256):
/// per (row, super-block) the fp16 d and dmin, per (row, sub-block) the integer scale and min.
/// The per-(row, sub-block) `GroupParameters` the grid reads (`parameters`) follow from these,
/// with the Float32 products of ggml's dequantizer, so the values are exactly the file's.
public struct KQuantScales: Sendable, Equatable {
    public var type: KQuantType
    public var rows: Int
    /// Super-blocks per row.
    public var superBlocks: Int
    /// fp16 bit patterns, [rows, superBlocks] row-major; dmin is 0 for Q3_K and Q6_K.
    public var d: [UInt16]
    public var dmin: [UInt16]
    /// [rows, superBlocks * subBlockCount] row-major (`KQuantBlock.scales` / `mins` one after another).
    public var scales: [Int8]
    /// Empty for Q3_K and Q6_K.
    public var mins: [UInt8]

    public init(type: KQuantType, rows: Int, superBlocks: Int) {
        self.type = type
        self.rows = rows
        self.superBlocks = superBlocks
        d = [UInt16](repeating: 0, count: rows * superBlocks)
        dmin = d
        scales = [Int8](repeating: 0, count: rows * superBlocks * type.subBlockCount)
        mins = type.hasMins ? [UInt8](repeating: 0, count: scales.count) : []
    }

    public init(
        type: KQuantType, rows: Int, superBlocks: Int, d: [UInt16], dmin: [UInt16], scales: [Int8], mins: [UInt8]
    ) {
        self.type = type
        self.rows = rows
        self.superBlocks = superBlocks
        self.d = d
        self.dmin = dmin
        self.scales = scales
        self.mins = mins
    }

    /// Stores a fitted super-block's fields (not its codes).
    public mutating func set(row: Int, superBlock: Int, _ b: KQuantBlock) {
        let k = row * superBlocks + superBlock
        d[k] = b.d
        dmin[k] = b.dmin
        let n = type.subBlockCount
        for j in 0..<n {
            scales[k * n + j] = b.scales[j]
            if type.hasMins { mins[k * n + j] = b.mins[j] }
        }
    }

    /// The super-block (row, superBlock) with `codes` (its 256 codes).
    public func block(row: Int, superBlock: Int, codes: ArraySlice<UInt8>) -> KQuantBlock {
        let k = row * superBlocks + superBlock
        let n = type.subBlockCount
        return KQuantBlock(
            type: type, d: d[k], dmin: dmin[k], scales: Array(scales[(k * n)..<(k * n + n)]),
            mins: type.hasMins ? Array(mins[(k * n)..<(k * n + n)]) : [], codes: Array(codes))
    }

    /// Every sub-block's parameters, [rows, superBlocks * subBlockCount] row-major.
    public var parameters: [GroupParameters] {
        var out: [GroupParameters] = []
        out.reserveCapacity(scales.count)
        for row in 0..<rows {
            for k in 0..<superBlocks {
                out.append(contentsOf: block(row: row, superBlock: k, codes: []).groupParameters)
            }
        }
        return out
    }
}

/// The K grids quantize column by column under one sub-block's parameters (`code`, `value`);
/// their parameters come from whole super-blocks (`fit(_:stride:importance:)`), which the
/// quantizers' K paths call. A group-wise fit has no meaning for them.
extension KQuantGrid: QuantizationGrid {
    public func fit(_ base: UnsafePointer<Float>, count: Int, stride: Int) -> GroupParameters {
        preconditionFailure(
            "\(type.rawValue) parameters come from whole super-blocks (KQuantGrid.fit(_:stride:importance:))")
    }

    public func fitWeighted(_ x: UnsafePointer<Float>, count: Int, importance: UnsafePointer<Float>) -> GroupParameters
    {
        preconditionFailure(
            "\(type.rawValue) parameters come from whole super-blocks (KQuantGrid.fit(_:stride:importance:))")
    }
}
