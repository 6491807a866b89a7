// The job as a task graph (docs/ARCHITECTURE.md, "Work as a task graph"):
//
//   collect(b, s)      block b over shard s -> partial statistics per linear group
//   merge(b)           partial statistics of all shards, in shard order
//   reconstruct(b, g)  quantize linear group g of block b from the merged statistics
//   propagate(b, s)    sequential mode: quantized block b over shard s -> next input
//
// The graph is a function of (blocks, shards, groups, mode) only. Its order is
// deterministic: Kahn's algorithm always taking the ready task that comes first in
// the canonical listing (block by block: collects, merge, reconstructs, propagates).

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
    public let groups: Int
    public let mode: JobMode
    /// Every task in canonical order.
    public let tasks: [TaskID]

    public init(blocks: Int, shards: Int, groups: Int, mode: JobMode) {
        precondition(blocks >= 0 && shards >= 1 && groups >= 1)
        self.blocks = blocks
        self.shards = shards
        self.groups = groups
        self.mode = mode
        var t: [TaskID] = []
        for b in 0..<blocks {
            for s in 0..<shards { t.append(.collect(block: b, shard: s)) }
            t.append(.merge(block: b))
            for g in 0..<groups { t.append(.reconstruct(block: b, group: g)) }
            if mode == .sequential {
                for s in 0..<shards { t.append(.propagate(block: b, shard: s)) }
            }
        }
        tasks = t
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
            return [.merge(block: b)]
        case let .propagate(b, s):
            // The shard's input of block b must still be there: collect(b, s) read it,
            // and merge(b) (so every reconstruct) comes after every collect(b, *).
            return (0..<groups).map { .reconstruct(block: b, group: $0) } + [.collect(block: b, shard: s)]
        }
    }

    /// A deterministic topological order (ties broken by canonical position).
    public func order() -> [TaskID] {
        var position: [TaskID: Int] = [:]
        for (i, t) in tasks.enumerated() { position[t] = i }
        var remaining: [TaskID: Int] = [:]
        var dependents: [TaskID: [TaskID]] = [:]
        for t in tasks {
            let deps = dependencies(of: t)
            remaining[t] = deps.count
            for d in deps { dependents[d, default: []].append(t) }
        }
        // Ready set kept sorted by canonical position (a small binary heap would do for
        // huge graphs; task counts here are in the thousands).
        var ready = tasks.filter { remaining[$0] == 0 }
        var out: [TaskID] = []
        out.reserveCapacity(tasks.count)
        while !ready.isEmpty {
            let t = ready.removeFirst()
            out.append(t)
            for d in dependents[t] ?? [] {
                remaining[d]! -= 1
                if remaining[d] == 0 {
                    let p = position[d]!
                    let i = ready.firstIndex { position[$0]! > p } ?? ready.count
                    ready.insert(d, at: i)
                }
            }
        }
        precondition(out.count == tasks.count, "task graph has a cycle")
        return out
    }
}
