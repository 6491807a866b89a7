import Calibration
import Foundation
import Quantization

// A quantization job: everything `kiln run` accepts, as one Codable value. The
// cluster ships this value to workers; every task result is a function of it
// (and the task's explicit inputs), never of the machine or worker count.

public enum QuantMethod: String, Codable, Sendable, CaseIterable {
    case rtn, gptq
    /// AWQ scales (folded into the norm before q,k,v and gate,up) and clip, then RTN.
    case awq
    /// AWQ scales and clip, then GPTQ on the scaled weights with the scaled input's Hessian.
    case awqGPTQ = "awq+gptq"

    /// GPTQ is the quantizer (with or without AWQ first).
    public var usesGPTQ: Bool { self == .gptq || self == .awqGPTQ }
    /// AWQ's scale search and clip run before quantizing.
    public var usesAWQ: Bool { self == .awq || self == .awqGPTQ }
}

public enum JobMode: String, Codable, Sendable, CaseIterable {
    /// Statistics of every block from full-precision activations.
    case parallel
    /// Each block sees the outputs of the already-quantized blocks before it.
    case sequential
}

public enum OutputFormat: String, Codable, Sendable, CaseIterable {
    case ggufQ4_0 = "gguf-q4_0"
    case ggufQ4_1 = "gguf-q4_1"
    case ggufQ8_0 = "gguf-q8_0"
    case gptqSafetensors = "gptq-safetensors"
    /// K-quants, every linear one type (rows not a multiple of 256 fall back: `TensorTypes.swift`).
    case ggufQ2_K = "gguf-q2_k"
    case ggufQ3_K = "gguf-q3_k"
    case ggufQ4_K = "gguf-q4_k"
    case ggufQ5_K = "gguf-q5_k"
    case ggufQ6_K = "gguf-q6_k"
    /// llama.cpp's named mixes: a type per linear (`weightFormat(linear:block:blocks:columns:)`).
    case ggufQ4_K_M = "gguf-q4_k_m"
    case ggufQ3_K_M = "gguf-q3_k_m"
    /// compressed-tensors W8A8 (a directory): int8 weights per output channel, int8 dynamic
    /// per-token activations, SmoothQuant folded into the norms before q,k,v and gate,up.
    case compressedTensorsW8A8 = "compressed-tensors-w8a8"
    /// compressed-tensors W4A16 (a directory, "pack-quantized"): symmetric 4-bit weights in
    /// groups with one scale each, the activations in float, as vLLM and llm-compressor use it.
    case compressedTensorsW4A16 = "compressed-tensors-w4a16"

    public var isGGUF: Bool { ![.gptqSafetensors, .compressedTensorsW8A8, .compressedTensorsW4A16].contains(self) }

    /// The quantizer's grid for this format; a mix's base type (its linears' types: `weightFormat(linear:...)`).
    public var weightFormat: WeightFormat {
        switch self {
        case .ggufQ4_0: return .ggufQ4_0
        case .ggufQ4_1: return .ggufQ4_1
        case .ggufQ8_0: return .ggufQ8_0
        case .gptqSafetensors, .compressedTensorsW8A8, .compressedTensorsW4A16: return .integer
        case .ggufQ2_K: return .ggufQ2_K
        case .ggufQ3_K, .ggufQ3_K_M: return .ggufQ3_K
        case .ggufQ4_K, .ggufQ4_K_M: return .ggufQ4_K
        case .ggufQ5_K: return .ggufQ5_K
        case .ggufQ6_K: return .ggufQ6_K
        }
    }

    /// What the GGUF block type fixes, for error messages.
    var gridDescription: String {
        switch self {
        case .ggufQ4_0: return "4-bit codes in blocks of 32 columns on a symmetric grid"
        case .ggufQ4_1: return "4-bit codes in blocks of 32 columns on an asymmetric grid (scale and minimum)"
        case .ggufQ8_0: return "8-bit codes in blocks of 32 columns on a symmetric grid"
        case .gptqSafetensors: return "2, 3, 4 or 8-bit codes, any group size"
        case .compressedTensorsW8A8: return "8-bit symmetric codes, one scale per output channel"
        case .compressedTensorsW4A16: return "4-bit symmetric codes in groups of input columns, one scale per group"
        case .ggufQ4_K_M, .ggufQ3_K_M: return "llama.cpp's mix of K-quant types per tensor"
        default:
            let k = weightFormat.kQuantType!
            return "\(k.bits)-bit codes in super-blocks of 256 columns (sub-blocks of \(k.subBlockSize))"
        }
    }
}

public struct JobSpec: Codable, Sendable, Equatable {
    public var model: String
    public var calibration: String
    public var samples: Int = 128
    public var seqlen: Int = 512
    public var seed: UInt64 = 0
    public var sampler: SamplerKind = .random
    public var method: QuantMethod = .gptq
    /// nil: the format's own (4 for gguf-q4_*, 8 for gguf-q8_0, 4 for gptq-safetensors).
    public var bits: Int?
    /// nil: the format's own (32 for GGUF, 128 for gptq-safetensors); -1 per channel.
    public var groupSize: Int?
    /// nil: the format's grid (Q4_0/Q8_0 symmetric, Q4_1 asymmetric; GPTQ symmetric).
    public var symmetric: Bool?
    /// GPTQ: columns in decreasing diag(H) order. On by default: it is what makes GPTQ
    /// beat round-to-nearest on small models (SmolLM2 4-bit g64: 35.7 vs 38.7 without).
    public var actOrder: Bool = true
    /// GPTQ: every group's parameters fitted on the original weights up front. nil: on
    /// with act-order (so groups stay contiguous in the stored column order, which
    /// every runtime's kernels expect), off without it.
    public var staticGroups: Bool?
    public var percentDamp: Double = 0.01
    /// GPTQ columns per lazy-update block (nil: 128).
    public var blockSize: Int?
    public var mode: JobMode = .sequential
    public var format: OutputFormat = .ggufQ4_0
    public var output: String
    public var evalFile: String?
    public var evalWindows: Int = 40
    /// Also measure the unquantized model (skip it when comparing recipes on one model).
    public var evalBefore: Bool = true
    public var evalContext: Int = 512
    /// Calibration windows per shard. The shard partition is a function of the job
    /// only (never of how many workers run it).
    public var shardSize: Int = 8
    /// Replace an existing output (a file, or a directory holding only a previous Kiln
    /// output, by its manifest) and report. Never an input, never foreign files.
    public var overwrite: Bool = false
    /// Measure each linear's output error from its group's Hessian (the report's table).
    /// nil: on for GPTQ (it has the Hessian anyway), off for RTN, which then needs no
    /// calibration statistics at all: its graph is only reconstructs.
    public var errorReport: Bool?
    /// Each linear's output rows cut into this many slices, each its own reconstruct task
    /// (GPTQ's rows are independent given the Hessian; `ReconstructUnits`). The job's, not
    /// the worker count's: more slices let more workers share one block's quantization.
    public var rowParts: Int = 1
    /// Each group's scale (and minimum) chosen by importance-weighted search with the Hessian
    /// diagonal as importance (`QuantRecipe.scaleSearch`). nil: on for GPTQ, off for RTN (RTN
    /// with it gathers calibration statistics for the importance).
    public var scaleSearch: Bool?
    /// SmoothQuant's migration strength alpha (0...1) for compressed-tensors-w8a8; nil: 0.8.
    public var smooth: Double?
    /// Bits per weight the blocks' linears may average: each linear's GGUF type is chosen so
    /// that their summed sensitivity is least (`TargetBPW`). Resolved into `tensorTypes` by a
    /// sensitivity job before the job itself runs.
    public var targetBPW: Double?
    /// The GGUF type of each linear by tensor name (`typeKey`), replacing the format's.
    public var tensorTypes: [String: WeightFormat]?
    /// A sensitivity job: each linear's output error is also measured for every candidate type
    /// (`candidateTypes`) by RTN with the scale search, and reported (`QuantizedLinear.candidates`).
    public var measureTypes: Bool = false
    /// llama.cpp imatrix file (GGUF or legacy .dat) whose sums / count are RTN's scale-search
    /// importance, in place of the job's statistics (as llama-quantize --imatrix). RTN only.
    public var imatrix: String?
    /// Writes the job's statistics as a llama.cpp GGUF imatrix here (jobs that gather statistics).
    public var imatrixOut: String?

    public init(model: String, calibration: String, output: String) {
        self.model = model
        self.calibration = calibration
        self.output = output
    }

    public var resolvedBits: Int {
        bits ?? (format.isGGUF ? format.weightFormat.fixedBits ?? 4 : format == .compressedTensorsW8A8 ? 8 : 4)
    }

    public var resolvedGroupSize: Int {
        groupSize
            ?? (format.isGGUF ? format.weightFormat.fixedGroupSize ?? 32 : format == .compressedTensorsW8A8 ? -1 : 128)
    }

    /// SmoothQuant's alpha: compressed-tensors-w8a8 only (0.8, llm-compressor's for Llama, unless given).
    public var resolvedSmooth: Double? {
        format == .compressedTensorsW8A8 ? smooth ?? 0.8 : nil
    }

    public var resolvedSymmetric: Bool {
        symmetric ?? (!format.isGGUF || format.weightFormat.isSymmetricGGUF)
    }

    /// Whether the per-linear output error is measured (`errorReport`, else GPTQ only).
    public var resolvedErrorReport: Bool {
        errorReport ?? (method != .rtn)
    }

    /// Whether the job gathers calibration statistics (collect, merge and, in sequential
    /// mode, propagate): GPTQ's Hessian, the error report or SmoothQuant's channel maxima.
    /// RTN without them does not.
    public var needsStatistics: Bool {
        method != .rtn || resolvedErrorReport || (resolvedScaleSearch && imatrix == nil) || resolvedSmooth != nil
    }

    /// Whether groups' parameters are searched (`scaleSearch`, else GPTQ, or RTN with an imatrix).
    public var resolvedScaleSearch: Bool {
        scaleSearch ?? (method.usesGPTQ || imatrix != nil)
    }

    /// Static groups as asked, else with act-order when there are groups at all.
    public var resolvedStaticGroups: Bool {
        staticGroups ?? (actOrder && resolvedGroupSize != -1)
    }

    /// The quantizer recipe for every linear. For GGUF formats the grid is exactly
    /// the block type's, so what GPTQ optimizes is what the file stores.
    public var recipe: QuantRecipe { recipe(format.weightFormat) }

    /// The recipe on GGUF type `weightFormat` (the output format's own for non-GGUF outputs).
    public func recipe(_ weightFormat: WeightFormat) -> QuantRecipe {
        if format.isGGUF {
            var r = QuantRecipe.gguf(weightFormat, actOrder: actOrder, percentDamp: percentDamp)
            r.staticGroups = actOrder || staticGroups == true
            r.blockSize = blockSize ?? 128
            r.scaleSearch = resolvedScaleSearch
            return r
        }
        return QuantRecipe(
            format: .integer, bits: resolvedBits, symmetric: resolvedSymmetric,
            groupSize: resolvedGroupSize, actOrder: actOrder, staticGroups: resolvedStaticGroups,
            percentDamp: percentDamp, blockSize: blockSize ?? 128, scaleSearch: resolvedScaleSearch)
    }

    /// Written without `samples + shardSize - 1`, which overflows for unchecked values.
    public var shardCount: Int {
        let size = max(shardSize, 1)
        return samples / size + (samples % size == 0 ? 0 : 1)
    }

    /// Windows [start, end) of shard s.
    public func shardRange(_ s: Int) -> Range<Int> {
        let lo = s * shardSize
        return lo..<min(lo + shardSize, samples)
    }
}

extension JobSpec {
    /// Decodes a spec sent by any client: missing fields take their defaults (model,
    /// calibration and output are required), so a spec from an older or hand-written
    /// client decodes, then `validate()` says what is wrong with it.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            model: try c.decode(String.self, forKey: .model),
            calibration: try c.decode(String.self, forKey: .calibration),
            output: try c.decode(String.self, forKey: .output))
        func take<T: Decodable>(_ key: CodingKeys, _ field: inout T) throws {
            if let v = try c.decodeIfPresent(T.self, forKey: key) { field = v }
        }
        try take(.samples, &samples)
        try take(.seqlen, &seqlen)
        try take(.seed, &seed)
        try take(.sampler, &sampler)
        try take(.method, &method)
        bits = try c.decodeIfPresent(Int.self, forKey: .bits)
        groupSize = try c.decodeIfPresent(Int.self, forKey: .groupSize)
        symmetric = try c.decodeIfPresent(Bool.self, forKey: .symmetric)
        try take(.actOrder, &actOrder)
        staticGroups = try c.decodeIfPresent(Bool.self, forKey: .staticGroups)
        try take(.percentDamp, &percentDamp)
        blockSize = try c.decodeIfPresent(Int.self, forKey: .blockSize)
        try take(.mode, &mode)
        try take(.format, &format)
        evalFile = try c.decodeIfPresent(String.self, forKey: .evalFile)
        try take(.evalWindows, &evalWindows)
        try take(.evalBefore, &evalBefore)
        try take(.evalContext, &evalContext)
        try take(.shardSize, &shardSize)
        try take(.overwrite, &overwrite)
        errorReport = try c.decodeIfPresent(Bool.self, forKey: .errorReport)
        try take(.rowParts, &rowParts)
        scaleSearch = try c.decodeIfPresent(Bool.self, forKey: .scaleSearch)
        smooth = try c.decodeIfPresent(Double.self, forKey: .smooth)
        targetBPW = try c.decodeIfPresent(Double.self, forKey: .targetBPW)
        tensorTypes = try c.decodeIfPresent([String: WeightFormat].self, forKey: .tensorTypes)
        try take(.measureTypes, &measureTypes)
        imatrix = try c.decodeIfPresent(String.self, forKey: .imatrix)
        imatrixOut = try c.decodeIfPresent(String.self, forKey: .imatrixOut)
    }
}
