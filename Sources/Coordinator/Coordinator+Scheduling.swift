import Foundation
import Jobs
import KilnProtocol
import Logging
import ZeroMQ

extension Coordinator {
    /// The active job: the oldest one not finished (jobs run one after another).
    var activeJob: JobRun? {
        jobOrder.lazy.compactMap { self.jobs[$0] }.first { !$0.isTerminal }
    }

    /// Hands ready tasks to idle workers and starts ready merges.
    func schedule() {
        guard let run = activeJob else { return }
        if run.state == .queued || run.state == .planning {
            run.state = .running
            try? store.setJobState(run.id, state: "running")
            publishState(run)
        }
        for b in run.readyMerges() { startMerge(run, block: b) }
        if run.allDone {
            if !run.writing { startWrite(run) }
            return
        }
        let alive = Set(workers.values.map(\.id))
        // Oldest connection first, so assignment order does not depend on hashing.
        for w in workers.values.sorted(by: { ($0.connectedMs, $0.id) < ($1.connectedMs, $1.id) }) where w.task == nil {
            guard let t = run.nextTask(for: w.id, alive: { alive.contains($0) }) else { continue }
            assign(run, t, to: w)
        }
    }

    func assign(_ run: JobRun, _ t: TaskID, to w: WorkerSession) {
        let attempt = (run.attempts[t] ?? 0) + 1
        run.attempts[t] = attempt
        let input: ClusterTaskInput
        do {
            input = try taskInput(run, t, worker: w.id)
        } catch {
            failJob(run, "cannot prepare \(t): \(error)")
            return
        }
        let payload: Data
        var a = Kiln_V1_TaskAssignment()
        do {
            payload = try ClusterCodec.encode(input)
            a.jobSpecJson = String(decoding: try JSONEncoder().encode(run.spec), as: UTF8.self)
        } catch {
            failJob(run, "cannot encode the input of \(t): \(error)")
            return
        }
        a.taskID = t.wireName
        a.attempt = UInt32(attempt)
        a.jobID = run.id
        a.block = UInt32(t.block)
        a.shardCount = UInt32(run.graph.shards)
        switch t {
        case let .collect(_, s): a.kind = .collect; a.shard = UInt32(s)
        case let .propagate(_, s): a.kind = .propagate; a.shard = UInt32(s)
        case let .reconstruct(_, g): a.kind = .reconstruct; a.linearGroup = Tasks.groups[g].joined(separator: "+")
        case .merge: a.kind = .merge
        }
        var ref = Kiln_V1_InputRef()
        ref.name = "input"
        ref.kind = .tensor
        a.inputs = [ref]
        let frame: TensorFrame
        do { frame = try TensorFrame(name: "input", dtype: .u8, shape: [payload.count], bytes: payload) } catch {
            failJob(run, "cannot frame the input of \(t): \(error)")
            return
        }
        let now = Self.nowMs()
        try? store.startAttempt(job: run.id, task: t, attempt: attempt, worker: w.id, nowMs: now)
        run.running[t] = RunningTask(worker: w.id, attempt: attempt, startedMs: now)
        w.task = (run.id, t, attempt)
        if let s = t.shard { run.shardOwner[s] = w.id }
        run.markStarted(t, worker: w.id, nowMs: now)
        let n = reply(w.routing, Message(.taskAssignment(a), tensors: [frame]))
        w.lastSentMs = now
        countSent(t.kindName, n)
        log.debug("assigned", metadata: ["task": "\(t)", "worker": "\(w.id)", "attempt": "\(attempt)", "bytes": "\(n)"])
    }

    /// The task's inputs: merged statistics, quantized linears, and lineage when the
    /// worker may not hold the shard's activations.
    func taskInput(_ run: JobRun, _ t: TaskID, worker: String) throws -> ClusterTaskInput {
        var input = ClusterTaskInput()
        switch t {
        case let .reconstruct(b, g):
            let m = try merged(run, block: b)
            input.statistics = m.statistics[g]
        case let .propagate(b, _):
            input.quantized = try quantized(run, block: b)
        default: break
        }
        if let s = t.shard, t.block > 0, run.shardOwner[s] != worker {
            input.replayAllowed = true
            if run.spec.mode == .sequential {
                input.lineage = try (0..<t.block).map { try quantized(run, block: $0) }
            }
        }
        return input
    }

    func merged(_ run: JobRun, block b: Int) throws -> MergeResult {
        if let m = mergedCache[run.id]?[b] { return m }
        let r = try storedResult(run, .merge(block: b))
        guard case let .merge(m) = try ClusterCodec.decode(ClusterTaskOutput.self, from: try files.read(r)) else {
            throw CoordinatorError("result file of merge(\(b)) holds another task's result")
        }
        mergedCache[run.id, default: [:]][b] = m
        return m
    }

    func quantized(_ run: JobRun, block b: Int) throws -> [QuantizedLinear] {
        if let q = quantizedCache[run.id]?[b] { return q }
        var out: [QuantizedLinear] = []
        for g in 0..<run.graph.groups {
            let r = try storedResult(run, .reconstruct(block: b, group: g))
            guard case let .reconstruct(rr) = try ClusterCodec.decode(ClusterTaskOutput.self, from: try files.read(r)) else {
                throw CoordinatorError("result file of reconstruct(\(b),\(g)) holds another task's result")
            }
            out += rr.linears
        }
        quantizedCache[run.id, default: [:]][b] = out
        return out
    }

    func storedResult(_ run: JobRun, _ t: TaskID) throws -> StoredResult {
        guard let r = try store.results(job: run.id).first(where: { $0.task == t }) else {
            throw CoordinatorError("no durable result for \(t) of job \(run.id)")
        }
        return r
    }

    /// A task's result is durable: update the graph, drop caches no longer needed, publish.
    func completed(_ run: JobRun, _ t: TaskID, worker: String, error: Double = 0) {
        run.markDone(t, worker: worker, nowMs: Self.nowMs(), error: error)
        let b = t.block
        if case .reconstruct = t, (0..<run.graph.groups).allSatisfy({ run.done.contains(.reconstruct(block: b, group: $0)) }) {
            mergedCache[run.id]?[b] = nil
        }
        if case .propagate = t, (0..<run.graph.shards).allSatisfy({ run.done.contains(.propagate(block: b, shard: $0)) }) {
            // Keep only what lineage may still need in memory: nothing; it reloads from files.
            quantizedCache[run.id]?[b] = nil
        }
        var m = Kiln_V1_ModuleProgress()
        m.block = UInt32(b)
        m.phase = JobRun.phase(t)
        if let p = run.phases[b]?[m.phase] {
            m.done = UInt32(p.done); m.total = UInt32(p.total); m.workerID = p.worker
            m.startedUnixMs = p.startedMs; m.error = p.error
            m.elapsedMs = UInt64(max(0, (p.finishedMs > 0 ? p.finishedMs : Self.nowMs()) - p.startedMs))
        }
        publish(run, module: m)
        if let ev = onEvent {
            ev(run.id, .task(t, done: run.done.count, total: run.graph.tasks.count))
            if run.graph.tasks.allSatisfy({ $0.block != b || run.done.contains($0) }) {
                let linears = (try? quantized(run, block: b)) ?? []
                ev(run.id, .blockDone(block: b, blocks: run.graph.blocks, linears: linears))
                quantizedCache[run.id]?[b] = nil
            }
        }
    }

    /// merge(b) on the work queue: shard results read from their durable files and
    /// reduced in shard order by Jobs' merge (exact, so bit-identical however produced).
    func startMerge(_ run: JobRun, block b: Int) {
        run.mergesInFlight.insert(b)
        run.markStarted(.merge(block: b), worker: "", nowMs: Self.nowMs())
        let results: [StoredResult]
        do {
            let all = try store.results(job: run.id)
            results = (0..<run.graph.shards).compactMap { s in all.first { $0.task == .collect(block: b, shard: s) } }
        } catch {
            failJob(run, "merge(\(b)): \(error)")
            return
        }
        let files = self.files, store = self.store, jobID = run.id
        work.async { [weak self] in
            let outcome: Result<MergeResult, Error> = Result {
                let parts = try results.map { r -> CollectResult in
                    guard case let .collect(c) = try ClusterCodec.decode(ClusterTaskOutput.self, from: try files.read(r)) else {
                        throw CoordinatorError("result file of \(r.task) holds another task's result")
                    }
                    return c
                }
                let m = try Tasks.merge(block: b, parts: parts)
                let data = try ClusterCodec.encode(ClusterTaskOutput.merge(m))
                let (url, sum) = try files.write(data, job: jobID, task: .merge(block: b))
                try store.recordResult(job: jobID, StoredResult(task: .merge(block: b), path: url.path, checksum: sum, bytes: data.count, worker: "coordinator"),
                                       attempt: 1, nowMs: Coordinator.nowMs())
                return m
            }
            self?.post { [weak self] in
                guard let self, let run = self.jobs[jobID] else { return }
                run.mergesInFlight.remove(b)
                switch outcome {
                case .success(let m):
                    self.mergedCache[jobID, default: [:]][b] = m
                    self.completed(run, .merge(block: b), worker: "coordinator")
                case .failure(let e):
                    self.failJob(run, "merge(\(b)): \(e)")
                }
            }
        }
    }

    /// The writer on the work queue: Jobs' output writer over the durable reconstruct results.
    func startWrite(_ run: JobRun) {
        run.writing = true
        run.state = .writing
        try? store.setJobState(run.id, state: "writing")
        publishState(run)
        onEvent?(run.id, .phase("write"))
        let files = self.files, store = self.store, spec = run.spec, jobID = run.id
        work.async { [weak self] in
            let outcome = Result { try OutputAssembly.write(spec: spec, results: try store.results(job: jobID), files: files) }
            self?.post { [weak self] in
                guard let self, let run = self.jobs[jobID] else { return }
                switch outcome {
                case .success:
                    run.state = .succeeded
                    run.finishedMs = Self.nowMs()
                    try? self.store.setJobState(jobID, state: "succeeded", finishedMs: run.finishedMs)
                    self.log.info("job succeeded", metadata: ["job": "\(jobID)", "output": "\(spec.output)"])
                    self.mergedCache[jobID] = nil
                    self.quantizedCache[jobID] = nil
                    self.publishState(run)
                case .failure(let e):
                    self.failJob(run, "writing \(spec.output): \(e)")
                }
            }
        }
    }

    func failJob(_ run: JobRun, _ why: String) {
        guard !run.isTerminal else { return }
        log.error("job failed", metadata: ["job": "\(run.id)", "error": "\(why)"])
        run.state = .failed
        run.error = why
        run.finishedMs = Self.nowMs()
        try? store.setJobState(run.id, state: "failed", error: why, finishedMs: run.finishedMs)
        cancelRunning(run, reason: why)
        publishState(run)
    }

    func cancelRunning(_ run: JobRun, reason: String) {
        for (t, r) in run.running {
            if let w = workers.values.first(where: { $0.id == r.worker }) {
                var c = Kiln_V1_TaskCancel()
                c.taskID = t.wireName; c.attempt = UInt32(r.attempt); c.reason = reason
                reply(w.routing, Message(.taskCancel(c)))
                if w.task?.task == t { w.task = nil }
            }
        }
        run.running = [:]
    }

    /// Jobs in the store that were not finished: resumed; completed tasks are not rerun.
    func resumeJobs() throws {
        for j in try store.jobs() {
            let state = Self.jobState(j.state)
            let blocks: Int
            if state == .succeeded || state == .failed || state == .cancelled {
                blocks = (try? j.spec.blockCount(j.spec.openModelView())) ?? 0
            } else {
                blocks = try j.spec.blockCount(j.spec.openModelView())
            }
            let run = JobRun(id: j.id, spec: j.spec, blocks: blocks, state: state == .writing ? .running : state, submittedMs: j.submittedMs)
            run.error = j.error
            run.finishedMs = j.finishedMs
            jobs[j.id] = run
            jobOrder.append(j.id)
            clientTokens[j.clientToken.isEmpty ? "-" + j.id : j.clientToken] = j.id
            guard !run.isTerminal else {
                if state == .succeeded { for t in run.graph.tasks { run.markDone(t, worker: "", nowMs: j.finishedMs) } }
                continue
            }
            try store.resetRunning(job: j.id)
            for (name, n) in try store.attemptCounts(job: j.id) { if let t = TaskID(wireName: name) { run.attempts[t] = n } }
            var resumed = 0
            for r in try store.results(job: j.id) where run.position[r.task] != nil {
                // A damaged file is redone rather than trusted.
                guard (try? files.read(r)) != nil else { continue }
                run.markDone(r.task, worker: r.worker, nowMs: Self.nowMs())
                resumed += 1
            }
            resumedTaskCount += resumed
            log.info("resumed job", metadata: ["job": "\(j.id)", "done": "\(resumed)", "tasks": "\(run.graph.tasks.count)"])
        }
    }

    static func jobState(_ s: String) -> Kiln_V1_JobState {
        switch s {
        case "queued": return .queued
        case "running": return .running
        case "writing": return .writing
        case "succeeded": return .succeeded
        case "failed": return .failed
        case "cancelled": return .cancelled
        default: return .queued
        }
    }
}
