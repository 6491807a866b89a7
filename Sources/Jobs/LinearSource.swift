import Foundation
import Quantization

/// What the output writers need of the quantized linears: which tensors are quantized
/// (with a small summary) up front, then each linear by tensor name, one at a time.
/// `kiln run` hands a dictionary; the coordinator reads its durable result files on
/// demand, so the codes of the whole model are never in memory at once.
public protocol QuantizedLinearSource {
    /// Every quantized tensor by name.
    func summaries() throws -> [String: QuantizedLinearSummary]
    /// The quantized linear of `tensor` (one of `summaries()`'s names).
    func linear(_ tensor: String) throws -> QuantizedLinear
}

/// What a writer must know of a quantized linear before writing any tensor.
public struct QuantizedLinearSummary: Sendable, Equatable {
    public var rows: Int
    public var columns: Int
    /// Some group's zero point is exactly 0 (GPTQ safetensors then needs gptq_v2).
    public var hasZeroPointZero: Bool
    /// The stored type (GGUF: its block type).
    public var format: WeightFormat
    /// AWQ's folded norm this linear carries (`QuantizedLinear.foldedInputOp`).
    public var foldedInputOp: FoldedTensor?
    /// SmoothQuant's scales for the linear before this one (`QuantizedLinear.migratedScales`).
    public var migratedScales: MigratedScales?

    public init(_ q: QuantizedLinear) {
        format = q.weight.recipe.format
        rows = q.weight.rows
        columns = q.weight.columns
        hasZeroPointZero = q.weight.parameters.contains { $0.zero == 0 }
        foldedInputOp = q.foldedInputOp
        migratedScales = q.migratedScales
    }
}

extension Dictionary where Key == String, Value == QuantizedLinearSummary {
    /// AWQ's folded tensors by name: what the writers store in place of the input's. One
    /// tensor carried twice must carry the same values.
    public func foldedTensors() throws -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for f in values.compactMap(\.foldedInputOp) {
            if let seen = out[f.name], seen != f.values {
                throw JobError("two quantized linears carry different folded values of \(f.name)")
            }
            out[f.name] = f.values
        }
        return out
    }
}

extension Dictionary: QuantizedLinearSource where Key == String, Value == QuantizedLinear {
    public func summaries() throws -> [String: QuantizedLinearSummary] { mapValues(QuantizedLinearSummary.init) }

    public func linear(_ tensor: String) throws -> QuantizedLinear {
        guard let q = self[tensor] else { throw JobError("no quantized result for \(tensor)") }
        return q
    }
}
