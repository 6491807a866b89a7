import Cluster
import Foundation
import Jobs
import KilnProtocol

/// One running task attempt.
struct RunningTask {
    var worker: String
    var attempt: Int
    var startedMs: Int64
}

/// Progress of one (block, phase): what `kiln watch` shows per row.
struct PhaseProgress {
    var done = 0
    var total = 0
    var worker = ""
    var startedMs: Int64 = 0
    var finishedMs: Int64 = 0
    var error = 0.0
    /// Reconstruct: each linear's relative output error, by linear name.
    var linearErrors: [String: Double] = [:]
}

/// What never changes about a job: safe to hand to the work queue (the rest of `JobRun`
/// belongs to the loop thread).
struct JobPlan: Sendable {
    let id: String
    let spec: JobSpec
    let graph: TaskGraph
}

/// The scheduler's state of one job: the task graph (Jobs'), which tasks are done or
/// running, and which worker holds each shard's activations.
final class JobRun {
    let id: String
    let spec: JobSpec
    let graph: TaskGraph
    /// Which tasks are ready, in canonical order: the decision `kiln run`'s executor takes too.
    private(set) var readiness: ReadyTasks
    var state: Kiln_V1_JobState
    var error = ""
    let submittedMs: Int64
    var finishedMs: Int64 = 0
    var done: Set<TaskID> { readiness.done }
    var running: [TaskID: RunningTask] = [:]
    var attempts: [TaskID: Int] = [:]
    var failures: [TaskID: Int] = [:]
    /// Worker holding each shard's activations (affinity); nil: nobody known.
    var shardOwner: [Int: String] = [:]
    var mergesInFlight: Set<Int> = []
    /// Results being made durable on the work queue.
    var accepting: Set<TaskID> = []
    var writing = false
    /// The job ended and its result files were handed to removal (or are kept: --keep-results).
    var resultsReleased = false
    /// Size of the model file (told to workers, which fetch it when they cannot read it).
    lazy var modelSize: UInt64 =
        (try? FileManager.default.attributesOfItem(atPath: spec.model)[.size] as? NSNumber)?.uint64Value ?? 0
    var phases: [Int: [Kiln_V1_Phase: PhaseProgress]] = [:]
    var profile = JobProfile()
    /// A sensitivity job's report once its output is written (`ReportRequest`; memory only).
    var report: JobReport?
    /// Perplexities the process that ran the job measured (`kiln run`: "perplexity_before",
    /// "perplexity_after"), published in the job's status; memory only.
    var evalResults: [String: Double] = [:]

    init(id: String, spec: JobSpec, blocks: Int, state: Kiln_V1_JobState, submittedMs: Int64) {
        self.id = id
        self.spec = spec
        self.state = state
        self.submittedMs = submittedMs
        graph = TaskGraph(spec: spec, blocks: blocks)
        readiness = ReadyTasks(graph: graph)
        for b in 0..<blocks {
            var m: [Kiln_V1_Phase: PhaseProgress] = [.reconstruct: PhaseProgress(total: graph.groups)]
            if graph.statistics {
                m[.collect] = PhaseProgress(total: graph.shards)
                m[.merge] = PhaseProgress(total: 1)
            }
            if graph.statistics && spec.mode == .sequential { m[.propagate] = PhaseProgress(total: graph.shards) }
            phases[b] = m
        }
    }

    var plan: JobPlan { JobPlan(id: id, spec: spec, graph: graph) }

    var isTerminal: Bool { state == .succeeded || state == .failed || state == .cancelled }
    var allDone: Bool { readiness.allDone }

    /// Whether a task of this job's graph (nil: not one of its tasks).
    func contains(_ t: TaskID) -> Bool { readiness.position(of: t) != nil }

    /// Ready merges (the coordinator runs them).
    func readyMerges() -> [Int] {
        readiness.ready.compactMap { t in
            if case let .merge(b) = t, !mergesInFlight.contains(b) { return b }
            return nil
        }
    }

    /// The first ready worker task, in canonical order, that `worker` may run and nobody
    /// runs: shard tasks stay with the worker holding the shard while it is alive.
    func nextTask(for worker: String, alive: (String) -> Bool) -> TaskID? {
        for t in readiness.ready where running[t] == nil {
            if case .merge = t { continue }
            if let s = t.shard, let owner = shardOwner[s], owner != worker, alive(owner) { continue }
            return t
        }
        return nil
    }

    static func phase(_ t: TaskID) -> Kiln_V1_Phase {
        switch t {
        case .collect: return .collect
        case .merge: return .merge
        case .reconstruct: return .reconstruct
        case .propagate: return .propagate
        }
    }

    func markStarted(_ t: TaskID, worker: String, nowMs: Int64) {
        let ph = Self.phase(t)
        var p = phases[t.block]?[ph] ?? PhaseProgress()
        if p.startedMs == 0 { p.startedMs = nowMs }
        p.worker = worker
        phases[t.block]?[ph] = p
    }

    func markDone(_ t: TaskID, worker: String, nowMs: Int64, error: Double = 0, linearErrors: [String: Double] = [:]) {
        readiness.markDone(t)
        running[t] = nil
        let ph = Self.phase(t)
        var p = phases[t.block]?[ph] ?? PhaseProgress()
        if p.startedMs == 0 { p.startedMs = nowMs }
        p.done = min(p.total, p.done + 1)
        if p.done == p.total { p.finishedMs = nowMs }
        if !worker.isEmpty { p.worker = worker }
        p.error = max(p.error, error)
        p.linearErrors.merge(linearErrors) { max($0, $1) }
        phases[t.block]?[ph] = p
    }

    var blocksDone: Int {
        (0..<graph.blocks).filter { b in graph.tasks.allSatisfy { $0.block != b || done.contains($0) } }.count
    }
}
