import Foundation
import Jobs
import ModelIO

/// How much disk a job's durable results take, estimated before it starts, so a job
/// that cannot fit is refused at submit instead of filling the disk half way (after
/// which SQLite refuses even the next submit).
///
/// What is stored, from the encodings (ClusterCodec over Jobs' payloads), per block:
/// - collect(b, s), at most one per shard (a worker sends one sum for the shards it
///   held; merges are not stored): per linear group an exact Hessian
///   accumulator, the packed upper triangle n(n+1)/2 of 128-bit fixed point (16 bytes)
///   for an n-wide input, plus per-column ranges;
/// - reconstruct(b, u): per linear (over all its row slices) one byte of code per weight, group parameters
///   (16 bytes per row and group, measured) and the column permutation (Int32);
/// - propagate(b, s) (sequential mode): a small record.
/// Each figure is rounded up and every file gets a fixed allowance for its framing,
/// so the estimate is above the bytes written (checked against a real job in the tests).
///
/// A block's statistics files go once its reconstructions are durable (unless
/// --keep-results), so at most `statisticsBlocks` blocks hold them at once: the scheduler
/// runs ready tasks in block order, so collects run ahead of reconstructions by about a
/// block. A 7B-shaped model then needs ~13 GB, not ~90.
public enum DiskBudget {
    /// Blocks whose statistics files exist at once when they are released.
    static let statisticsBlocks = 3
    /// Allowance per file for headers, names and framing.
    static let perFile: Int64 = 16 << 10
    /// Room kept free for the job store and temporary files.
    public static let margin: Int64 = 64 << 20

    /// Estimated peak bytes of a job's result files on a model of this shape (every file
    /// when the statistics are kept).
    public static func resultBytes(spec: JobSpec, config c: ModelConfig, keepStatistics: Bool) -> Int64 {
        let h = Int64(c.hiddenSize)
        let inter = Int64(c.intermediateSize)
        let attn = Int64(c.headCount * c.headDim)
        let kv = Int64(c.kvHeadCount * c.headDim)
        // Group inputs: q,k,v and gate,up read the hidden state; o reads attention, down the MLP.
        let inputs = [h, attn, h, inter]
        let statistics = inputs.reduce(Int64(0)) { $0 + $1 * ($1 + 1) / 2 * 16 + $1 * 64 } + 4 * perFile
        // (rows, columns) of each linear.
        let linears: [(Int64, Int64)] = [(attn, h), (kv, h), (kv, h), (h, attn), (inter, h), (inter, h), (h, inter)]
        // K formats: sub-blocks of 16 at the smallest (a mix's Q6_K/Q3_K), 2 more bytes each for their fields.
        let groupSize = Int64(spec.format.isKQuant ? 8 : spec.resolvedGroupSize > 0 ? spec.resolvedGroupSize : 32)
        let parts = Int64(max(1, spec.rowParts))
        let reconstruct = linears.reduce(Int64(0)) { acc, l in
            let (rows, cols) = l
            let groups = (cols + groupSize - 1) / groupSize
            // Every row slice (`--row-parts`) repeats the group index and the framing.
            return acc + rows * cols + rows * groups * 16 + (cols * 4 + perFile) * parts
        }
        let shards = Int64(spec.shardCount)
        let propagate = spec.mode == .sequential ? shards * perFile : 0
        let layers = Int64(c.layerCount)
        guard spec.needsStatistics else { return layers * reconstruct }  // RTN without the error report
        let statisticsBlocks = keepStatistics ? layers : min(layers, Int64(statisticsBlocks))
        return statisticsBlocks * shards * statistics + layers * (reconstruct + propagate)
    }

    /// Free bytes for an unprivileged writer on the file system holding `url` (statvfs).
    public static func freeBytes(_ url: URL) -> UInt64? {
        var s = statvfs()
        guard statvfs(url.path, &s) == 0 else { return nil }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    static func gib(_ n: Int64) -> String { String(format: "%.2f GiB", Double(n) / Double(1 << 30)) }
}

extension Coordinator {
    /// Refuses a job whose results would not fit in the data directory's free space,
    /// counting what the unfinished jobs before it have still to write.
    func checkDiskSpace(_ spec: JobSpec, view: any ModelView) throws {
        guard let free = config.freeBytes(files.root) else { return }  // unknown: nothing to judge by
        let need = DiskBudget.resultBytes(spec: spec, config: view.config, keepStatistics: config.keepResults)
        var pending: Int64 = 0
        for run in jobs.values where !run.isTerminal {
            guard let other = try? run.spec.openForJob() else { continue }
            let written = (try? store.resultBytes(job: run.id)) ?? 0
            let estimate = DiskBudget.resultBytes(
                spec: run.spec, config: other.config, keepStatistics: config.keepResults)
            pending += max(0, estimate - written)
        }
        let available = Int64(clamping: free)
        guard need + pending + DiskBudget.margin > available else { return }
        let queued = pending > 0 ? " (plus \(DiskBudget.gib(pending)) still to come for unfinished jobs)" : ""
        throw CoordinatorError(
            "not enough disk space for the job's results in \(files.root.path): it needs about "
                + "\(DiskBudget.gib(need))\(queued) and \(DiskBudget.gib(available)) is free; free space there "
                + "(`kiln gc --data-dir` removes results of ended jobs), or lower --samples or raise --shard-size")
    }
}
