import Foundation
import Quantization

/// Applies `MigratedScales` where a block's quantized linears are assembled: the target
/// linear's output rows divided by the scales its successor's columns were multiplied by.
public enum ScaleMigration {
    /// `linears` by tensor name, each migration they carry applied to its target among them.
    public static func apply(_ linears: [String: QuantizedLinear]) throws -> [String: QuantizedLinear] {
        let m = try migrations(linears.values.map(\.migratedScales))
        return try linears.mapValues { try applying(m, to: $0) }
    }

    /// `linears` in their order, each migration they carry applied to its target among them.
    public static func apply(_ linears: [QuantizedLinear]) throws -> [QuantizedLinear] {
        let m = try migrations(linears.map(\.migratedScales))
        return try linears.map { try applying(m, to: $0) }
    }

    static func applying(_ m: [String: [Float]], to q: QuantizedLinear) throws -> QuantizedLinear {
        try m[q.tensor].map { try q.dividingOutputRows(by: $0) } ?? q
    }

    /// The scales by target tensor name; one target carried twice must carry the same scales
    /// (every row slice of the successor computed them from the same statistics).
    static func migrations(_ carried: [MigratedScales?]) throws -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for m in carried.compactMap({ $0 }) {
            if let seen = out[m.into], seen != m.scales {
                throw JobError("two quantized linears carry different migrated scales for \(m.into)")
            }
            out[m.into] = m.scales
        }
        return out
    }
}

extension QuantizedLinear {
    /// This linear with output row r's values divided by scales[r], on its stored parameters:
    /// an integer grid's value is scale * (code - zero), so dividing the row's scales divides
    /// the row and leaves the codes. GGUF block types are refused (their fp16 d would round).
    public func dividingOutputRows(by scales: [Float]) throws -> QuantizedLinear {
        let w = weight
        guard w.recipe.format == .integer, w.kScales == nil else {
            throw JobError("\(tensor): migrated scales apply to integer grids, not \(w.recipe.format)")
        }
        guard scales.count == w.rows else {
            throw JobError("\(tensor): \(scales.count) migrated scales for \(w.rows) output rows")
        }
        if let i = scales.firstIndex(where: { !$0.isFinite || $0 <= 0 }) {
            throw JobError("\(tensor): migrated scale \(i) is \(scales[i]), not a positive finite number")
        }
        var q = self
        for r in 0..<w.rows {
            for g in 0..<w.groupCount {
                q.weight.parameters[r * w.groupCount + g].scale /= scales[r]
                q.weight.parameters[r * w.groupCount + g].inverse *= scales[r]
            }
        }
        return q
    }
}

extension Dictionary where Key == String, Value == QuantizedLinearSummary {
    /// The migrated scales by target tensor name (`ScaleMigration`).
    public func migrations() throws -> [String: [Float]] {
        try ScaleMigration.migrations(values.map(\.migratedScales))
    }
}
