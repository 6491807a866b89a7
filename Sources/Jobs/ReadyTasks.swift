/// The one scheduling decision of a job: which tasks of the graph are ready (every
/// dependency done, the task itself not done), in canonical order. `TaskGraph.order()`,
/// the local executor and the coordinator all take their tasks from it; they differ only
/// in policy (the executor runs the ready tasks of the earliest block as one wave, the
/// coordinator hands each idle worker the first ready task it may run).
///
/// Tasks may be marked done in any order (a resumed job marks what the store holds).
public struct ReadyTasks: Sendable {
    public let graph: TaskGraph
    public private(set) var done: Set<TaskID> = []
    private let position: [TaskID: Int]
    private let dependents: [[Int]]
    /// Unfinished dependencies per task, by canonical position.
    private var waiting: [Int]
    /// Positions of the ready tasks, ascending.
    private var readyPositions: [Int] = []

    public init(graph: TaskGraph) {
        self.graph = graph
        var position: [TaskID: Int] = [:]
        for (i, t) in graph.tasks.enumerated() { position[t] = i }
        var dependents = [[Int]](repeating: [], count: graph.tasks.count)
        var waiting = [Int](repeating: 0, count: graph.tasks.count)
        for (i, t) in graph.tasks.enumerated() {
            let deps = graph.dependencies(of: t)
            waiting[i] = deps.count
            for d in deps { dependents[position[d]!].append(i) }
        }
        self.position = position
        self.dependents = dependents
        self.waiting = waiting
        readyPositions = waiting.indices.filter { waiting[$0] == 0 }
    }

    /// The ready tasks in canonical order.
    public var ready: [TaskID] { readyPositions.map { graph.tasks[$0] } }

    /// The ready task that comes first in canonical order.
    public var first: TaskID? { readyPositions.first.map { graph.tasks[$0] } }

    public var allDone: Bool { done.count == graph.tasks.count }

    public func isReady(_ t: TaskID) -> Bool {
        guard let p = position[t] else { return false }
        return waiting[p] == 0 && !done.contains(t)
    }

    /// Canonical position of a task of this graph (nil: not one of its tasks).
    public func position(of t: TaskID) -> Int? { position[t] }

    /// Records a finished task; its dependents whose dependencies are all done become
    /// ready. Marking a task done twice changes nothing.
    public mutating func markDone(_ t: TaskID) {
        guard let p = position[t], done.insert(t).inserted else { return }
        let i = insertionIndex(p)
        if i < readyPositions.count && readyPositions[i] == p { readyPositions.remove(at: i) }
        for d in dependents[p] {
            waiting[d] -= 1
            if waiting[d] == 0 && !done.contains(graph.tasks[d]) { readyPositions.insert(d, at: insertionIndex(d)) }
        }
    }

    /// Where position p is or would be inserted in `readyPositions` (binary search).
    private func insertionIndex(_ p: Int) -> Int {
        var lo = 0
        var hi = readyPositions.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if readyPositions[mid] < p { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
