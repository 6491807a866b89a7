import ArgumentParser
import Calibration
import Client
import Foundation
import Jobs
import KilnProtocol

// Option groups shared by several commands: the quantization recipe (`kiln run`
// and `kiln submit` take the same options) and how to reach a coordinator.

/// The recipe options of `kiln run`, same names, defaults and meaning.
struct RecipeOptions: ParsableArguments {
    @Option(help: "Input model: a .gguf file (or a Hugging Face directory for gptq-safetensors).")
    var model: String
    @Option(help: "Calibration text file.")
    var calib: String
    @Option(help: "Calibration windows.")
    var samples = 128
    @Option(help: "Tokens per calibration window.")
    var seqlen = 512
    @Option(help: "Seed of the window sampler.")
    var seed: UInt64 = 0
    @Option(help: "consecutive | random (GPTQ reference's random windows).")
    var sampler: SamplerKind = .random
    @Option(help: "rtn | gptq")
    var method: QuantMethod = .gptq
    @Option(help: "Bits per weight (default: the format's; 4 for gptq-safetensors).")
    var bits: Int?
    @Option(help: "Input columns per group, -1 per channel (default: 32 for GGUF, 128 for gptq-safetensors).")
    var group: Int?
    @Flag(inversion: .prefixedNo, help: "Symmetric grid (default: the format's grid; gptq-safetensors: symmetric).")
    var sym: Bool?
    @Flag(help: "GPTQ: quantize columns in decreasing Hessian-diagonal order.")
    var actOrder = false
    @Flag(help: "GPTQ: fit all groups' parameters up front.")
    var staticGroups = false
    @Option(help: "GPTQ dampening, fraction of mean(diag(H)).")
    var damp = 0.01
    @Option(help: "parallel (statistics from full-precision activations) | sequential.")
    var mode: JobMode = .sequential
    @Option(help: "gguf-q4_0 | gguf-q4_1 | gguf-q8_0 | gptq-safetensors")
    var format: OutputFormat = .ggufQ4_0
    @Option(help: "Output .gguf file, or directory for gptq-safetensors.")
    var out: String
    @Option(help: "Text file for perplexity before and after.")
    var eval: String?
    @Option(help: "Evaluation windows of 512 tokens.")
    var evalWindows = 40
    @Option(help: "Calibration windows per shard (the unit of work of the task graph).")
    var shardSize = 8

    func jobSpec() -> JobSpec {
        var s = JobSpec(model: model, calibration: calib, output: out)
        s.samples = samples; s.seqlen = seqlen; s.seed = seed; s.sampler = sampler; s.method = method
        s.bits = bits; s.groupSize = group; s.symmetric = sym; s.actOrder = actOrder; s.staticGroups = staticGroups
        s.percentDamp = damp; s.mode = mode; s.format = format; s.evalFile = eval; s.evalWindows = evalWindows
        s.shardSize = shardSize
        return s
    }
}

extension JobSpec {
    /// The kiln.v1 JobSpec a coordinator receives. Paths become absolute (the
    /// coordinator does not share our working directory). Defaults that depend
    /// on the format are resolved here, because proto3 scalars cannot say "unset":
    /// bits, group_size (0 = one group per output channel, i.e. --group -1) and
    /// symmetric always carry the values the job will use.
    func wireSpec(name: String) throws -> Kiln_V1_JobSpec {
        // kiln.v1.JobSpec has no fields for these yet; refusing beats silently ignoring them.
        if staticGroups && !(format.isGGUF && actOrder) {
            throw UserError("--static-groups: the kiln.v1 JobSpec has no field for it yet; use `kiln run` for this recipe")
        }
        if shardSize != JobSpec(model: "", calibration: "", output: "").shardSize {
            throw UserError("--shard-size \(shardSize): the kiln.v1 JobSpec has no field for it yet (the coordinator uses 8); use `kiln run`")
        }
        var w = Kiln_V1_JobSpec()
        w.name = name
        w.modelPath = Self.absolute(model)
        w.method = method == .rtn ? .rtn : .gptq
        w.bits = UInt32(resolvedBits)
        w.groupSize = resolvedGroupSize < 0 ? 0 : UInt32(resolvedGroupSize)
        w.symmetric = resolvedSymmetric
        w.actOrder = actOrder
        w.mode = mode == .parallel ? .parallel : .sequential
        w.format = switch format {
        case .ggufQ4_0: .ggufQ40
        case .ggufQ4_1: .ggufQ41
        case .ggufQ8_0: .ggufQ80
        case .gptqSafetensors: .gptqSafetensors
        }
        w.outputPath = Self.absolute(output)
        w.dampPercent = Float(percentDamp)
        var c = Kiln_V1_CalibrationSpec()
        c.source = .textPath(Self.absolute(calibration))
        c.samples = UInt32(samples)
        c.seqlen = UInt32(seqlen)
        c.seed = seed
        c.sampler = sampler == .consecutive ? .contiguous : .randomWindows
        w.calibration = c
        if let evalFile {
            var e = Kiln_V1_EvalSpec()
            e.enabled = true
            e.textPath = Self.absolute(evalFile)
            e.samples = UInt32(evalWindows)
            e.seqlen = UInt32(evalContext)
            e.metrics = [.perplexity]
            w.eval = e
        }
        return w
    }

    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }
}

/// How to reach the coordinator (every cluster client command).
struct CoordinatorOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Coordinator endpoint (default: $KILN_COORDINATOR, else \(Endpoints.defaultCoordinator)).",
                               valueName: "endpoint"))
    var coordinator: String?

    @Option(help: ArgumentHelp("The coordinator's CURVE public key, Z85 (default: $KILN_CURVE_SERVER_KEY); none: plain TCP.",
                               valueName: "key"))
    var curveServerKey: String?

    @Option(help: ArgumentHelp("This client's CURVE secret key, Z85 (default: $KILN_CURVE_SECRET_KEY; else a fresh pair).",
                               valueName: "key"))
    var curveSecretKey: String?

    @Option(help: "Seconds to wait for each answer from the coordinator.")
    var timeout = 5.0

    var endpoint: String { Endpoints.coordinator(explicit: coordinator) }

    func makeClient() throws -> CoordinatorClient {
        guard timeout > 0, timeout.isFinite else { throw UserError("--timeout \(timeout) must be a positive number of seconds") }
        let env = ProcessInfo.processInfo.environment
        let serverKey = curveServerKey ?? env["KILN_CURVE_SERVER_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let secretKey = curveSecretKey ?? env["KILN_CURVE_SECRET_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let security = try serverKey.map { try ClientSecurity(serverPublicKey: $0, secretKey: secretKey) }
        return try CoordinatorClient(endpoint: endpoint, timeoutMs: Int((timeout * 1000).rounded()), security: security)
    }
}
