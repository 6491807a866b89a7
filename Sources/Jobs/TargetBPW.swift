import Foundation
import ModelIO
import Models
import Quantization

/// `--target-bpw X`: bits where they matter. A sensitivity job (RTN on every candidate GGUF
/// type, in parallel mode, so its statistics are the full-precision model's) measures each
/// linear's output error per type; `BitAllocation` chooses the types of least summed error
/// whose bits average at most X; the job then runs with them as `tensorTypes`. Both jobs go
/// through the same runner (the local executor or the cluster), so the sensitivities are
/// computed as that runner's reconstruct tasks, and the choice is a pure function of them.
public enum TargetBPW {
    /// The sensitivity job of `spec`: its output file is not kept (`run` removes it).
    public static func sensitivitySpec(_ spec: JobSpec) -> JobSpec {
        var s = spec
        s.method = .rtn
        s.mode = .parallel
        s.scaleSearch = true
        s.errorReport = true
        s.measureTypes = true
        s.targetBPW = nil
        s.tensorTypes = nil
        s.rowParts = 1
        s.format = .ggufQ8_0
        s.bits = nil
        s.groupSize = nil
        s.symmetric = nil
        s.evalFile = nil
        // Its errors come from its own statistics; it writes no imatrix.
        s.imatrix = nil
        s.imatrixOut = nil
        s.output = spec.output + ".sensitivity.gguf"
        return s
    }

    /// The types `BitAllocation` chooses from a sensitivity job's report, by tensor name.
    public static func choose(
        from sensitivity: JobReport, target: Double
    ) throws -> (types: [String: WeightFormat], choice: BitAllocation.Choice) {
        var tensors: [BitAllocation.Tensor] = []
        var keys: [String] = []
        for l in sensitivity.linears.sorted(by: { ($0.block, $0.linear) < ($1.block, $1.linear) }) {
            guard let weights = l.weights, let measured = l.candidates, !measured.isEmpty else {
                throw JobError("sensitivity report: \(l.tensor) has no measured candidate types")
            }
            let candidates = try measured.keys.sorted().map { name in
                guard let f = WeightFormat(rawValue: name) else {
                    throw JobError("sensitivity report: \(l.tensor): unknown type '\(name)'")
                }
                return BitAllocation.Candidate(format: f, error: measured[name]!)
            }
            tensors.append(BitAllocation.Tensor(name: l.tensor, weights: weights, candidates: candidates))
            keys.append(JobSpec.typeKey(linear: l.linear, block: l.block))
        }
        let choice: BitAllocation.Choice
        do { choice = try BitAllocation.choose(tensors, targetBitsPerWeight: target) } catch {
            throw JobError("--target-bpw \(target): \(error)")
        }
        return (Dictionary(uniqueKeysWithValues: zip(keys, choice.formats)), choice)
    }

    /// A target resolved: the job with the chosen types, and what chose them.
    public struct Resolution: Sendable {
        /// The job with `tensorTypes` set (its target kept, for the report).
        public var spec: JobSpec
        /// The sensitivity job's report.
        public var sensitivity: JobReport
        public var choice: BitAllocation.Choice
    }

    /// Resolves `spec`'s target: checks the whole job before any work, runs its sensitivity
    /// job through `run`, chooses the types. The chain `kiln run` (locally or with --workers)
    /// and `kiln submit` (against a coordinator) share. `validate` checks the job without its
    /// target (every other option; `run`'s runner refuses an unresolved target) and returns
    /// the model's view when it can open it, for the check that the linears can meet the
    /// target. The sensitivity job's output and report are removed afterwards if they appeared
    /// here (a coordinator on another machine keeps its copy).
    public static func resolve(
        _ spec: JobSpec, validate: (JobSpec) throws -> (any ModelView)?, run: (JobSpec) throws -> JobReport
    ) throws -> Resolution {
        guard let target = spec.targetBPW, spec.tensorTypes == nil else {
            throw JobError("resolve: the job has no --target-bpw to resolve")
        }
        try spec.validateTargetBPW()
        var probe = spec
        probe.targetBPW = nil
        if let view = try validate(probe) { try spec.validateTargetFits(view) }
        let sense = sensitivitySpec(spec)
        // Only what the sensitivity job itself creates is removed afterwards.
        let created = [sense.output, JobReport.url(forOutput: sense.output).path].filter {
            !FileManager.default.fileExists(atPath: $0)
        }
        defer { for p in created { try? FileManager.default.removeItem(atPath: p) } }
        let measured = try run(sense)
        let (types, choice) = try choose(from: measured, target: target)
        var main = spec
        main.tensorTypes = types
        return Resolution(spec: main, sensitivity: measured, choice: choice)
    }

    /// Runs `spec` through `run`; with a target, first its sensitivity job, then the job with
    /// the chosen types. The final report carries each linear's sensitivities and a note.
    /// `limits`: those the runner applies, for the check of the whole job before any work.
    public static func run(
        _ spec: JobSpec, limits: JobLimits = JobLimits(), run: (JobSpec) throws -> JobReport
    ) throws -> JobReport {
        guard spec.targetBPW != nil, spec.tensorTypes == nil else { return try run(spec) }
        let resolved = try resolve(spec, validate: { try $0.validate(limits: limits) }, run: run)
        var report = try run(resolved.spec)
        resolved.annotate(&report)
        try OutputPlacement.write(try report.jsonData(), to: JobReport.url(forOutput: report.output), replace: true)
        return report
    }
}

extension TargetBPW.Resolution {
    /// The job's report with each linear's sensitivities and a note of the choice.
    public func annotate(_ report: inout JobReport) {
        let byTensor = Dictionary(
            sensitivity.linears.map { ($0.tensor, $0.candidates) }, uniquingKeysWith: { a, _ in a })
        for i in report.linears.indices { report.linears[i].candidates = byTensor[report.linears[i].tensor] ?? nil }
        let counts = Dictionary(grouping: choice.formats, by: { $0 }).map { ($0.key.typeName, $0.value.count) }
        report.notes.append(
            String(format: "target %.4g bpw: the linears average %.4f bpw; ", spec.targetBPW ?? 0, choice.bitsPerWeight)
                + counts.sorted { $0.0 < $1.0 }.map { "\($0.0) x\($0.1)" }.joined(separator: ", ")
                + String(format: " (sensitivity job: %.1f s)", sensitivity.times.total))
    }
}

extension WeightFormat {
    /// llama.cpp's name of a GGUF type (Q4_0, Q4_K, ...).
    var typeName: String { String(rawValue.dropFirst("gguf".count)) }
}

extension JobSpec {
    /// `--target-bpw` and `tensorTypes` checks that need no file.
    func validateTypeOptions() throws {
        try validateTargetBPW()
        if targetBPW != nil && tensorTypes == nil {
            throw JobError(
                "--target-bpw needs its sensitivity job first: kiln run resolves it (with --workers N on the "
                    + "cluster's code path); a coordinator takes the job with the types it chose")
        }
        if measureTypes && (method != .rtn || !format.isGGUF || rowParts != 1 || mode != .parallel) {
            throw JobError("a sensitivity job (measure_types) is RTN into a GGUF type, in parallel mode, rows whole")
        }
        if let types = tensorTypes {
            guard format.isGGUF else { throw JobError("tensor types apply to GGUF formats, not \(format.rawValue)") }
            guard types.count <= SpecBounds.tensorTypes else {
                throw JobError("tensor types: \(types.count) entries, more than \(SpecBounds.tensorTypes)")
            }
            if let (name, f) = types.first(where: { $0.value.bitsPerWeight == nil }) {
                throw JobError("tensor types: \(name) has \(f.rawValue), not a GGUF type")
            }
        }
    }

    /// `--target-bpw X` itself: a bits figure the GGUF types can meet, and no flag it overrides.
    public func validateTargetBPW() throws {
        guard let t = targetBPW else { return }
        guard t.isFinite, (2...8.5).contains(t) else {
            throw JobError("--target-bpw \(t) is out of range: use 2 to 8.5 bits per weight (e.g. 4.5)")
        }
        guard format.isGGUF else {
            throw JobError(
                "--target-bpw chooses GGUF types per tensor; --format \(format.rawValue) is not GGUF: use a gguf-* format"
            )
        }
        if method.usesAWQ {
            throw JobError(
                "--target-bpw does not combine with --method \(method.rawValue) yet (it may choose K types, which "
                    + "AWQ does not fit): use --method gptq or rtn")
        }
        for (flag, given) in [
            ("--bits", bits != nil), ("--group", groupSize != nil), ("--sym/--no-sym", symmetric != nil),
        ]
        where given {
            throw JobError("--target-bpw chooses each tensor's type, so \(flag) cannot be given: drop it")
        }
    }

    /// `--target-bpw` against the model: at least the bits of each linear's smallest candidate type.
    func validateTargetFits(_ view: any ModelView) throws {
        guard let target = targetBPW else { return }
        let c = view.config
        let (q, kv, hidden, ffn) = (
            c.headCount * c.headDim, c.kvHeadCount * c.headDim, c.hiddenSize, c.intermediateSize
        )
        // (rows, columns) of q, k, v, o, gate, up, down.
        let shapes = [
            (q, hidden), (kv, hidden), (kv, hidden), (hidden, q), (ffn, hidden), (ffn, hidden), (hidden, ffn),
        ]
        let weights = shapes.map { Double($0.0) * Double($0.1) }
        let least =
            zip(shapes, weights).map { s, w in
                w * Self.candidateTypes(columns: s.1).compactMap(\.bitsPerWeight).min()!
            }.reduce(0, +) / weights.reduce(0, +)
        if target < least {
            throw JobError(
                String(
                    format: "--target-bpw %g is below the least these types allow on %@: %.4f bits per weight",
                    target, view.url.lastPathComponent, least))
        }
    }

    /// `tensorTypes` against the model: a type for every linear, one its rows fit.
    func validateTensorTypes(_ view: any ModelView) throws {
        guard let types = tensorTypes else { return }
        let c = view.config
        var expected = Set<String>()
        for b in 0..<c.layerCount {
            for l in Linear.allCases {
                let key = Self.typeKey(linear: l.ggufName, block: b)
                expected.insert(key)
                guard let f = types[key] else { throw JobError("tensor types: no type for \(key)") }
                let columns =
                    l == .ffnDown ? c.intermediateSize : l == .attnOutput ? c.headCount * c.headDim : c.hiddenSize
                if let m = f.rowMultiple, columns % m != 0 {
                    throw JobError(
                        "tensor types: \(key) has \(columns) input columns, not a multiple of \(f.typeName)'s \(m)")
                }
            }
        }
        if let extra = types.keys.sorted().first(where: { !expected.contains($0) }) {
            throw JobError("tensor types: \(extra) is not a linear of \(view.url.lastPathComponent)")
        }
    }
}
