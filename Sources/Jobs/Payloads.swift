import Calibration
import Foundation
import Quantization
import Tensor

// Serializable inputs and outputs of the tasks. Everything a task returns is one of
// these Codable values, so a coordinator can receive it from any worker; shard
// activations are not among them (they stay in the worker's ActivationStore).

/// collect(b, s) -> partial statistics, one per linear group of block b (group order).
public struct CollectResult: Codable, Sendable, Equatable {
    public var block: Int
    public var shard: Int
    public var statistics: [LinearStatistics]
    public var tokens: Int

    public init(block: Int, shard: Int, statistics: [LinearStatistics], tokens: Int) {
        self.block = block
        self.shard = shard
        self.statistics = statistics
        self.tokens = tokens
    }
}

/// merge(b) -> merged statistics per linear group.
public struct MergeResult: Codable, Sendable, Equatable {
    public var block: Int
    public var statistics: [LinearStatistics]
}

/// What reconstruct(b, g) needs besides the job: the group's linears and its merged statistics.
public struct ReconstructInput: Codable, Sendable, Equatable {
    public var block: Int
    public var group: Int
    public var linears: [String]
    public var statistics: LinearStatistics

    public init(block: Int, group: Int, linears: [String], statistics: LinearStatistics) {
        self.block = block
        self.group = group
        self.linears = linears
        self.statistics = statistics
    }
}

/// One quantized linear: what the writers store and propagate runs with.
public struct QuantizedLinear: Codable, Sendable, Equatable {
    /// llama.cpp linear name ("attn_q"...).
    public var linear: String
    public var block: Int
    /// Tensor name in the input file.
    public var tensor: String
    public var rows: Int
    public var columns: Int
    public var recipe: QuantRecipe
    public var groupSize: Int
    public var groupCount: Int
    /// [rows, columns] in the file's column order (Q8_0: int8 bit patterns).
    public var codes: [UInt8]
    /// [rows, groupCount]: scale / zero as the grid defines them (GGUF: fp16-rounded).
    public var parameters: [GroupParameters]
    /// Group of each input column.
    public var groupIndex: [Int32]
    /// Per-token output error sum((W - Q) X^T)^2 / tokens, from the Hessian.
    public var outputError: Double
    /// outputError / (the same for Q = 0): the error relative to the output's energy.
    public var relativeError: Double
    /// GPTQ's sum of Losses (0 for RTN).
    public var gptqLoss: Double
    public var deadColumns: Int
    public var seconds: Double

    /// The weights this linear stands for: the grid's value of every code, bit for bit
    /// what the quantizer produced (checked when the result is made).
    public func dequantized() -> Matrix {
        let grid = recipe.makeGrid()
        return dequantize(
            rows: rows, columns: columns, codes: codes, parameters: parameters, groupIndex: groupIndex,
            groupCount: groupCount, value: grid.value)
    }
}

extension QuantizedLinear {
    private enum CodingKeys: String, CodingKey {
        case linear, block, tensor, rows, columns, recipe, groupSize, groupCount, codes, parameters, groupIndex
        case outputError, relativeError, gptqLoss, deadColumns, seconds
    }

    /// `parameters` travel as one flat [Float] (scale, zero, inverse, minimum per group):
    /// a raw blob in the cluster codec instead of one keyed object per group (~3x smaller).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(linear, forKey: .linear)
        try c.encode(block, forKey: .block)
        try c.encode(tensor, forKey: .tensor)
        try c.encode(rows, forKey: .rows)
        try c.encode(columns, forKey: .columns)
        try c.encode(recipe, forKey: .recipe)
        try c.encode(groupSize, forKey: .groupSize)
        try c.encode(groupCount, forKey: .groupCount)
        try c.encode(codes, forKey: .codes)
        try c.encode(parameters.flatMap { [$0.scale, $0.zero, $0.inverse, $0.minimum] }, forKey: .parameters)
        try c.encode(groupIndex, forKey: .groupIndex)
        try c.encode(outputError, forKey: .outputError)
        try c.encode(relativeError, forKey: .relativeError)
        try c.encode(gptqLoss, forKey: .gptqLoss)
        try c.encode(deadColumns, forKey: .deadColumns)
        try c.encode(seconds, forKey: .seconds)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let flat = try c.decode([Float].self, forKey: .parameters)
        guard flat.count % 4 == 0 else {
            throw DecodingError.dataCorruptedError(
                forKey: .parameters, in: c, debugDescription: "\(flat.count) floats is not 4 per group")
        }
        let params = stride(from: 0, to: flat.count, by: 4).map {
            GroupParameters(scale: flat[$0], zero: flat[$0 + 1], inverse: flat[$0 + 2], minimum: flat[$0 + 3])
        }
        self.init(
            linear: try c.decode(String.self, forKey: .linear), block: try c.decode(Int.self, forKey: .block),
            tensor: try c.decode(String.self, forKey: .tensor), rows: try c.decode(Int.self, forKey: .rows),
            columns: try c.decode(Int.self, forKey: .columns), recipe: try c.decode(QuantRecipe.self, forKey: .recipe),
            groupSize: try c.decode(Int.self, forKey: .groupSize),
            groupCount: try c.decode(Int.self, forKey: .groupCount),
            codes: try c.decode([UInt8].self, forKey: .codes), parameters: params,
            groupIndex: try c.decode([Int32].self, forKey: .groupIndex),
            outputError: try c.decode(Double.self, forKey: .outputError),
            relativeError: try c.decode(Double.self, forKey: .relativeError),
            gptqLoss: try c.decode(Double.self, forKey: .gptqLoss),
            deadColumns: try c.decode(Int.self, forKey: .deadColumns),
            seconds: try c.decode(Double.self, forKey: .seconds))
    }
}

/// reconstruct(b, g) -> the group's quantized linears.
public struct ReconstructResult: Codable, Sendable, Equatable {
    public var block: Int
    public var group: Int
    public var linears: [QuantizedLinear]
}

/// propagate(b, s): the next activations stay in the store; this records that it ran.
public struct PropagateResult: Codable, Sendable, Equatable {
    public var block: Int
    public var shard: Int
    public var tokens: Int
}
