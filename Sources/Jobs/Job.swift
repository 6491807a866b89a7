import Calibration
import Foundation
import ModelIO
import Models
import Tensor

/// One quantization job end to end on this machine: validate, load, run the task graph
/// with the local executor, write the output, evaluate, report.
public enum Job {
    /// `concurrency`: graph tasks run at once, each on one BLAS thread (nil: the BLAS
    /// thread count, so `--threads N` means N tasks in the graph and N BLAS threads
    /// for the evaluation). The output does not depend on it.
    /// `spill`: keep calibration activations in files under this directory (a private
    /// subdirectory, removed afterwards) instead of memory.
    public static func run(
        _ spec: JobSpec, concurrency: Int? = nil, spill: URL? = nil, limits: JobLimits = JobLimits(),
        progress: ((JobEvent) -> Void)? = nil
    ) throws -> JobReport {
        let start = DispatchTime.now()
        var limits = limits
        limits.activationsInMemory = spill == nil
        try spec.validate(limits: limits)
        var times = PhaseTimes()
        var notes: [String] = []

        progress?(.phase("load"))
        var t0 = DispatchTime.now()
        let ctx = try JobContext.open(spec)
        let evaluation = try JobEvaluation(spec: spec, view: ctx.view, model: ctx.model)
        times.load = seconds(since: t0)

        t0 = DispatchTime.now()
        let before = try evaluation?.before(progress: progress)
        times.evalBefore = seconds(since: t0)

        var store: ActivationStore = InMemoryActivationStore()
        if let spill {
            let dir = spill.appendingPathComponent("kiln-activations-\(UUID().uuidString.prefix(8))")
            store = try FileActivationStore(directory: dir)
            notes.append("activations spilled to \(spill.path)")
        }
        defer { if let s = store as? FileActivationStore { try? FileManager.default.removeItem(at: s.directory) } }
        let executor = LocalExecutor(context: ctx, store: store, concurrency: concurrency ?? BLAS.threads)
        let graph = try executor.run(progress: progress)
        times.collect = graph.times.collect
        times.merge = graph.times.merge
        times.reconstruct = graph.times.reconstruct
        times.propagate = graph.times.propagate
        let linears = graph.linears

        progress?(.phase("write"))
        t0 = DispatchTime.now()
        let out = URL(fileURLWithPath: spec.output)
        var gptqFormat: String?
        if spec.format.isGGUF {
            try GGUFOutput.write(spec: spec, view: ctx.view, linears: linears, to: out)
        } else if spec.format == .compressedTensorsW8A8 {
            try W8A8Output.write(spec: spec, view: ctx.view, linears: linears, to: out)
            notes.append(
                "SmoothQuant alpha \(spec.resolvedSmooth ?? 0) on q,k,v, gate,up (into the norms) and down (into "
                    + "up's rows); o not smoothed")
        } else if spec.format == .compressedTensorsW4A16 {
            try W4A16Output.write(spec: spec, view: ctx.view, linears: linears, to: out)
        } else {
            gptqFormat = try GPTQOutput.write(spec: spec, view: ctx.view, linears: linears, to: out)
            if gptqFormat == "gptq_v2" {
                notes.append(
                    "some zero points are 0, which the gptq (v1) checkpoint format cannot store: written as gptq_v2")
            }
        }
        try ImatrixExport.write(
            spec: spec, entries: ImatrixExport.entries(Array(linears.values)), tensors: linears.count)
        times.write = seconds(since: t0)

        t0 = DispatchTime.now()
        let ppl = try evaluation?.after(output: out, linears: linears, before: before, progress: progress)
        times.evalAfter = seconds(since: t0)
        times.total = seconds(since: start)

        let linearReports = graph.reconstructions.flatMap(\.linears).map { LinearReport($0, spec: spec) }
        if let f = gptqFormat { notes.append("checkpoint format \(f)") }
        let report = JobReport(
            spec: spec, output: spec.output, calibrationTokens: ctx.calibrationTokens,
            calibrationWindowTokens: spec.samples * spec.seqlen, perplexity: ppl,
            linears: linearReports, times: times, peakRSSBytes: peakRSSBytes(), notes: notes)
        try report.write()
        return report
    }
}

/// Perplexity before and after a job, with the protocol of `kiln eval`, for `kiln run`
/// with or without `--workers`. nil when the job has no evaluation file.
public struct JobEvaluation {
    let spec: JobSpec
    let view: any ModelView
    let model: LlamaModel
    let ids: [Int32]

    /// Tokenizes the evaluation text and checks it is long enough.
    public init?(spec: JobSpec, view: any ModelView, model: LlamaModel) throws {
        guard let e = spec.evalFile else { return nil }
        let tok = try makeTokenizer(view)
        let ids = try Sampler.tokens(file: URL(fileURLWithPath: e), what: "evaluation file (--eval)") { tok.encode($0) }
        let needed = spec.evalWindows * spec.evalContext
        guard ids.count >= needed else {
            throw JobError(
                "evaluation file \(e) has \(ids.count) tokens; \(spec.evalWindows) windows of \(spec.evalContext) need \(needed): lower --eval-windows"
            )
        }
        self.spec = spec
        self.view = view
        self.model = model
        self.ids = ids
    }

    /// Opens the model (lazily, blocks read on demand) for a job's evaluation.
    public static func open(_ spec: JobSpec) throws -> JobEvaluation? {
        guard spec.evalFile != nil else { return nil }
        let view = try spec.openForJob()
        return try JobEvaluation(
            spec: spec, view: view,
            model: try loadCausalLM(view: view, options: ModelLoadOptions(lazyBlocks: true)))
    }

    /// The unquantized model's perplexity (nil with --no-eval-before).
    public func before(progress: ((JobEvent) -> Void)?) throws -> Double? {
        guard spec.evalBefore else { return nil }
        progress?(.phase("eval before"))
        return try BlockwisePerplexity.evaluate(
            model: model, ids: ids, context: spec.evalContext, windows: spec.evalWindows,
            block: { try model.block($0) },
            progress: { progress?(.eval(label: "before", window: $0, windows: $1, perplexity: .nan)) }
        ).perplexity
    }

    /// The quantized model's perplexity: a GGUF output reopened as a runtime reads it;
    /// GPTQ safetensors as stored (fp16 scales), from the quantized linears.
    public func after(
        output: URL, linears: [String: QuantizedLinear], before: Double?,
        progress: ((JobEvent) -> Void)?
    ) throws -> PerplexityReport {
        progress?(.phase("eval after"))
        let after: BlockwisePerplexity.Result
        let source: String
        let evalProgress: (Int, Int) -> Void = {
            progress?(.eval(label: "after", window: $0, windows: $1, perplexity: .nan))
        }
        if spec.format.isGGUF {
            let written = try loadCausalLM(view: try openModel(output), options: ModelLoadOptions(lazyBlocks: true))
            after = try BlockwisePerplexity.evaluate(
                model: written, ids: ids, context: spec.evalContext,
                windows: spec.evalWindows, block: { try written.block($0) },
                progress: evalProgress)
            source = "written GGUF reopened"
        } else if spec.format == .compressedTensorsW8A8 {
            after = try W8A8Evaluation.perplexity(
                model: model, naming: view.naming, ids: ids, spec: spec, linears: linears, progress: evalProgress)
            source = W8A8Evaluation.source
        } else {
            // GPTQ or W4A16: the written checkpoint itself (PackedCheckpointModel dequantizes it): its fp16
            // embedding and norms too, so `kiln eval` of the directory gives this figure.
            let written = try loadCausalLM(view: try openModel(output), options: ModelLoadOptions(lazyBlocks: true))
            after = try BlockwisePerplexity.evaluate(
                model: written, ids: ids, context: spec.evalContext,
                windows: spec.evalWindows, block: { try written.block($0) },
                progress: evalProgress)
            source =
                spec.format == .compressedTensorsW4A16
                ? "written W4A16 checkpoint reopened" : "written GPTQ checkpoint reopened"
        }
        return PerplexityReport(
            file: URL(fileURLWithPath: spec.evalFile ?? "").lastPathComponent, windows: spec.evalWindows,
            context: spec.evalContext, before: before, after: after.perplexity, afterSource: source)
    }
}
