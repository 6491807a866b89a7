import Cluster
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
        releaseEndedJobs()
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
        // Oldest connection first, so assignment order does not depend on hashing. Idle
        // lanes first; only then one task queued behind each worker's lanes.
        let ordered = workers.values.sorted { ($0.connectedMs, $0.id) < ($1.connectedMs, $1.id) }
        for limit in [\WorkerSession.lanes, \WorkerSession.slots] {
            for w in ordered {
                while w.held.count < w[keyPath: limit],
                    let t = run.nextTask(for: w.id, alive: { alive.contains($0) })
                {
                    assign(run, t, to: w)
                }
            }
        }
    }

    /// Reserves the worker and the task now; the input (merged statistics, quantized
    /// linears, lineage) is read and encoded on the work queue, then sent from the loop.
    func assign(_ run: JobRun, _ t: TaskID, to w: WorkerSession) {
        let attempt = (run.attempts[t] ?? 0) + 1
        run.attempts[t] = attempt
        let replay = t.shard.map { t.block > 0 && run.shardOwner[$0] != w.id } ?? false
        let withQuantized: Bool
        if case .propagate = t {
            withQuantized = w.quantizedBlocks.insert("\(run.id)/\(t.block)").inserted
        } else {
            withQuantized = false
        }
        var a = Kiln_V1_TaskAssignment()
        a.taskID = t.wireName
        a.attempt = UInt32(attempt)
        a.jobID = run.id
        a.block = UInt32(t.block)
        a.shardCount = UInt32(run.graph.shards)
        switch t {
        case let .collect(_, s):
            a.kind = .collect
            a.shard = UInt32(s)
        case let .propagate(_, s):
            a.kind = .propagate
            a.shard = UInt32(s)
        case let .reconstruct(_, u):
            a.kind = .reconstruct
            a.linearGroup = ReconstructUnits(spec: run.spec).linears(u).joined(separator: "+")
        case .merge: a.kind = .merge
        }
        var ref = Kiln_V1_InputRef()
        ref.name = "input"
        ref.kind = .tensor
        a.inputs = [ref]
        // Where the model is: a worker that cannot read this path (or sees another size)
        // fetches it in ranges from us.
        a.model.path = run.spec.model
        a.model.size = run.modelSize
        let now = Self.nowMs()
        try? store.startAttempt(job: run.id, task: t, attempt: attempt, worker: w.id, nowMs: now)
        run.running[t] = RunningTask(worker: w.id, attempt: attempt, startedMs: now)
        w.held.append(HeldTask(job: run.id, task: t, attempt: attempt))
        if let s = t.shard { run.shardOwner[s] = w.id }
        run.markStarted(t, worker: w.id, nowMs: now)
        run.profile.assigned(t, to: w.id, heldBefore: w.held.count { $0.job == run.id } - 1, nowMs: now)
        let routing = w.routing
        let assignment = a
        let plan = run.plan
        let chunkSize = w.outgoing.chunkSize
        work.async { [weak self] in
            guard let self else { return }
            let prepared = Result { () -> (PreparedInput, String) in
                let input = try self.preparedInput(
                    plan, t, replay: replay, withQuantized: withQuantized, chunkSize: chunkSize)
                return (input, try self.specJSON(plan))
            }
            self.post { [weak self] in
                var a = assignment
                guard let self, let run = self.jobs[plan.id], let live = self.workers[routing],
                    live.holding(t)?.attempt == attempt, run.running[t]?.attempt == attempt
                else { return }  // reassigned or dropped meanwhile
                do {
                    let (input, specJSON) = try prepared.get()
                    a.jobSpecJson = specJSON
                    var n: Int
                    switch input {
                    case let .file(file, checksums):
                        // Announced by the assignment; the bytes follow in chunks under credit,
                        // read from the file as they go.
                        let (header, chunks) = try live.outgoing.start(
                            file: file, name: "input", checksums: checksums, context: t.wireName)
                        a.inputs[0].tensor = header
                        n = self.reply(routing, Message(.taskAssignment(a)))
                        for c in chunks { n += self.reply(routing, c) }
                        self.countChunks(sent: chunks.count)
                    case .memory(let payload):
                        let frame = try TensorFrame(name: "input", dtype: .u8, shape: [payload.count], bytes: payload)
                        if live.outgoing.needsChunking(payload.count) {
                            let (header, chunks) = try live.outgoing.start(frame, context: t.wireName)
                            a.inputs[0].tensor = header
                            n = self.reply(routing, Message(.taskAssignment(a)))
                            for c in chunks { n += self.reply(routing, c) }
                            self.countChunks(sent: chunks.count)
                        } else {
                            n = self.reply(routing, Message(.taskAssignment(a), tensors: [frame]))
                        }
                    }
                    live.lastSentMs = Self.nowMs()
                    self.countSent(t.kindName, n)
                    self.log.debug(
                        "assigned",
                        metadata: ["task": "\(t)", "worker": "\(live.id)", "attempt": "\(attempt)", "bytes": "\(n)"])
                } catch {
                    self.failJob(run, "cannot prepare the input of \(t): \(error)")
                }
            }
        }
    }

    /// A task input ready to send: encoded in memory, or (merged statistics, the bulk of a
    /// large model's traffic) written to a file with its chunks' CRC-32Cs.
    enum PreparedInput: Sendable {
        case memory(Data)
        case file(SpoolFile, checksums: [UInt32])
    }

    /// The task's input as it goes out: a reconstruct's merged statistics streamed from the
    /// block's collect files into a file when it needs chunks (the coordinator never holds
    /// a Hessian), anything else encoded in memory. Work queue only.
    func preparedInput(
        _ run: JobPlan, _ t: TaskID, replay: Bool, withQuantized: Bool, chunkSize: Int
    ) throws -> PreparedInput {
        dispatchPrecondition(condition: .onQueue(work))
        guard case let .reconstruct(b, u) = t, run.graph.statistics else {
            return .memory(try TaskPayload.encode(try taskInput(run, t, replay: replay, withQuantized: withQuantized)))
        }
        // Every row slice of a group gets the group's whole statistics (its Hessian).
        let units = ReconstructUnits(spec: run.spec)
        let group = units.group(u)
        if let ready = preparedStatistics[run.id]?[b]?[group] { return ready }
        let parts = try statistics(run, block: b)
        let file = try files.spool(job: run.id)
        let size = try MergedStatisticsInput.write(group: group, of: parts, to: file)
        let prepared: PreparedInput =
            size > chunkSize
            ? .file(file, checksums: try ChunkSender.checksums(of: file, chunkSize: chunkSize))
            : .memory(try file.read(at: 0, count: size))
        // Kept for the group's other slices until the block's reconstructions are durable.
        if units.parts > 1 { preparedStatistics[run.id, default: [:]][b, default: [:]][group] = prepared }
        return prepared
    }

    /// The job's spec as JSON, encoded once per job. Work queue only.
    func specJSON(_ run: JobPlan) throws -> String {
        dispatchPrecondition(condition: .onQueue(work))
        if let s = specJSONCache[run.id] { return s }
        let s = String(decoding: try JSONEncoder().encode(run.spec), as: UTF8.self)
        specJSONCache[run.id] = s
        return s
    }

    /// The task's inputs: quantized linears (the first time a worker gets a propagate of the
    /// block), and lineage when the worker may not hold the shard's activations. (A
    /// reconstruct's statistics are `preparedInput`'s.) Work queue only (it owns the caches).
    func taskInput(_ run: JobPlan, _ t: TaskID, replay: Bool, withQuantized: Bool) throws -> ClusterTaskInput {
        dispatchPrecondition(condition: .onQueue(work))
        var input = ClusterTaskInput()
        switch t {
        case let .propagate(b, _) where withQuantized:
            input.quantized = try quantized(run, block: b)
        default: break
        }
        if replay {
            input.replayAllowed = true
            if run.spec.mode == .sequential {
                input.lineage = try (0..<t.block).map { try quantized(run, block: $0, cache: false) }
            }
        }
        return input
    }

    /// Block b's collect files, opened and checked (size, CRC-32C, structure) and found to
    /// cover every shard exactly once: what each reconstruct's merged statistics are summed
    /// from. The Hessians stay in the files.
    func statistics(_ run: JobPlan, block b: Int) throws -> [CollectFile] {
        dispatchPrecondition(condition: .onQueue(work))
        if let parts = statisticsParts[run.id]?[b] { return parts }
        var parts: [CollectFile] = []
        var paths = Set<String>()  // a worker's sum of several shards is one file
        for r in try store.results(job: run.id) where r.task.block == b && paths.insert(r.path).inserted {
            guard case .collect = r.task else { continue }
            parts.append(try files.openCollect(r))
        }
        parts.sort { $0.shards[0] < $1.shards[0] }
        let covered = parts.flatMap(\.shards).sorted()
        guard parts.allSatisfy({ $0.block == b }), covered == Array(0..<run.graph.shards) else {
            throw CoordinatorError("merge(\(b)): the shard results cover \(covered), not 0..<\(run.graph.shards)")
        }
        statisticsParts[run.id, default: [:]][b] = parts
        return parts
    }

    func quantized(_ run: JobPlan, block b: Int, cache: Bool = true) throws -> [QuantizedLinear] {
        dispatchPrecondition(condition: .onQueue(work))
        if let q = quantizedCache[run.id]?[b] { return q }
        var results: [ReconstructResult] = []
        for u in 0..<run.graph.groups {
            if let linears = reconstructedCache[run.id]?[.reconstruct(block: b, group: u)] {
                results.append(ReconstructResult(block: b, group: u, linears: linears))
                continue
            }
            let r = try storedResult(run, .reconstruct(block: b, group: u))
            guard case let .reconstruct(rr) = try files.readOutput(r) else {
                throw CoordinatorError("result file of reconstruct(\(b),\(u)) holds another task's result")
            }
            results.append(rr)
        }
        // Row slices joined into whole linears, as propagate and the observers use them.
        let out = try ReconstructUnits(spec: run.spec).join(results)
        if cache { quantizedCache[run.id, default: [:]][b] = out }
        return out
    }

    func storedResult(_ run: JobPlan, _ t: TaskID) throws -> StoredResult {
        guard let r = try store.results(job: run.id).first(where: { $0.task == t }) else {
            throw CoordinatorError("no durable result for \(t) of job \(run.id)")
        }
        return r
    }

    /// A task's result is durable: update the graph, drop caches no longer needed, publish.
    func completed(_ run: JobRun, _ t: TaskID, worker: String, error: Double = 0, linearErrors: [String: Double] = [:])
    {
        assertOnLoop()
        if let r = run.running[t] {
            metrics.time(
                "kiln_task_duration_seconds", [("kind", t.kindName)], seconds: Double(Self.nowMs() - r.startedMs) / 1000
            )
        }
        metrics.count("kiln_tasks_completed_total", [("kind", t.kindName)])
        run.markDone(t, worker: worker, nowMs: Self.nowMs(), error: error, linearErrors: linearErrors)
        let b = t.block
        let blockDone = run.graph.tasks.allSatisfy { $0.block != b || run.done.contains($0) }
        let reconstructed = (0..<run.graph.groups).allSatisfy { run.done.contains(.reconstruct(block: b, group: $0)) }
        let jobID = run.id
        let blocks = run.graph.blocks
        let plan = run.plan
        let observed = onEvent != nil
        let keep = config.keepResults
        work.async { [weak self] in
            guard let self else { return }
            // The caches belong to the work queue; a block's entries go when no task needs them
            // (lineage reloads from the durable files).
            if reconstructed {
                self.statisticsParts[jobID]?[b] = nil
                self.preparedStatistics[jobID]?[b] = nil
                if !keep { self.releaseStatistics(jobID, block: b) }
            }
            guard blockDone else { return }
            let linears = observed ? ((try? self.quantized(plan, block: b, cache: false)) ?? []) : []
            self.quantizedCache[jobID]?[b] = nil
            for g in 0..<plan.graph.groups { self.reconstructedCache[jobID]?[.reconstruct(block: b, group: g)] = nil }
            if observed { self.post { self.onEvent?(jobID, .blockDone(block: b, blocks: blocks, linears: linears)) } }
        }
        var m = Kiln_V1_ModuleProgress()
        m.block = UInt32(b)
        m.phase = JobRun.phase(t)
        if let p = run.phases[b]?[m.phase] {
            m.done = UInt32(p.done)
            m.total = UInt32(p.total)
            m.workerID = p.worker
            m.startedUnixMs = p.startedMs
            m.error = p.error
            m.linearErrors = p.linearErrors
            m.elapsedMs = UInt64(max(0, (p.finishedMs > 0 ? p.finishedMs : Self.nowMs()) - p.startedMs))
        }
        publish(run, module: m)
        onEvent?(run.id, .task(t, done: run.done.count, total: run.graph.tasks.count))
    }

    /// Block b's reconstructions are durable: its collect files are read by no
    /// one again (a restart marks them done by their rows), so they go now rather than at
    /// the job's end — a 7B-shaped model's statistics are ~2.7 GB per block.
    func releaseStatistics(_ job: String, block b: Int) {
        dispatchPrecondition(condition: .onQueue(work))
        do {
            let paths = Set(
                try store.results(job: job).filter { r in
                    switch r.task {
                    case .collect(b, _): return true
                    default: return false
                    }
                }.map(\.path))
            for p in paths.sorted() where unlink(p) != 0 && errno != ENOENT {
                log.warning("could not remove \(p): \(String(cString: strerror(errno)))")
            }
        } catch {
            log.warning("could not list the statistics files of block \(b) of \(job): \(error)")
        }
    }

    /// merge(b) on the work queue: the block's collect files opened, checked and found to
    /// cover every shard once. The sums themselves are made per reconstruct, from the files
    /// (exact, so bit-identical however the shards were grouped). Not a file: a restarted
    /// coordinator checks the collect files again.
    func startMerge(_ run: JobRun, block b: Int) {
        run.mergesInFlight.insert(b)
        let startedMs = Self.nowMs()
        run.markStarted(.merge(block: b), worker: "", nowMs: startedMs)
        let plan = run.plan
        work.async { [weak self] in
            guard let self else { return }
            let outcome = Result { try self.statistics(plan, block: b) }
            self.post { [weak self] in
                guard let self, let run = self.jobs[plan.id] else { return }
                run.mergesInFlight.remove(b)
                run.profile.mergeMs += Self.nowMs() - startedMs
                switch outcome {
                case .success:
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
        let files = self.files
        let store = self.store
        let spec = run.spec
        let jobID = run.id
        let submittedMs = run.submittedMs
        work.async { [weak self] in
            let outcome = Result { () -> JobReport? in
                try OutputAssembly.write(spec: spec, results: try store.results(job: jobID), files: files)
                // A sensitivity job's report is its result (`kiln submit --target-bpw` fetches it).
                guard spec.measureTypes, let self else { return nil }
                return try self.report(
                    job: jobID, spec: spec, seconds: Double(Self.nowMs() - submittedMs) / 1000)
            }
            self?.post { [weak self] in
                guard let self, let run = self.jobs[jobID] else { return }
                switch outcome {
                case .success(let report):
                    run.report = report
                    run.state = .succeeded
                    run.finishedMs = Self.nowMs()
                    try? self.store.setJobState(jobID, state: "succeeded", finishedMs: run.finishedMs)
                    let tr = self.traffic
                    self.log.info(
                        "job succeeded",
                        metadata: [
                            "job": "\(jobID)", "output": "\(spec.output)",
                            "seconds": "\(Double(run.finishedMs - run.submittedMs) / 1000)",
                            "bytes_sent": "\(tr.sent.sorted { $0.key < $1.key })",
                            "bytes_received": "\(tr.received.sorted { $0.key < $1.key })",
                            "peak_rss": "\(Jobs.peakRSSBytes())",
                        ])
                    // One line of JSON for Ops/bench.sh scale (traffic counts the coordinator's life).
                    let profile = run.profile.json(
                        finishedMs: run.finishedMs, coordinatorCPUSeconds: processCPUSeconds(), traffic: tr)
                    self.log.info("job profile \(profile)")
                    self.work.async {
                        self.statisticsParts[jobID] = nil
                        self.preparedStatistics[jobID] = nil
                        self.specJSONCache[jobID] = nil
                        self.quantizedCache[jobID] = nil
                        self.reconstructedCache[jobID] = nil
                    }
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

    /// Result files of jobs that ended (output written, failed or cancelled) are removed,
    /// unless --keep-results: nothing reads them again, and a small job leaves gigabytes.
    /// The store marks them removed first, so a crash in between leaves only files that
    /// no one reads (`kiln gc` collects them). Runs every tick, so jobs found ended at a
    /// restart are collected too.
    func releaseEndedJobs() {
        for run in jobs.values where run.isTerminal && !run.resultsReleased {
            run.resultsReleased = true
            guard !config.keepResults else { continue }
            let store = self.store
            let files = self.files
            let jobID = run.id
            let log = self.log
            // On the work queue: after anything it still holds for the job (a result being
            // made durable, a merge, an input being read), in order.
            work.async { [weak self] in
                self?.statisticsParts[jobID] = nil
                self?.preparedStatistics[jobID] = nil
                self?.specJSONCache[jobID] = nil
                self?.quantizedCache[jobID] = nil
                self?.reconstructedCache[jobID] = nil
                do {
                    try store.markResultsRemoved(job: jobID)
                } catch {
                    // A full disk refuses even this update, and that is when the space is
                    // needed most: the files go anyway (nothing reads an ended job's results);
                    // the mark is made at the next start (this sweep again) or by `kiln gc`.
                    log.warning("could not mark the result files of \(jobID) removed: \(error)")
                }
                do {
                    let r = try files.removeJob(jobID)
                    log.info(
                        "result files removed",
                        metadata: [
                            "job": "\(jobID)", "files": "\(r.files)", "bytes": "\(r.bytes)",
                            "left": "\(r.foreign)",
                        ])
                } catch {
                    log.warning("could not remove the result files of \(jobID): \(error)")
                }
            }
        }
    }

    func cancelRunning(_ run: JobRun, reason: String) {
        for (t, r) in run.running {
            if let w = workers.values.first(where: { $0.id == r.worker }) {
                var c = Kiln_V1_TaskCancel()
                c.taskID = t.wireName
                c.attempt = UInt32(r.attempt)
                c.reason = reason
                reply(w.routing, Message(.taskCancel(c)))
                w.release(t)
            }
        }
        run.running = [:]
    }

    /// Jobs in the store that were not finished: resumed; completed tasks are not rerun.
    func resumeJobs() throws {
        let removed = try store.jobsWithResultsRemoved()
        for j in try store.jobs() {
            let state = Self.jobState(j.state)
            let blocks: Int
            if state == .succeeded || state == .failed || state == .cancelled {
                blocks = (try? j.spec.openForJob().config.layerCount) ?? 0
            } else {
                blocks = try j.spec.openForJob().config.layerCount
            }
            let run = JobRun(
                id: j.id, spec: j.spec, blocks: blocks, state: state == .writing ? .running : state,
                submittedMs: j.submittedMs)
            run.error = j.error
            run.finishedMs = j.finishedMs
            run.resultsReleased = removed.contains(j.id)
            jobs[j.id] = run
            jobOrder.append(j.id)
            clientTokens[j.clientToken.isEmpty ? "-" + j.id : j.clientToken] = j.id
            guard !run.isTerminal else {
                if state == .succeeded { for t in run.graph.tasks { run.markDone(t, worker: "", nowMs: j.finishedMs) } }
                continue
            }
            try store.resetRunning(job: j.id)
            for (name, n) in try store.attemptCounts(job: j.id) {
                if let t = TaskID(wireName: name) { run.attempts[t] = n }
            }
            var resumed = 0
            let results = try store.results(job: j.id)
            // Statistics of reconstructed blocks were released: their rows stand for them.
            let reconstructed = Set(
                results.compactMap { r -> TaskID? in
                    guard case .reconstruct = r.task, (try? files.read(r)) != nil else { return nil }
                    return r.task
                })
            let released = { (t: TaskID) -> Bool in
                switch t {
                case .collect, .merge:
                    return (0..<run.graph.groups).allSatisfy {
                        reconstructed.contains(.reconstruct(block: t.block, group: $0))
                    }
                default: return false
                }
            }
            // Merges are not files: done where every reconstruction of the block is.
            for b in 0..<run.graph.blocks where run.contains(.merge(block: b)) && released(.merge(block: b)) {
                run.markDone(.merge(block: b), worker: "coordinator", nowMs: Self.nowMs())
            }
            for r in results where run.contains(r.task) {
                // A damaged file is redone rather than trusted.
                guard released(r.task) || (try? files.read(r)) != nil else { continue }
                run.markDone(r.task, worker: r.worker, nowMs: Self.nowMs())
                resumed += 1
            }
            resumedTaskCount += resumed
            log.info(
                "resumed job", metadata: ["job": "\(j.id)", "done": "\(resumed)", "tasks": "\(run.graph.tasks.count)"])
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
