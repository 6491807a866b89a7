import Tensor

/// Round-to-nearest quantization: each (row, group) fitted on the weights as they are,
/// then every weight rounded onto its group's grid. With `.integer` this is the GPTQ
/// reference's `Quantizer.find_params` + `quantize`; with a GGUF format it is ggml's
/// quantize_row_*_ref, code for code.
public enum RTN {
    /// `importance`: per input column (the Hessian diagonal), used when the recipe searches
    /// scales; nil weighs every column alike.
    public static func quantize(
        _ weight: Matrix, recipe: QuantRecipe, importance: [Float]? = nil, name: String = "weight"
    ) throws -> QuantizedWeight {
        try recipe.validate(columns: weight.cols, tensor: name)
        try Checks.finiteWeight(weight, tensor: name)
        if let type = recipe.format.kQuantType {
            let given = try importance.map { try Checks.importance($0, columns: weight.cols, tensor: name) }
            return try runK(weight, recipe, type, recipe.scaleSearch ? given : nil, name)
        }
        let importance = try Checks.importance(importance, columns: weight.cols, tensor: name)
        switch recipe.format {
        case .integer:
            return try run(
                weight, recipe, ReferenceGrid(bits: recipe.bits, symmetric: recipe.symmetric), importance, name)
        case .ggufQ4_0: return try run(weight, recipe, GGUFQ4_0Grid(), importance, name)
        case .ggufQ4_1: return try run(weight, recipe, GGUFQ4_1Grid(), importance, name)
        case .ggufQ8_0: return try run(weight, recipe, GGUFQ8_0Grid(), importance, name)
        case .ggufQ5_0: return try run(weight, recipe, GGUFQ5_0Grid(), importance, name)
        case .ggufQ5_1: return try run(weight, recipe, GGUFQ5_1Grid(), importance, name)
        case .ggufQ2_K, .ggufQ3_K, .ggufQ4_K, .ggufQ5_K, .ggufQ6_K:
            preconditionFailure("K formats take runK")
        }
    }

    /// A K format: each (row, super-block) fitted as llama.cpp's quantize_row_q*_K does, with
    /// `importance` as its imatrix (quantize_row_q*_K_impl) or without (the _ref functions, what
    /// llama-quantize does without an imatrix): the same codes and fields, byte for byte.
    static func runK(
        _ w: Matrix, _ recipe: QuantRecipe, _ type: KQuantType, _ importance: [Float]?, _ name: String
    ) throws -> QuantizedWeight {
        let rows = w.rows
        let cols = w.cols
        let superBlocks = cols / KQuantType.superBlockSize
        let grid = KQuantGrid(type)
        var scales = KQuantScales(type: type, rows: rows, superBlocks: superBlocks)
        var codes = [UInt8](repeating: 0, count: rows * cols)
        w.data.withUnsafeBufferPointer { wp in
            for r in 0..<rows {
                for sb in 0..<superBlocks {
                    let c0 = sb * KQuantType.superBlockSize
                    let x = wp.baseAddress! + r * cols + c0
                    let block =
                        importance.map { i in
                            i.withUnsafeBufferPointer { grid.fit(x, importance: $0.baseAddress! + c0) }
                        }
                        ?? grid.fit(x)
                    scales.set(row: r, superBlock: sb, block)
                    codes.replaceSubrange((r * cols + c0)..<(r * cols + c0 + 256), with: block.codes)
                }
            }
        }
        return try kResult(
            rows: rows, columns: cols, recipe: recipe, type: type, codes: codes, scales: scales, name: name)
    }

    /// The quantized weight of K codes and fields: one group per sub-block, values from the grid.
    static func kResult(
        rows: Int, columns cols: Int, recipe: QuantRecipe, type: KQuantType, codes: [UInt8], scales: KQuantScales,
        name: String
    ) throws -> QuantizedWeight {
        let g = type.subBlockSize
        let groups = cols / g
        let params = scales.parameters
        try Checks.scalesFit(params, groups: groups, recipe: recipe, tensor: name)
        let stored = QuantizedTensor(
            rows: rows, columns: cols, recipe: recipe, groupSize: g, groupCount: groups, codes: codes,
            parameters: params, groupIndex: (0..<cols).map { Int32($0 / g) }, kScales: scales)
        return QuantizedWeight(
            rows: rows, columns: cols, recipe: recipe, groupSize: g, groupCount: groups, codes: codes,
            parameters: params, groupIndex: stored.groupIndex, permutation: nil, inversePermutation: nil,
            dequantized: stored.dequantized(), kScales: scales)
    }

    static func run<G: QuantizationGrid>(
        _ w: Matrix, _ recipe: QuantRecipe, _ grid: G, _ importance: [Float], _ name: String
    ) throws -> QuantizedWeight {
        let rows = w.rows
        let cols = w.cols
        let g = recipe.effectiveGroupSize(columns: cols)
        let groups = recipe.groupCount(columns: cols)
        var codes = [UInt8](repeating: 0, count: rows * cols)
        var params = [GroupParameters](repeating: GroupParameters(scale: 0, zero: 0), count: rows * groups)
        var deq = Matrix(rows: rows, cols: cols)
        w.data.withUnsafeBufferPointer { wp in
            importance.withUnsafeBufferPointer { ip in
                for r in 0..<rows {
                    for k in 0..<groups {
                        let c0 = k * g
                        let c1 = min(c0 + g, cols)
                        let x = wp.baseAddress! + r * cols + c0
                        let p =
                            recipe.scaleSearch
                            ? grid.fitWeighted(x, count: c1 - c0, importance: ip.baseAddress! + c0)
                            : grid.fit(x, count: c1 - c0, stride: 1)
                        params[r * groups + k] = p
                        for c in c0..<c1 {
                            let code = grid.code(wp[r * cols + c], p)
                            codes[r * cols + c] = code
                            deq.data[r * cols + c] = grid.value(code, p)
                        }
                    }
                }
            }
        }
        try Checks.scalesFit(params, groups: groups, recipe: recipe, tensor: name)
        let gidx = (0..<cols).map { Int32($0 / g) }
        return QuantizedWeight(
            rows: rows, columns: cols, recipe: recipe, groupSize: g, groupCount: groups, codes: codes,
            parameters: params, groupIndex: gidx, permutation: nil, inversePermutation: nil,
            dequantized: deq)
    }
}
