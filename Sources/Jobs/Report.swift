import Foundation
import ModelIO
import Models

/// Wall time of each phase of a job, seconds.
public struct PhaseTimes: Codable, Sendable, Equatable {
    public var load = 0.0
    public var collect = 0.0
    public var merge = 0.0
    public var reconstruct = 0.0
    public var propagate = 0.0
    public var write = 0.0
    public var evalBefore = 0.0
    public var evalAfter = 0.0
    public var total = 0.0

    public init() {}
}

public struct LinearReport: Codable, Sendable, Equatable {
    public var tensor: String
    public var block: Int
    public var linear: String
    /// Per-token output error sum((W - Q) X^T)^2 / tokens; nil (absent from the JSON):
    /// not computed (RTN without --error-report).
    public var outputError: Double?
    public var relativeError: Double?
    public var gptqLoss: Double
    public var seconds: Double
    /// The stored type: a GGUF block type (Q4_0, Q5_0, Q4_K, ... per tensor in the K-quant
    /// mixes) or "int<bits> g<group>" for GPTQ safetensors. nil in reports written before it existed.
    public var type: String?
    /// Rows x columns (nil in reports written before it existed).
    public var weights: Int?
    /// A sensitivity job's output error of this linear on each candidate type (`--target-bpw`'s
    /// input), by Kiln type name (ggufQ4_0 ...); nil otherwise.
    public var candidates: [String: Double]?

    /// The report line of a quantized linear (`kiln run`'s and the cluster's alike), for a
    /// job of `spec` (which says whether the error was measured).
    public init(_ q: QuantizedLinear, spec: JobSpec) {
        tensor = q.tensor
        block = q.block
        linear = q.linear
        let measured = spec.resolvedErrorReport
        outputError = measured ? q.outputError : nil
        relativeError = measured ? q.relativeError : nil
        gptqLoss = q.gptqLoss
        seconds = q.seconds
        type = q.weight.recipe.typeName
        weights = q.weight.rows * q.weight.columns
        if !q.candidates.isEmpty {
            candidates = Dictionary(
                q.candidates.map { ($0.format.rawValue, $0.error) }, uniquingKeysWith: { a, _ in a })
        }
    }
}

public struct PerplexityReport: Codable, Sendable, Equatable {
    public var file: String
    public var windows: Int
    public var context: Int
    /// nil when the job skipped it (--no-eval-before).
    public var before: Double?
    public var after: Double
    /// What "after" ran: the written GGUF reopened, or the dequantized GPTQ weights.
    public var afterSource: String
}

public struct JobReport: Codable, Sendable, Equatable {
    public var spec: JobSpec
    public var output: String
    public var calibrationTokens: Int
    /// Tokens the statistics saw (samples x seqlen).
    public var calibrationWindowTokens: Int
    public var perplexity: PerplexityReport?
    public var linears: [LinearReport]
    public var times: PhaseTimes
    public var peakRSSBytes: Int
    public var notes: [String]

    public init(
        spec: JobSpec, output: String, calibrationTokens: Int, calibrationWindowTokens: Int,
        perplexity: PerplexityReport? = nil, linears: [LinearReport], times: PhaseTimes, peakRSSBytes: Int,
        notes: [String]
    ) {
        self.spec = spec
        self.output = output
        self.calibrationTokens = calibrationTokens
        self.calibrationWindowTokens = calibrationWindowTokens
        self.perplexity = perplexity
        self.linears = linears
        self.times = times
        self.peakRSSBytes = peakRSSBytes
        self.notes = notes
    }

    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }

    /// Where the report goes: beside the output.
    /// Writes the report beside the output (replacing a previous one only with --overwrite).
    public func write() throws {
        try OutputPlacement.write(try jsonData(), to: Self.url(forOutput: output), replace: spec.overwrite)
    }

    public static func url(forOutput out: String) -> URL {
        URL(fileURLWithPath: out.hasSuffix("/") ? String(out.dropLast()) : out).appendingPathExtension("report.json")
    }

    /// The report as a text table.
    public func table() -> String {
        var s: [String] = []
        let r = spec.recipe
        s.append("model        \(spec.model)")
        s.append("output       \(output) (\(spec.format.rawValue))")
        s.append(
            "method       \(spec.method.rawValue), \(r.bits)-bit, group \(r.groupSize), \(r.symmetric ? "sym" : "asym")"
                + (r.actOrder ? ", act-order" : "") + (r.staticGroups ? ", static groups" : "")
                + ", damp \(spec.percentDamp), \(spec.mode.rawValue)")
        if spec.needsStatistics {
            s.append(
                "calibration \(spec.samples) x \(spec.seqlen) tokens (\(spec.sampler.rawValue), seed \(spec.seed)) of \(calibrationTokens) in \(URL(fileURLWithPath: spec.calibration).lastPathComponent)"
            )
        } else {
            s.append("calibration  not used (RTN without --error-report)")
        }
        if let p = perplexity {
            s.append("")
            if let before = p.before {
                s.append(
                    String(
                        format: "perplexity   before %.4f   after %.4f   (%+.2f%%, %d windows x %d of %@; after: %@)",
                        before, p.after, (p.after / before - 1) * 100, p.windows, p.context, p.file, p.afterSource))
            } else {
                s.append(
                    String(
                        format: "perplexity   after %.4f   (%d windows x %d of %@; after: %@; before not measured)",
                        p.after, p.windows, p.context, p.file, p.afterSource))
            }
        }
        s.append("")
        s.append(contentsOf: errorTable())
        s.append("")
        let t = times
        s.append(
            String(
                format:
                    "time (s)     load %.1f  collect %.1f  merge %.1f  reconstruct %.1f  propagate %.1f  write %.1f  eval %.1f + %.1f  total %.1f",
                t.load, t.collect, t.merge, t.reconstruct, t.propagate, t.write, t.evalBefore, t.evalAfter, t.total))
        s.append(String(format: "peak RSS     %.0f MiB", Double(peakRSSBytes) / 1_048_576))
        for n in notes { s.append("note         \(n)") }
        return s.joined(separator: "\n")
    }

    /// The per-linear relative output error by block, or why there is none.
    private func errorTable() -> [String] {
        guard spec.resolvedErrorReport else {
            return ["output error not computed (RTN needs no calibration statistics; --error-report measures it)"]
                + typeTable(Dictionary(grouping: linears, by: \.block))
        }
        let errors = linears.map { $0.relativeError ?? 0 }
        var s = [
            "block  attn_q    attn_k    attn_v    attn_out  ffn_gate  ffn_up    ffn_down   (relative output error)"
        ]
        let byBlock = Dictionary(grouping: linears, by: \.block)
        for b in byBlock.keys.sorted() {
            let row = byBlock[b]!.sorted { order($0.linear) < order($1.linear) }
            s.append(
                String(format: "%5d", b) + "  " + row.map { String(format: "%.2e  ", $0.relativeError ?? 0) }.joined())
        }
        s.append(String(format: "mean   %.3e", errors.isEmpty ? 0 : errors.reduce(0, +) / Double(errors.count)))
        s.append(contentsOf: typeTable(byBlock))
        return s
    }

    /// The stored type of each linear by block, when the job mixes types (the K-quant mixes).
    private func typeTable(_ byBlock: [Int: [LinearReport]]) -> [String] {
        guard Set(linears.compactMap(\.type)).count > 1 else { return [] }
        var s = ["", "block  attn_q    attn_k    attn_v    attn_out  ffn_gate  ffn_up    ffn_down   (stored type)"]
        for b in byBlock.keys.sorted() {
            let row = byBlock[b]!.sorted { order($0.linear) < order($1.linear) }
            s.append(
                String(format: "%5d", b) + "  "
                    + row.map { ($0.type ?? "?").padding(toLength: 10, withPad: " ", startingAt: 0) }.joined())
        }
        return s
    }

    private func order(_ l: String) -> Int {
        Linear(rawValue: l)?.displayOrder ?? Linear.allCases.count
    }
}
