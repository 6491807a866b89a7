import Foundation
import ModelIO

/// What one process running a job holds at its peak, estimated from the spec and the
/// model's header before any work, so a job that cannot fit is refused with the reason
/// rather than killed by the kernel hours in. Conservative (a worker may own every
/// shard); all arithmetic saturates, so absurd options give a huge estimate, not a trap.
public struct MemoryEstimate: Sendable, Equatable {
    /// Hidden states of the calibration windows (a block's input and output).
    public var activations: UInt64
    /// One block's full-precision weights and their quantized copies.
    public var blockWeights: UInt64
    /// One block's statistics: exact accumulators, Gram scratch, GPTQ's H and inverse.
    public var statistics: UInt64
    /// One shard's forward pass: projections, MLP and attention scores.
    public var scratch: UInt64
    /// Embedding and output head in full precision.
    public var embeddings: UInt64
    /// Logits and attention of one evaluation window.
    public var evaluation: UInt64

    public var total: UInt64 {
        [activations, blockWeights, statistics, scratch, embeddings, evaluation].reduce(0) { Self.add($0, $1) }
    }

    public init(spec: JobSpec, config c: ModelConfig, activationsInMemory: Bool = true) {
        let h = c.hiddenSize
        let q = c.headCount * c.headDim
        let kv = c.kvHeadCount * c.headDim
        let f = c.intermediateSize
        let shard = min(spec.shardSize, spec.samples)
        let windows = activationsInMemory ? spec.samples : shard
        activations = Self.product(windows, spec.seqlen, h, 4, 2)
        let params = Self.add(Self.add(Self.product(2, h, q), Self.product(2, h, kv)), Self.product(3, h, f))
        blockWeights = Self.product([params, 8])
        let widest = max(h, q, f)
        // Per group: 16-byte fixed-point cells on half the matrix (8 d^2) plus a Float Gram (4 d^2).
        statistics = [h, q, h, f].map { Self.product($0, $0, 12) }.reduce(0) { Self.add($0, $1) }
        statistics = Self.add(statistics, Self.product(widest, widest, 4, 2))
        let rowWidth = q + 2 * kv + 2 * h + 3 * f
        scratch = Self.add(
            Self.product(shard, spec.seqlen, rowWidth, 4),
            Self.product(shard, c.headCount, spec.seqlen, spec.seqlen, 4))
        embeddings = Self.product(c.vocabSize, h, 4, c.tiedEmbeddings ? 1 : 2)
        if spec.evalFile != nil {
            evaluation = Self.add(
                Self.product(spec.evalContext, c.vocabSize, 4),
                Self.product(c.headCount, spec.evalContext, spec.evalContext, 4))
        } else {
            evaluation = 0
        }
        // RTN without the error report runs no calibration window through the model.
        if !spec.needsStatistics {
            activations = 0
            statistics = 0
            scratch = 0
        }
    }

    public init(spec: JobSpec, config: ModelConfig, limits: JobLimits) {
        self.init(spec: spec, config: config, activationsInMemory: limits.activationsInMemory)
    }

    /// Refuses a job whose estimate exceeds the limit, naming the largest part and what to change.
    public func check(_ limits: JobLimits) throws {
        let e = self
        guard e.total > limits.maxJobMemory else { return }
        let parts: [(String, UInt64, String)] = [
            (
                "calibration activations", e.activations,
                "lower --samples or --seqlen"
                    + (limits.activationsInMemory ? ", or keep them on disk with kiln run --spill DIR" : "")
            ),
            ("statistics", e.statistics, "the model's widths set this; use a machine with more memory"),
            ("forward-pass scratch", e.scratch, "lower --shard-size or --seqlen"),
            ("block weights", e.blockWeights, "the model's widths set this; use a machine with more memory"),
            ("embeddings", e.embeddings, "the vocabulary sets this; use a machine with more memory"),
            ("evaluation", e.evaluation, "lower the evaluation context"),
        ]
        let top = parts.max { $0.1 < $1.1 }!
        throw JobError(
            "the job needs an estimated \(Self.format(e.total)) of memory, above the limit of "
                + "\(Self.format(limits.maxJobMemory)) (\(limits.memoryFlag), default 80% of RAM); the largest part is "
                + "\(top.0), \(Self.format(top.1)): \(top.2)")
    }

    static func add(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (s, o) = a.addingReportingOverflow(b)
        return o ? .max : s
    }

    static func product(_ xs: Int...) -> UInt64 { product(xs.map { UInt64(max($0, 0)) }) }

    static func product(_ xs: [UInt64]) -> UInt64 {
        xs.reduce(1) { p, x in
            let (m, o) = p.multipliedReportingOverflow(by: x)
            return o ? .max : m
        }
    }

    /// "1.5 GiB"-style sizes.
    public static func format(_ bytes: UInt64) -> String {
        if bytes == .max { return "more than 16 EiB" }
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = Double(bytes)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(bytes) B" : String(format: "%.1f %@", v, units[i])
    }

    /// Parses "512M", "16G", "1.5T" or a plain byte count (binary units).
    public static func parse(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let scales: [(String, Double)] = [
            ("TIB", 0x1p40), ("GIB", 0x1p30), ("MIB", 0x1p20), ("KIB", 0x1p10),
            ("T", 0x1p40), ("G", 0x1p30), ("M", 0x1p20), ("K", 0x1p10), ("B", 1),
        ]
        for (suffix, scale) in scales where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v.isFinite, v > 0, v * scale < 0x1p63 else { return nil }
            return UInt64(v * scale)
        }
        guard let v = UInt64(t), v > 0 else { return nil }
        return v
    }
}
