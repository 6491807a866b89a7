import Calibration
import Foundation
import Jobs
import ModelIO

// What the cluster needs from Jobs beyond the local executor: stable task names,
// the serializable inputs of a remote task, lineage (rebuilding a shard's
// activations on a new owner), and one entry point a worker calls. The math is
// Jobs' task functions; nothing here computes differently from LocalExecutor.

extension TaskID {
    /// Stable text form used on the wire and in the job store: "collect/3/1",
    /// "merge/3", "reconstruct/3/2", "propagate/3/1".
    public var wireName: String {
        switch self {
        case let .collect(b, s): return "collect/\(b)/\(s)"
        case let .merge(b): return "merge/\(b)"
        case let .reconstruct(b, g): return "reconstruct/\(b)/\(g)"
        case let .propagate(b, s): return "propagate/\(b)/\(s)"
        }
    }

    public init?(wireName: String) {
        let p = wireName.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard p.count >= 2, let b = Int(p[1]), b >= 0 else { return nil }
        let second = p.count == 3 ? Int(p[2]) : nil
        switch (p[0], p.count) {
        case ("merge", 2): self = .merge(block: b)
        case ("collect", 3):
            guard let s = second, s >= 0 else { return nil }
            self = .collect(block: b, shard: s)
        case ("reconstruct", 3):
            guard let g = second, g >= 0 else { return nil }
            self = .reconstruct(block: b, group: g)
        case ("propagate", 3):
            guard let s = second, s >= 0 else { return nil }
            self = .propagate(block: b, shard: s)
        default: return nil
        }
    }

    public var kindName: String { String(wireName.split(separator: "/")[0]) }

    /// The calibration shard a task runs on (collect, propagate).
    public var shard: Int? {
        switch self {
        case let .collect(_, s), let .propagate(_, s): return s
        default: return nil
        }
    }
}

/// The inputs of a remote task that are not in the JobSpec.
public struct ClusterTaskInput: Sendable, Equatable {
    /// reconstruct(b, g): the group's merged statistics (nil when the job gathers none).
    public var statistics: LinearStatistics?
    /// propagate(b, s): block b's quantized linears.
    public var quantized: [QuantizedLinear]?
    /// Lineage, sent when the worker may not hold the shard's input of block b:
    /// sequential mode needs the quantized linears of blocks 0..b-1 (index = block);
    /// parallel mode replays full-precision blocks and needs nothing but this flag.
    public var lineage: [[QuantizedLinear]]?
    public var replayAllowed: Bool

    public init(
        statistics: LinearStatistics? = nil, quantized: [QuantizedLinear]? = nil,
        lineage: [[QuantizedLinear]]? = nil, replayAllowed: Bool = false
    ) {
        self.statistics = statistics
        self.quantized = quantized
        self.lineage = lineage
        self.replayAllowed = replayAllowed
    }
}

/// The encoded result of a remote task (one of Jobs' result payloads).
public enum ClusterTaskOutput: Sendable, Equatable {
    case collect(CollectResult)
    case merge(MergeResult)
    case reconstruct(ReconstructResult)
    case propagate(PropagateResult)

    /// The tasks this result completes: its own, and for a collect every shard summed in.
    public var coveredTasks: [TaskID] {
        guard case let .collect(c) = self else { return [taskID] }
        return c.shards.map { .collect(block: c.block, shard: $0) }
    }

    public var taskID: TaskID {
        switch self {
        case let .collect(r): return .collect(block: r.block, shard: r.shard)
        case let .merge(r): return .merge(block: r.block)
        case let .reconstruct(r): return .reconstruct(block: r.block, group: r.group)
        case let .propagate(r): return .propagate(block: r.block, shard: r.shard)
        }
    }
}

/// A propagate came without its block's quantized linears and this worker does not hold
/// them (it restarted or moved to another job): the coordinator sends them again.
public struct MissingQuantizedBlock: Error, CustomStringConvertible {
    public let block: Int
    public init(block: Int) { self.block = block }
    public var description: String { "the quantized linears of block \(block) are not on this worker" }
}

/// A shard's activations are not on this worker and the task carried no lineage:
/// the coordinator retries with lineage.
public struct MissingActivations: Error, CustomStringConvertible {
    public let shard: Int
    public let block: Int
    public var description: String { "activations of shard \(shard) for block \(block) are not on this worker" }
}

public enum ClusterExecution {
    /// Runs one task of `ctx`'s job, as the local executor would, and returns its result.
    /// `progress(done, total, stage)` is called within the task (lineage replay steps).
    public static func run(
        _ ctx: JobContext, store: ActivationStore, task: TaskID, input: ClusterTaskInput,
        progress: (Int, Int, String) -> Void = { _, _, _ in }
    ) throws -> ClusterTaskOutput {
        var owned = input
        return try run(ctx, store: store, task: task, taking: &owned, progress: progress)
    }

    /// As `run`, taking the input's statistics out of `input` (see `Tasks.reconstruct(_:taking:)`).
    public static func run(
        _ ctx: JobContext, store: ActivationStore, task: TaskID, taking input: inout ClusterTaskInput,
        progress: (Int, Int, String) -> Void = { _, _, _ in }
    ) throws -> ClusterTaskOutput {
        if let s = task.shard, task.block > 0, try store.get(shard: s)?.block != task.block {
            guard input.replayAllowed else { throw MissingActivations(shard: s, block: task.block) }
            try rebuild(ctx, store: store, shard: s, toBlock: task.block, lineage: input.lineage, progress: progress)
        }
        switch task {
        case let .collect(b, s):
            return .collect(try Tasks.collect(ctx, store: store, block: b, shard: s))
        case let .propagate(b, s):
            guard let q = input.quantized else {
                throw JobError("propagate(\(b),\(s)) arrived without block \(b)'s quantized linears")
            }
            return .propagate(try Tasks.propagate(ctx, store: store, block: b, shard: s, quantized: q))
        case let .reconstruct(b, g):
            let units = ReconstructUnits(spec: ctx.spec)
            guard g < units.count else { throw JobError("reconstruct(\(b),\(g)): no such reconstruct unit") }
            // RTN without the error report gathers no statistics; every other job needs them.
            guard input.statistics != nil || !ctx.spec.needsStatistics else {
                throw JobError("reconstruct(\(b),\(g)) arrived without merged statistics")
            }
            // Moved, not shared: the reconstruct frees them once its Hessians are built.
            var ri = ReconstructInput(block: b, group: g, linears: units.linears(g), statistics: input.statistics)
            input.statistics = nil
            return .reconstruct(try Tasks.reconstruct(ctx, taking: &ri))
        case let .merge(b):
            throw JobError("merge(\(b)) runs on the coordinator, not on a worker")
        }
    }

    /// Lineage: the shard's input of block `b`, recomputed by replaying its tokens
    /// through blocks 0..b-1 with Jobs' propagate (full-precision weights in parallel
    /// mode, the durable quantized blocks in sequential mode). Bit-identical to the
    /// activations the lost owner held: same functions, same inputs.
    public static func rebuild(
        _ ctx: JobContext, store: ActivationStore, shard s: Int, toBlock b: Int,
        lineage: [[QuantizedLinear]]?, progress: (Int, Int, String) -> Void = { _, _, _ in }
    ) throws {
        store.remove(shard: s)
        for k in 0..<b {
            let q: [QuantizedLinear]
            if ctx.spec.mode == .sequential {
                guard let l = lineage, k < l.count, !l[k].isEmpty else {
                    throw JobError("rebuilding shard \(s) for block \(b) needs the quantized linears of block \(k)")
                }
                q = l[k]
            } else {
                q = []
            }
            _ = try Tasks.propagate(ctx, store: store, block: k, shard: s, quantized: q)
            progress(k + 1, b, "lineage")
        }
    }
}
