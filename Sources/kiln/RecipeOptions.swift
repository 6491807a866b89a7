import ArgumentParser
import Calibration
import Client
import Cluster
import Foundation
import Jobs
import KilnProtocol

// Option groups shared by several commands: the quantization recipe (`kiln run`
// and `kiln submit` take the same options) and how to reach a coordinator.

/// The recipe options of `kiln run`, same names, defaults and meaning.
struct RecipeOptions: ParsableArguments {
    @Option(help: "Input model: a .gguf file (or a Hugging Face directory for gptq-safetensors).")
    var model: String
    @Option(help: "Calibration text file (RTN without --error-report only checks that it exists).")
    var calib: String
    @Option(parsing: .unconditional, help: "Calibration windows.")
    var samples = 128
    @Option(parsing: .unconditional, help: "Tokens per calibration window.")
    var seqlen = 512
    @Option(parsing: .unconditional, help: "Seed of the window sampler.")
    var seed: UInt64 = 0
    @Option(help: "consecutive | random (GPTQ reference's random windows).")
    var sampler: SamplerKind = .random
    @Option(
        help: """
            rtn | gptq | awq | awq+gptq. awq: AWQ's per-channel scales for q,k,v and gate,up (folded into the \
            norm before them) and clipping, then round-to-nearest; awq+gptq: the same, then GPTQ on the scaled \
            weights. o and down are clipped, not scaled.
            """)
    var method: QuantMethod = .gptq
    @Option(parsing: .unconditional, help: "Bits per weight (default: the format's; 4 for gptq-safetensors).")
    var bits: Int?
    @Option(
        parsing: .unconditional,
        help: "Input columns per group, -1 per channel (default: 32 for GGUF, 128 for gptq-safetensors).")
    var group: Int?
    @Flag(inversion: .prefixedNo, help: "Symmetric grid (default: the format's grid; gptq-safetensors: symmetric).")
    var sym: Bool?
    @Flag(inversion: .prefixedNo, help: "GPTQ: quantize columns in decreasing Hessian-diagonal order.")
    var actOrder = true
    @Flag(
        inversion: .prefixedNo,
        help: "GPTQ: fit all groups' parameters on the original weights up front (default: with act-order).")
    var staticGroups: Bool?
    @Option(parsing: .unconditional, help: "GPTQ dampening, fraction of mean(diag(H)).")
    var damp = 0.01
    @Option(parsing: .unconditional, help: "GPTQ columns per lazy-update block (default 128).")
    var blockSize: Int?
    @Option(help: "parallel (statistics from full-precision activations) | sequential.")
    var mode: JobMode = .sequential
    @Option(
        help: ArgumentHelp(
            "gguf-q4_0 | gguf-q4_1 | gguf-q8_0 | gguf-q2_k | gguf-q3_k | gguf-q4_k | gguf-q5_k | gguf-q6_k | "
                + "gguf-q4_k_m | gguf-q3_k_m | gptq-safetensors | compressed-tensors-w8a8 | compressed-tensors-w4a16",
            discussion:
                "q4_k_m / q3_k_m are llama.cpp's mixes for Llama. K types fall back to 32-blocks for rows not a "
                + "multiple of 256 (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, Q2_K/Q3_K->Q4_0). compressed-tensors-w8a8: "
                + "SmoothQuant (--smooth), int8 weights per output channel (rtn or gptq) and int8 dynamic per-token "
                + "activations, as vLLM loads it. compressed-tensors-w4a16: 4-bit symmetric weights with one "
                + "scale per group (--group, 128 by default), float activations (pack-quantized, as vLLM and "
                + "llm-compressor use it)"))
    var format: OutputFormat = .ggufQ4_0
    @Option(help: "Output .gguf file, or directory for gptq-safetensors and compressed-tensors-w8a8/w4a16.")
    var out: String
    @Option(help: "Text file for perplexity before and after.")
    var eval: String?
    @Option(parsing: .unconditional, help: "Evaluation windows of 512 tokens.")
    var evalWindows = 40
    @Flag(
        inversion: .prefixedNo,
        help: "With --eval: also measure the unquantized model (skip it when comparing recipes).")
    var evalBefore = true
    @Option(parsing: .unconditional, help: "Calibration windows per shard (the unit of work of the task graph).")
    var shardSize = 8
    @Flag(
        help:
            "Replace an existing output: a file, or a directory holding only a previous Kiln output (its manifest); never inputs or files Kiln did not write."
    )
    var overwrite = false
    @Flag(
        inversion: .prefixedNo,
        help:
            "Measure each linear's output error from calibration statistics (default: on for GPTQ; off for RTN, which then reads no calibration text and runs only the quantizer)."
    )
    var errorReport: Bool?
    @Option(
        parsing: .unconditional,
        help:
            "Cut each linear's output rows into this many reconstruct tasks, so more workers share a block (the output does not depend on the worker count)."
    )
    var rowParts = 1
    @Flag(
        inversion: .prefixedNo,
        help:
            "Choose each group's scale by importance-weighted search, the Hessian diagonal as importance (default: on for GPTQ; RTN with it reads calibration statistics)."
    )
    var scaleSearch: Bool?
    @Option(
        parsing: .unconditional,
        help:
            "compressed-tensors-w8a8: SmoothQuant's alpha, 0 to 1 (default 0.8): how much of each input channel's range moves from the activations into the weights of q,k,v, gate,up and down (down's scales go into up's rows; o is not smoothed)."
    )
    var smooth: Double?
    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "GGUF formats: choose each linear's type (Q2_K...Q8_0) so the linears average at most X bits per weight with the least summed sensitivity, measured first by a sensitivity job (kiln run).",
            valueName: "X"))
    var targetBpw: Double?
    @Option(
        help:
            "RTN: llama.cpp imatrix file (llama-imatrix's .gguf or legacy .dat) whose mean x^2 per column is the scale search's importance, as llama-quantize --imatrix; no calibration statistics are gathered."
    )
    var imatrix: String?
    @Option(
        help:
            "Also write the job's calibration statistics as a llama.cpp imatrix .gguf (llama-quantize --imatrix reads it); for jobs that gather statistics."
    )
    var imatrixOut: String?

    func jobSpec() -> JobSpec {
        var s = JobSpec(model: model, calibration: calib, output: out)
        s.samples = samples
        s.seqlen = seqlen
        s.seed = seed
        s.sampler = sampler
        s.method = method
        s.bits = bits
        s.groupSize = group
        s.symmetric = sym
        s.actOrder = actOrder
        s.staticGroups = staticGroups
        s.percentDamp = damp
        s.mode = mode
        s.format = format
        s.evalFile = eval
        s.evalWindows = evalWindows
        s.evalBefore = evalBefore
        s.shardSize = shardSize
        s.blockSize = blockSize
        s.overwrite = overwrite
        s.errorReport = errorReport
        s.rowParts = rowParts
        s.scaleSearch = scaleSearch
        s.smooth = smooth
        s.targetBPW = targetBpw
        s.imatrix = imatrix
        s.imatrixOut = imatrixOut
        return s
    }
}

extension JobSpec {
    /// Paths made absolute: the coordinator does not share our working directory.
    func withAbsolutePaths() -> JobSpec {
        var s = self
        s.model = Self.absolute(model)
        s.calibration = Self.absolute(calibration)
        s.output = Self.absolute(output)
        s.evalFile = evalFile.map(Self.absolute)
        s.imatrix = imatrix.map(Self.absolute)
        s.imatrixOut = imatrixOut.map(Self.absolute)
        return s
    }

    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }
}

/// `--max-job-memory SIZE` of `kiln run` and `kiln coordinator`; nil: the default share of RAM.
func maxJobMemoryBytes(_ text: String?) throws -> UInt64 {
    guard let text else { return JobLimits.defaultMaxJobMemory }
    guard let bytes = MemoryEstimate.parse(text) else {
        throw UserError("--max-job-memory \(text): give a size such as 512M, 16G or a byte count")
    }
    return bytes
}
