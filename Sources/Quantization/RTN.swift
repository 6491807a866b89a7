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
        let importance = try Checks.importance(importance, columns: weight.cols, tensor: name)
        switch recipe.format {
        case .integer:
            return try run(
                weight, recipe, ReferenceGrid(bits: recipe.bits, symmetric: recipe.symmetric), importance, name)
        case .ggufQ4_0: return try run(weight, recipe, GGUFQ4_0Grid(), importance, name)
        case .ggufQ4_1: return try run(weight, recipe, GGUFQ4_1Grid(), importance, name)
        case .ggufQ8_0: return try run(weight, recipe, GGUFQ8_0Grid(), importance, name)
        }
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
