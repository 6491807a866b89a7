import Foundation
import Tensor

/// Progress of a job, for the CLI (and later the progress publisher).
public enum JobEvent: Sendable {
    /// A phase outside the task graph began ("load", "write", "eval before", ...).
    case phase(String)
    /// A task finished; done / total over the whole graph.
    case task(TaskID, done: Int, total: Int)
    /// Every task of block b finished; its quantized linears.
    case blockDone(block: Int, blocks: Int, linears: [QuantizedLinear])
    /// A perplexity window finished.
    case eval(label: String, window: Int, windows: Int, perplexity: Double)
}

/// Wall time per task kind.
public struct GraphTimes: Codable, Sendable, Equatable {
    public var collect = 0.0
    public var merge = 0.0
    public var reconstruct = 0.0
    public var propagate = 0.0
}

public struct GraphOutput: Sendable {
    /// Every reconstruct result, ordered by (block, group).
    public var reconstructions: [ReconstructResult]
    /// Merged statistics per block (kept only when asked for, e.g. by tests).
    public var merged: [MergeResult]
    public var times: GraphTimes

    /// All quantized linears by tensor name.
    public var linears: [String: QuantizedLinear] { reconstructions.linearsByTensor }
}

/// Runs the task graph in one process, block by block: the collects of a block, its
/// merge, its reconstructs, its propagates, each wave spread over `concurrency` task
/// threads with one BLAS thread each (as a cluster worker runs). Every task is a
/// function of its inputs alone, and results are combined in canonical order, so the
/// output does not depend on `concurrency`; it equals the cluster's bytes. Task
/// results are the Codable payloads a remote worker would return; activations stay
/// in `store`.
public final class LocalExecutor {
    public let context: JobContext
    public let store: ActivationStore
    public var keepMerged = false
    /// Tasks run at once (each with one BLAS thread).
    public var concurrency: Int

    public init(context: JobContext, store: ActivationStore = InMemoryActivationStore(), concurrency: Int = 1) {
        self.context = context
        self.store = store
        self.concurrency = max(1, concurrency)
    }

    public func run(progress: ((JobEvent) -> Void)? = nil) throws -> GraphOutput {
        let spec = context.spec
        let blocks = context.model.blockCount
        let graph = TaskGraph(blocks: blocks, shards: spec.shardCount, groups: Tasks.groups.count, mode: spec.mode)
        let total = graph.tasks.count
        var done = 0
        let progressLock = NSLock()
        func finished(_ task: TaskID) {
            progressLock.withLock {
                done += 1
                progress?(.task(task, done: done, total: total))
            }
        }

        let savedThreads = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = savedThreads }

        var reconstructions: [ReconstructResult] = []
        var keptMerges: [MergeResult] = []
        var times = GraphTimes()
        let shards = Array(0..<spec.shardCount)
        let groups = Array(0..<graph.groups)
        for b in 0..<blocks {
            var t0 = DispatchTime.now()
            let parts = try wave(shards) { s in
                defer { finished(.collect(block: b, shard: s)) }
                return try Tasks.collect(context, store: store, block: b, shard: s)
            }
            times.collect += seconds(since: t0)

            t0 = DispatchTime.now()
            let merged = try Tasks.merge(block: b, parts: parts)
            if keepMerged { keptMerges.append(merged) }
            finished(.merge(block: b))
            times.merge += seconds(since: t0)

            t0 = DispatchTime.now()
            let recon = try wave(groups) { g in
                defer { finished(.reconstruct(block: b, group: g)) }
                let input = ReconstructInput(
                    block: b, group: g, linears: Tasks.groups[g], statistics: merged.statistics[g])
                return try Tasks.reconstruct(context, input)
            }
            reconstructions += recon
            times.reconstruct += seconds(since: t0)

            if spec.mode == .sequential {
                t0 = DispatchTime.now()
                let q = recon.flatMap(\.linears)
                _ = try wave(shards) { s in
                    defer { finished(.propagate(block: b, shard: s)) }
                    return try Tasks.propagate(context, store: store, block: b, shard: s, quantized: q)
                }
                times.propagate += seconds(since: t0)
            }
            progress?(.blockDone(block: b, blocks: blocks, linears: recon.flatMap(\.linears)))
        }
        for s in 0..<spec.shardCount { store.remove(shard: s) }
        return GraphOutput(reconstructions: reconstructions, merged: keptMerges, times: times)
    }

    /// body(item) for every item, up to `concurrency` at a time (lane k takes items
    /// k, k + lanes, ...); results in item order. The first error (in item order) is
    /// rethrown after all have stopped.
    private func wave<T>(_ items: [Int], _ body: (Int) throws -> T) throws -> [T] {
        var results = [Result<T, Error>?](repeating: nil, count: items.count)
        let lanes = min(concurrency, items.count)
        results.withUnsafeMutableBufferPointer { out in
            DispatchQueue.concurrentPerform(iterations: lanes) { lane in
                for i in stride(from: lane, to: items.count, by: lanes) { out[i] = Result { try body(items[i]) } }
            }
        }
        return try results.map { try $0!.get() }
    }
}

extension Array where Element == ReconstructResult {
    /// Every quantized linear of these results by tensor name.
    public var linearsByTensor: [String: QuantizedLinear] {
        var d: [String: QuantizedLinear] = [:]
        for r in self { for l in r.linears { d[l.tensor] = l } }
        return d
    }
}
