// The job as a task graph (docs/ARCHITECTURE.md, "Work as a task graph"):
//
//   collect(b, s)      block b over shard s -> partial statistics per linear group
//   merge(b)           partial statistics of all shards, in shard order
//   reconstruct(b, u)  quantize unit u of block b from the merged statistics: linear
//                      group u, or with row slices (`ReconstructUnits`) one slice of a group
//   propagate(b, s)    sequential mode: quantized block b over shard s -> next input
//
// A job that needs no calibration statistics (RTN without the error report) has only
// reconstruct(b, g) tasks, none depending on another.
//
// The graph is a function of (blocks, shards, groups, mode, statistics) only. Its order is
// deterministic: Kahn's algorithm always taking the ready task that comes first in
// the canonical listing (block by block: collects, merge, reconstructs, propagates).
// `ReadyTasks` (ReadyTasks.swift) holds that decision for every scheduler.

public enum TaskID: Hashable, Codable, Sendable, CustomStringConvertible {
    case collect(block: Int, shard: Int)
    case merge(block: Int)
    case reconstruct(block: Int, group: Int)
    case propagate(block: Int, shard: Int)

    public var block: Int {
        switch self {
        case let .collect(b, _), let .merge(b), let .reconstruct(b, _), let .propagate(b, _): return b
        }
    }

    public var isCollect: Bool {
        if case .collect = self { return true }
        return false
    }

    public var isReconstruct: Bool {
        if case .reconstruct = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case let .collect(b, s): return "collect(\(b),\(s))"
        case let .merge(b): return "merge(\(b))"
        case let .reconstruct(b, g): return "reconstruct(\(b),\(g))"
        case let .propagate(b, s): return "propagate(\(b),\(s))"
        }
    }
}

public struct TaskGraph: Sendable {
    public let blocks: Int
    public let shards: Int
    public let mode: JobMode
    /// Reconstruct units per block (linear groups times row slices).
    public let groups: Int
    /// Whether the job gathers statistics (collect, merge, propagate); false: reconstructs only.
    public let statistics: Bool
    /// Every task in canonical order.
    public let tasks: [TaskID]

    public init(blocks: Int, shards: Int, groups: Int, mode: JobMode, statistics: Bool = true) {
        precondition(blocks >= 0 && shards >= 1 && groups >= 1)
        self.blocks = blocks
        self.shards = shards
        self.groups = groups
        self.mode = mode
        self.statistics = statistics
        var t: [TaskID] = []
        for b in 0..<blocks {
            if statistics {
                for s in 0..<shards { t.append(.collect(block: b, shard: s)) }
                t.append(.merge(block: b))
            }
            for g in 0..<groups { t.append(.reconstruct(block: b, group: g)) }
            if statistics && mode == .sequential {
                for s in 0..<shards { t.append(.propagate(block: b, shard: s)) }
            }
        }
        tasks = t
    }

    /// The graph of a job over a model of `blocks` blocks: one reconstruct per unit (a linear
    /// group, or a row slice of one: `ReconstructUnits`).
    public init(spec: JobSpec, blocks: Int) {
        self.init(
            blocks: blocks, shards: spec.shardCount, groups: ReconstructUnits(spec: spec).count, mode: spec.mode,
            statistics: spec.needsStatistics)
    }

    /// What a task needs finished first.
    public func dependencies(of task: TaskID) -> [TaskID] {
        switch task {
        case let .collect(b, s):
            if b == 0 { return [] }
            // Parallel: the shard's input is the FP output of collect(b-1, s).
            // Sequential: it is the quantized output of propagate(b-1, s).
            return [mode == .parallel ? .collect(block: b - 1, shard: s) : .propagate(block: b - 1, shard: s)]
        case let .merge(b):
            return (0..<shards).map { .collect(block: b, shard: $0) }
        case let .reconstruct(b, _):
            return statistics ? [.merge(block: b)] : []
        case let .propagate(b, s):
            // The shard's input of block b must still be there: collect(b, s) read it,
            // and merge(b) (so every reconstruct) comes after every collect(b, *).
            return (0..<groups).map { .reconstruct(block: b, group: $0) } + [.collect(block: b, shard: s)]
        }
    }

    /// A deterministic topological order: always the first ready task in canonical
    /// order (`ReadyTasks`, the scheduler's own decision), done one at a time.
    public func order() -> [TaskID] {
        var ready = ReadyTasks(graph: self)
        var out: [TaskID] = []
        out.reserveCapacity(tasks.count)
        while let t = ready.first {
            out.append(t)
            ready.markDone(t)
        }
        precondition(out.count == tasks.count, "task graph has a cycle")
        return out
    }
}
