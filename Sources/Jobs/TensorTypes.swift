import Quantization

// The GGUF type of each linear: the one place validation, the quantizer's recipe per linear, the
// GGUF writer and the report take it from.
//
// Named mixes follow llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) for Llama:
// - Q4_K_M: attn_v and ffn_down Q6_K in the layers of use_more_bits (the first and last eighth,
//   and every third between), the rest Q4_K.
// - Q3_K_M: attn_v Q5_K in layers 0 and 1, else Q4_K; attn_output Q4_K; ffn_down Q5_K in the
//   first sixteenth of layers, else Q4_K; the rest Q3_K.
// Then, as llama.cpp does, a row that is not a whole number of 256-value super-blocks falls back
// to a 32-block type: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and Q2_K/Q3_K -> Q4_0 (llama.cpp
// uses IQ4_NL there, which Kiln does not write). The token embedding and output stay as the input
// has them (llama.cpp would make the output Q6_K, or Q8_0 for rows not a multiple of 256).
extension OutputFormat {
    /// Whether the format writes K-quant types (one or a mix).
    public var isKQuant: Bool { isGGUF && weightFormat.kQuantType != nil }

    /// The stored type of linear `linear` (llama.cpp's name: attn_q ... ffn_down) in block `block`
    /// of `blocks`, with `columns` input columns.
    public func weightFormat(linear: String, block: Int, blocks: Int, columns: Int) -> WeightFormat {
        var f = weightFormat
        switch self {
        case .ggufQ4_K_M:
            if linear == "attn_v" || linear == "ffn_down", Self.useMoreBits(block, blocks) { f = .ggufQ6_K }
        case .ggufQ3_K_M:
            switch linear {
            case "attn_v": f = block < 2 ? .ggufQ5_K : .ggufQ4_K
            case "attn_output": f = .ggufQ4_K
            case "ffn_down": f = block < blocks / 16 ? .ggufQ5_K : .ggufQ4_K
            default: break
            }
        default: break
        }
        return Self.fallback(f, columns: columns)
    }

    /// llama.cpp's use_more_bits(i_layer, n_layers).
    public static func useMoreBits(_ i: Int, _ n: Int) -> Bool {
        i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
    }

    /// A K type's 32-block replacement when rows are not whole super-blocks (llama.cpp's
    /// convert_incompatible_tensor choices, IQ4_NL replaced by Q4_0).
    static func fallback(_ f: WeightFormat, columns: Int) -> WeightFormat {
        guard f.kQuantType != nil, columns % KQuantColumns.superBlock != 0 else { return f }
        switch f {
        case .ggufQ2_K, .ggufQ3_K: return .ggufQ4_0
        case .ggufQ4_K: return .ggufQ5_0
        case .ggufQ5_K: return .ggufQ5_1
        default: return .ggufQ8_0
        }
    }
}

enum KQuantColumns {
    static let superBlock = 256
}

extension JobSpec {
    /// The quantizer recipe of one linear: `recipe` on the linear's own type (the job's chosen
    /// type for it when it has `tensorTypes`, else its format's).
    public func recipe(linear: String, block: Int, blocks: Int, columns: Int) -> QuantRecipe {
        guard format.isGGUF else { return recipe }
        if let t = tensorTypes?[Self.typeKey(linear: linear, block: block)] { return recipe(t) }
        return recipe(format.weightFormat(linear: linear, block: block, blocks: blocks, columns: columns))
    }

    /// A linear's key in `tensorTypes`: its GGUF tensor name (blk.3.ffn_down.weight).
    public static func typeKey(linear: String, block: Int) -> String { "blk.\(block).\(linear).weight" }

    /// The GGUF types `--target-bpw` chooses among for a linear of `columns` input columns: the
    /// 32-blocks always, the K-quants when rows are whole super-blocks.
    public static func candidateTypes(columns: Int) -> [WeightFormat] {
        let blocks32: [WeightFormat] = [.ggufQ4_0, .ggufQ4_1, .ggufQ5_0, .ggufQ5_1, .ggufQ8_0]
        guard columns % KQuantColumns.superBlock == 0 else { return blocks32 }
        return [.ggufQ2_K, .ggufQ3_K, .ggufQ4_K, .ggufQ5_K, .ggufQ6_K] + blocks32
    }
}
