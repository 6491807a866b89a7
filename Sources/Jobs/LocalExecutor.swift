import Foundation
import Synchronization
import Tensor

/// Progress of a job, for the CLI and the embedded cluster's observer (`Coordinator.onEvent`).
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
    /// Every reconstruct result, ordered by (block, group), row slices joined (one per group).
    public var reconstructions: [ReconstructResult]
    /// Merged statistics per block (kept only when asked for, e.g. by tests).
    public var merged: [MergeResult]
    public var times: GraphTimes

    /// All quantized linears by tensor name.
    public var linears: [String: QuantizedLinear] { reconstructions.linearsByTensor }
}

/// Runs the task graph in one process. The tasks come from `ReadyTasks`, the same
/// ready-in-canonical-order decision the coordinator takes: each wave is the ready tasks
/// of the earliest block that has any (its collects, its merge, its reconstructs, its
/// propagates), spread over `concurrency` task threads with one BLAS thread each (as a
/// cluster worker runs). Every task is a function of its inputs alone, and results are
/// combined in canonical order, so the output does not depend on `concurrency`; it equals
/// the cluster's bytes. Task results are the Codable payloads a remote worker would
/// return; activations stay in `store`.
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

    /// What a finished task hands to the tasks after it.
    private enum Output: Sendable {
        case collect(CollectResult)
        case merge(MergeResult)
        case reconstruct(ReconstructResult)
        case propagate
    }

    public func run(progress: ((JobEvent) -> Void)? = nil) throws -> GraphOutput {
        let spec = context.spec
        let blocks = context.model.blockCount
        let graph = TaskGraph(spec: spec, blocks: blocks)
        let units = ReconstructUnits(spec: spec)
        var ready = ReadyTasks(graph: graph)

        let savedThreads = BLAS.threads
        BLAS.threads = 1
        defer { BLAS.threads = savedThreads }

        var collected: [Int: [CollectResult]] = [:]
        var merged: [Int: MergeResult] = [:]
        var reconstructed: [Int: [ReconstructResult]] = [:]
        var keptMerges: [MergeResult] = []
        var times = GraphTimes()
        var blocksDone = 0
        while let first = ready.first {
            let wave = ready.ready.filter { $0.block == first.block }
            let t0 = DispatchTime.now()
            // What the wave's tasks read, fixed for the wave (they run on other threads).
            let (context, store) = (self.context, self.store)
            let (collectedNow, mergedNow, reconstructedNow) = (collected, merged, reconstructed)
            let outputs = try run(wave) { t -> Output in
                switch t {
                case let .collect(b, s):
                    return .collect(try Tasks.collect(context, store: store, block: b, shard: s))
                case let .merge(b):
                    return .merge(try Tasks.merge(block: b, parts: collectedNow[b] ?? []))
                case let .reconstruct(b, u):
                    let input = ReconstructInput(
                        block: b, group: u, linears: units.linears(u),
                        statistics: mergedNow[b]?.statistics[units.group(u)])
                    return .reconstruct(try Tasks.reconstruct(context, input))
                case let .propagate(b, s):
                    let q = try units.join(reconstructedNow[b]!)
                    _ = try Tasks.propagate(context, store: store, block: b, shard: s, quantized: q)
                    return .propagate
                }
            }
            let elapsed = seconds(since: t0)
            // Results in canonical order (the wave is), so shards and groups stay in order.
            for (t, output) in zip(wave, outputs) {
                switch output {
                case let .collect(c):
                    collected[t.block, default: []].append(c)
                    times.collect += elapsed / Double(wave.count)
                case let .merge(m):
                    collected[t.block] = nil
                    merged[t.block] = m
                    if keepMerged { keptMerges.append(m) }
                    times.merge += elapsed
                case let .reconstruct(r):
                    reconstructed[t.block, default: []].append(r)
                    times.reconstruct += elapsed / Double(wave.count)
                case .propagate:
                    times.propagate += elapsed / Double(wave.count)
                }
                ready.markDone(t)
                progress?(.task(t, done: ready.done.count, total: graph.tasks.count))
            }
            // Blocks finish in order: a block's tasks all precede the next block's waves.
            while blocksDone < blocks, graph.tasks.allSatisfy({ $0.block != blocksDone || ready.done.contains($0) }) {
                merged[blocksDone] = nil
                let linears = try units.join(reconstructed[blocksDone] ?? [])
                progress?(.blockDone(block: blocksDone, blocks: blocks, linears: linears))
                blocksDone += 1
            }
        }
        for s in 0..<spec.shardCount { store.remove(shard: s) }
        let reconstructions = try units.joinResults((0..<blocks).flatMap { reconstructed[$0] ?? [] })
        return GraphOutput(reconstructions: reconstructions, merged: keptMerges, times: times)
    }

    /// body(task) for every task of a wave, up to `concurrency` at a time (lane k takes
    /// tasks k, k + lanes, ...); results in wave order. The first error (in wave order)
    /// is rethrown after all have stopped.
    private func run<T: Sendable>(_ wave: [TaskID], _ body: @Sendable (TaskID) throws -> T) throws -> [T] {
        // One lock per finished task (tasks take seconds), so lanes never share a buffer unguarded.
        let results = Mutex([Result<T, Error>?](repeating: nil, count: wave.count))
        let lanes = min(concurrency, wave.count)
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            for i in stride(from: lane, to: wave.count, by: lanes) {
                let result = Result { try body(wave[i]) }
                results.withLock { $0[i] = result }
            }
        }
        return try results.withLock { $0 }.map { try $0!.get() }
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
