import Calibration
import Foundation
import ModelIO
import Quantization
import Tensor

// Inputs and outputs of the tasks. Everything a task returns is one of these plain
// values, so a coordinator can receive it from any worker (Cluster converts them to
// kiln.v1 protobuf messages); shard activations are not among them (they stay in
// the worker's ActivationStore).

/// collect(b, s) -> partial statistics, one per linear group of block b (group order).
/// Results of several shards of one block merge into one (`Tasks.combine`): `shard` is
/// then the task that carries it and `shards` every shard merged in.
public struct CollectResult: Sendable, Equatable {
    public var block: Int
    public var shard: Int
    public var statistics: [LinearStatistics]
    public var tokens: Int
    /// Strictly increasing, `shard` among them.
    public var shards: [Int]

    public init(block: Int, shard: Int, statistics: [LinearStatistics], tokens: Int, shards: [Int]? = nil) {
        self.block = block
        self.shard = shard
        self.statistics = statistics
        self.tokens = tokens
        self.shards = shards ?? [shard]
    }
}

/// merge(b) -> merged statistics per linear group.
public struct MergeResult: Sendable, Equatable {
    public var block: Int
    public var statistics: [LinearStatistics]

    public init(block: Int, statistics: [LinearStatistics]) {
        self.block = block
        self.statistics = statistics
    }
}

/// What reconstruct(b, u) needs besides the job: the unit (`ReconstructUnits`: a linear
/// group, or one row slice of it), the group's linears and its merged statistics (nil
/// when the job gathers none: RTN without the error report).
public struct ReconstructInput: Sendable, Equatable {
    public var block: Int
    public var group: Int
    public var linears: [String]
    public var statistics: LinearStatistics?

    public init(block: Int, group: Int, linears: [String], statistics: LinearStatistics?) {
        self.block = block
        self.group = group
        self.linears = linears
        self.statistics = statistics
    }
}

/// One quantized linear: what the writers store and propagate runs with.
public struct QuantizedLinear: Sendable, Equatable {
    /// llama.cpp linear name ("attn_q"...).
    public var linear: String
    public var block: Int
    /// Tensor name in the input file.
    public var tensor: String
    /// Codes, parameters and group index in the file's column order; their grid values are
    /// bit for bit what the quantizer produced (checked when the result is made).
    public var weight: QuantizedTensor
    /// Per-token output error sum((W - Q) X^T)^2 / tokens, from the Hessian; 0 when the
    /// job does not measure it (`JobSpec.resolvedErrorReport`).
    public var outputError: Double
    /// outputError / (the same for Q = 0): the error relative to the output's energy (0: not measured).
    public var relativeError: Double
    /// GPTQ's sum of Losses (0 for RTN).
    public var gptqLoss: Double
    public var deadColumns: Int
    public var seconds: Double
    /// The output error with Q = 0 (relativeError's divisor; 0: not measured).
    public var outputEnergy: Double
    /// AWQ: the op before this linear's group (its input RMSNorm) with its output channels
    /// divided by the group's scales; the writers store it in place of the original and
    /// propagate runs with it. Carried by the group's first linear (each row slice of it), so
    /// everything that carries a block's linears (propagate inputs, lineage, result files)
    /// carries it too.
    public var foldedInputOp: FoldedTensor?
    /// A sensitivity job's (`JobSpec.measureTypes`) output error of this linear on each
    /// candidate type, from which `--target-bpw` chooses; empty otherwise.
    public var candidates: [BitAllocation.Candidate] = []
    /// --imatrix-out: the group's sum of x^2 per input column over the calibration tokens (the
    /// merged Hessian's diagonal, unscaled) as llama.cpp's imatrix entry for this tensor. Carried
    /// by the first row slice only; nil otherwise.
    public var inputSquares: Imatrix.Entry?
    /// SmoothQuant of ffn_down: the scales its columns were multiplied by, which ffn_up's
    /// output rows are divided by when the block is assembled (`MigratedScales`). Carried by
    /// each row slice of the down linear; nil otherwise.
    public var migratedScales: MigratedScales?

    public init(
        linear: String, block: Int, tensor: String, weight: QuantizedTensor, outputError: Double,
        relativeError: Double, gptqLoss: Double, deadColumns: Int, seconds: Double, outputEnergy: Double = 0,
        foldedInputOp: FoldedTensor? = nil, inputSquares: Imatrix.Entry? = nil, migratedScales: MigratedScales? = nil
    ) {
        self.linear = linear
        self.block = block
        self.tensor = tensor
        self.weight = weight
        self.outputError = outputError
        self.relativeError = relativeError
        self.gptqLoss = gptqLoss
        self.deadColumns = deadColumns
        self.seconds = seconds
        self.outputEnergy = outputEnergy
        self.foldedInputOp = foldedInputOp
        self.inputSquares = inputSquares
        self.migratedScales = migratedScales
    }
}

/// A tensor of the input model with new Float values (same name and element count): an
/// RMSNorm's gamma / s after AWQ folded its scales.
public struct FoldedTensor: Sendable, Equatable {
    /// Tensor name in the input file.
    public var name: String
    public var values: [Float]

    public init(name: String, values: [Float]) {
        self.name = name
        self.values = values
    }
}

/// Scale migrated from one linear's input to the linear before it, when no norm sits between
/// them (SmoothQuant of ffn_down, whose input is silu(gate) * up): the carrying linear's
/// columns were multiplied by `scales`, so `into`'s output rows must be divided by them for
/// the block to compute what it did. Another task quantizes `into`, so the division is
/// applied where the block is assembled (propagate, the writer, the evaluation), on its
/// stored row scales: exact for a per-row symmetric grid, whose codes do not depend on the
/// row's magnitude.
public struct MigratedScales: Sendable, Equatable {
    /// Tensor name (in the input file) of the linear whose output rows are divided.
    public var into: String
    public var scales: [Float]

    public init(into: String, scales: [Float]) {
        self.into = into
        self.scales = scales
    }
}

/// reconstruct(b, u) -> the unit's quantized linears (its group's, whole or one row slice).
public struct ReconstructResult: Sendable, Equatable {
    public var block: Int
    public var group: Int
    public var linears: [QuantizedLinear]

    public init(block: Int, group: Int, linears: [QuantizedLinear]) {
        self.block = block
        self.group = group
        self.linears = linears
    }
}

/// propagate(b, s): the next activations stay in the store; this records that it ran.
public struct PropagateResult: Sendable, Equatable {
    public var block: Int
    public var shard: Int
    public var tokens: Int

    public init(block: Int, shard: Int, tokens: Int) {
        self.block = block
        self.shard = shard
        self.tokens = tokens
    }
}
