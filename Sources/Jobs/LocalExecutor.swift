import Foundation

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
    public var linears: [String: QuantizedLinear] {
        var d: [String: QuantizedLinear] = [:]
        for r in reconstructions { for l in r.linears { d[l.tensor] = l } }
        return d
    }
}

/// Runs the task graph in one process, one task at a time, in the graph's
/// deterministic order. Task results are the Codable payloads a remote worker would
/// return; activations stay in `store`.
public final class LocalExecutor {
    public let context: JobContext
    public let store: ActivationStore
    public var keepMerged = false

    public init(context: JobContext, store: ActivationStore = InMemoryActivationStore()) {
        self.context = context
        self.store = store
    }

    public func run(progress: ((JobEvent) -> Void)? = nil) throws -> GraphOutput {
        let spec = context.spec
        let blocks = context.model.blockCount
        let graph = TaskGraph(blocks: blocks, shards: spec.shardCount, groups: Tasks.groups.count, mode: spec.mode)
        let order = graph.order()
        var remainingInBlock = [Int](repeating: 0, count: blocks)
        for t in order { remainingInBlock[t.block] += 1 }

        var collects: [Int: [CollectResult]] = [:]
        var merges: [Int: MergeResult] = [:]
        var reconstructs: [Int: [ReconstructResult]] = [:]
        var keptMerges: [MergeResult] = []
        var times = GraphTimes()

        for (i, task) in order.enumerated() {
            let t0 = DispatchTime.now()
            switch task {
            case let .collect(b, s):
                collects[b, default: []].append(try Tasks.collect(context, store: store, block: b, shard: s))
                times.collect += seconds(since: t0)
            case let .merge(b):
                let m = try Tasks.merge(block: b, parts: collects.removeValue(forKey: b) ?? [])
                merges[b] = m
                if keepMerged { keptMerges.append(m) }
                times.merge += seconds(since: t0)
            case let .reconstruct(b, g):
                guard let m = merges[b] else { throw JobError("reconstruct(\(b),\(g)) ran before merge(\(b))") }
                let input = ReconstructInput(block: b, group: g, linears: Tasks.groups[g], statistics: m.statistics[g])
                reconstructs[b, default: []].append(try Tasks.reconstruct(context, input))
                if reconstructs[b]!.count == graph.groups { merges[b] = nil }
                times.reconstruct += seconds(since: t0)
            case let .propagate(b, s):
                let q = (reconstructs[b] ?? []).flatMap(\.linears)
                _ = try Tasks.propagate(context, store: store, block: b, shard: s, quantized: q)
                times.propagate += seconds(since: t0)
            }
            progress?(.task(task, done: i + 1, total: order.count))
            remainingInBlock[task.block] -= 1
            if remainingInBlock[task.block] == 0 {
                let linears = (reconstructs[task.block] ?? []).sorted { $0.group < $1.group }.flatMap(\.linears)
                progress?(.blockDone(block: task.block, blocks: blocks, linears: linears))
            }
        }
        for s in 0..<spec.shardCount { store.remove(shard: s) }
        let all = reconstructs.keys.sorted().flatMap { b in reconstructs[b]!.sorted { $0.group < $1.group } }
        return GraphOutput(reconstructions: all, merged: keptMerges, times: times)
    }
}
