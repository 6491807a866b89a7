import Cluster
import Foundation
import Jobs
import KilnProtocol
import Logging
import ZeroMQ

extension Coordinator {
    func onHello(_ routing: Data, _ h: Kiln_V1_WorkerHello) {
        guard h.protocolVersion == KilnWire.version else {
            let e = Kiln_V1_Error(
                .versionMismatch, field: "worker_hello.protocol_version",
                "worker speaks protocol version \(h.protocolVersion.rawValue), coordinator \(KilnWire.version.rawValue)"
            )
            log.warning("\(e.message)", metadata: ["worker": "\(h.workerID)"])
            reply(routing, Message(.error(e)))
            return
        }
        guard !h.workerID.isEmpty, h.workerID.utf8.count <= 256 else {
            let e = Kiln_V1_Error(.invalidField, field: "worker_hello.worker_id", "worker_id must be 1...256 bytes")
            reply(routing, Message(.error(e)))
            return
        }
        let now = Self.nowMs()
        // A worker that reconnects (new connection, same id): its old session's work is void.
        for old in workers.values where old.id == h.workerID && old.routing != routing {
            dropWorker(old, reason: "reconnected")
        }
        if let existing = workers[routing], existing.id == h.workerID {
            existing.capacity = h.capacity
            existing.lastSeenMs = now
            for t in existing.held + existing.deferred {
                requeue(t.job, t.task, attempt: t.attempt, outcome: "worker said hello again")
            }
            existing.held = []
            existing.deferred = []
            existing.quantizedBlocks = []  // a restarted process keeps no blocks
        } else {
            if let existing = workers[routing] { dropWorker(existing, reason: "routing id reused") }
            let session = WorkerSession(
                routing: routing, id: h.workerID, capacity: h.capacity, hostname: h.hostname,
                nowMs: now, config: config)
            // The same worker back (a reconnect, or stopped past its liveness and continued):
            // its figures go on from where they were, not from zero.
            session.tasksDone = lostWorkers[h.workerID]?.tasksDone ?? 0
            workers[routing] = session
        }
        lostWorkers[h.workerID] = nil
        var w = Kiln_V1_WorkerWelcome()
        w.workerID = h.workerID
        w.heartbeatIntervalMs = config.heartbeatIntervalMs
        w.heartbeatLiveness = config.heartbeatLiveness
        w.maxFrameBytes = UInt64(config.limits.maxFrameBytes)
        w.chunkSize = UInt64(config.effectiveChunkBytes)
        w.maxChunksInFlight = UInt32(config.chunkWindow)
        reply(routing, Message(.workerWelcome(w)))
        workers[routing]?.lastSentMs = now
        log.info(
            "worker joined",
            metadata: [
                "worker": "\(h.workerID)", "threads": "\(h.capacity.threads)",
                "cpu": "\(h.capacity.cpuKind)", "host": "\(h.hostname)",
            ])
    }

    func onHeartbeat(_ routing: Data) {
        guard workers[routing] != nil else {
            // A worker we dropped (or from before a restart): it must say hello again.
            reply(
                routing,
                Message(.error(Kiln_V1_Error(.unknownTask, field: "heartbeat", "unknown worker: send worker_hello"))))
            return
        }
    }

    func onGoodbye(_ routing: Data, _ g: Kiln_V1_WorkerGoodbye) {
        guard let w = workers[routing] else { return }
        dropWorker(w, reason: "goodbye: \(g.reason)")
    }

    /// Drops a worker: its running task goes back to the queue and the shards it held
    /// lose their owner, so the next owner rebuilds them by lineage.
    func dropWorker(_ w: WorkerSession, reason: String) {
        log.warning("worker dropped", metadata: ["worker": "\(w.id)", "reason": "\(reason)"])
        workers[w.routing] = nil
        w.lost = true
        lostWorkers[w.id] = w
        for t in w.held + w.deferred { requeue(t.job, t.task, attempt: t.attempt, outcome: "lost: \(reason)") }
        w.held = []
        w.deferred = []
        for run in jobs.values {
            for (s, owner) in run.shardOwner where owner == w.id { run.shardOwner[s] = nil }
        }
    }

    func requeue(_ job: String, _ t: TaskID, attempt: Int, outcome: String) {
        guard let run = jobs[job], let r = run.running[t], r.attempt == attempt else { return }
        run.running[t] = nil
        metrics.count("kiln_task_attempts_requeued_total", [("kind", t.kindName)])
        try? store.endAttempt(job: job, task: t, attempt: attempt, outcome: outcome, nowMs: Self.nowMs())
    }

    func onProgress(_ routing: Data, _ p: Kiln_V1_TaskProgress) {
        guard let w = workers[routing], let cur = w.held.first(where: { $0.task.wireName == p.taskID }),
            let run = jobs[cur.job]
        else { return }
        var m = Kiln_V1_ModuleProgress()
        m.block = UInt32(cur.task.block)
        m.module = p.stage
        m.phase = JobRun.phase(cur.task)
        m.done = p.done
        m.total = p.total
        m.workerID = w.id
        publish(run, module: m)
    }

    /// `spooled`: a chunked result that arrived into a file (collects: see the announce below).
    func onResult(_ routing: Data, _ r: Kiln_V1_TaskResult, _ message: Message, spooled: SpoolFile? = nil) {
        guard let w = workers[routing] else {
            log.warning("result from an unknown peer dropped", metadata: ["task": "\(r.taskID)"])
            return
        }
        // A result too large for one frame: announced here, its bytes follow in chunks;
        // onResult runs again with the payload attached when every chunk is in.
        if spooled == nil, message.tensors.isEmpty, r.status == .ok, let h = r.outputs.first, h.transferID != 0 {
            // A result for a job that has ended is not received at all: its bytes would only be
            // dropped, and a file spooled for it would outlive the job's results.
            let job = TaskID(wireName: r.taskID).flatMap { w.holding($0)?.job } ?? r.jobID
            guard let run = jobs[job], !run.isTerminal else {
                transferFailed(w, r, .invalidField(field: "task_result.job_id", reason: "job '\(job)' is not running"))
                return
            }
            do {
                // A collect result (Hessian sums: 1.4 GB per block of a 7B model) goes to a
                // file as it arrives, never whole in memory; the file becomes the durable result.
                // A reconstruct result (a 7B gate+up: ~180 MB of codes) likewise: it is checked
                // in place a linear at a time.
                var sink: SpoolFile?
                if let t = TaskID(wireName: r.taskID), t.isCollect || t.isReconstruct,
                    let job = w.holding(t)?.job ?? jobs[r.jobID]?.id
                {
                    sink = try files.spool(job: job)
                }
                try w.incoming.announce(h, by: message, nowMs: Self.nowMs(), sink: sink)
            } catch {
                let e = error as? ProtocolError ?? .invalidField(field: "task_result.outputs[0]", reason: "\(error)")
                log.warning("chunked result refused: \(e)", metadata: ["worker": "\(w.id)", "task": "\(r.taskID)"])
                transferFailed(w, r, e)
            }
            return
        }
        var ack = Kiln_V1_TaskResultAck()
        ack.taskID = r.taskID
        ack.attempt = r.attempt
        let accepted: Kiln_V1_TaskResultAck = {
            var a = ack
            a.accepted = true
            return a
        }()
        let log = self.log
        let workerName = w.id
        let nackBase = ack
        let reject: @Sendable (String, String) -> Void = { [weak self] why, field in
            log.warning("result rejected: \(why)", metadata: ["worker": "\(workerName)", "task": "\(r.taskID)"])
            var nack = nackBase
            nack.accepted = false
            nack.error = Kiln_V1_Error(.invalidField, field: field, why)
            self?.reply(routing, Message(.taskResultAck(nack)))
        }
        guard let t = TaskID(wireName: r.taskID) else {
            return reject("unknown task id '\(r.taskID)'", "task_result.task_id")
        }
        // The job is the one the worker was given; a result resent after a reconnect names it.
        let held = w.holding(t)
        let jobID = held?.job ?? r.jobID
        guard let run = jobs[jobID] else {
            return reject("no job '\(jobID)' for task \(r.taskID)", "task_result.job_id")
        }
        if held != nil {
            w.release(t)
            if run.running[t]?.worker == w.id {
                run.profile.finished(
                    t, by: w.id, heldAfter: w.held.count { $0.job == run.id }, computeMs: Int64(clamping: r.elapsedMs),
                    nowMs: Self.nowMs())
            }
        }
        if r.status == .deferred {
            guard let h = held, run.running[t]?.attempt == h.attempt else { return }  // stale
            if case .collect = t {
                // Done; its statistics come with a later collect of the block from this worker.
                w.deferred.append(h)
                return
            }
            // Only a collect can be deferred: its slot is free now, so the attempt ends and the
            // task goes again (else it would stay running on a worker that no longer holds it).
            requeue(run.id, t, attempt: h.attempt, outcome: "failed: deferred, which only a collect can be")
            run.failures[t, default: 0] += 1
            if run.failures[t]! >= config.maxAttempts {
                failJob(run, "\(t): \(w.id) keeps deferring it, which only a collect can be")
            }
            return
        }
        guard r.status == .ok else {
            taskFailed(run, t, worker: w, r)
            ack.accepted = true
            reply(routing, Message(.taskResultAck(ack)))
            return
        }
        if run.done.contains(t) || run.isTerminal {
            ack.accepted = true  // already durable (a duplicate or late result): nothing to do
            reply(routing, Message(.taskResultAck(ack)))
            if run.running[t]?.worker == w.id { run.running[t] = nil }
            // Collects it deferred into this result are not in the store: done again.
            if case .collect = t {
                for d in w.deferred where d.job == run.id && d.task.block == t.block {
                    requeue(run.id, d.task, attempt: d.attempt, outcome: "its sum arrived as a duplicate")
                }
                w.deferred.removeAll { $0.job == run.id && $0.task.block == t.block }
            }
            return
        }
        let payload: ResultPayload
        if let spooled, let h = r.outputs.first {
            payload = .file(
                spooled, bytes: Int(clamping: h.byteLength), checksum: UInt32(truncatingIfNeeded: h.checksum))
        } else {
            guard message.tensors.count == 1, message.tensors[0].header.dtype == .u8 else {
                return reject("a result carries exactly one U8 payload frame", "task_result.outputs")
            }
            payload = .memory(message.tensors[0].bytes)  // checksum verified by Message.decode
        }
        countReceived(t.kindName, payload.count)
        guard !run.accepting.contains(t) else { return }  // the same result is being made durable
        run.accepting.insert(t)
        makeDurable(
            payload, run: run, t, worker: w.id, attempt: Int(r.attempt), routing: routing, accepted: accepted,
            reject: reject)
    }

    /// A result's bytes: in memory, or (a chunked collect) in the file it arrived into, with
    /// the size and CRC-32C its chunks were checked against.
    enum ResultPayload: Sendable {
        case memory(Data)
        case file(SpoolFile, bytes: Int, checksum: UInt32)

        var count: Int {
            switch self {
            case .memory(let d): return d.count
            case .file(_, let bytes, _): return bytes
            }
        }
    }

    /// A worker reports a task failed: end the attempt, and fail the job once it is out of
    /// attempts (lost shard activations are no failure: the next assignment carries lineage).
    private func taskFailed(_ run: JobRun, _ t: TaskID, worker w: WorkerSession, _ r: Kiln_V1_TaskResult) {
        log.warning(
            "task failed", metadata: ["worker": "\(w.id)", "task": "\(r.taskID)", "error": "\(r.error.message)"])
        if run.running[t]?.attempt == Int(r.attempt) {
            run.running[t] = nil
            try? store.endAttempt(
                job: run.id, task: t, attempt: Int(r.attempt), outcome: "failed: \(r.error.message)",
                nowMs: Self.nowMs())
        }
        if r.error.code == .invalidField && r.error.field == "activations", let s = t.shard {
            run.shardOwner[s] = nil
        } else if r.error.code == .invalidField && r.error.field == "quantized" {
            w.quantizedBlocks.remove("\(run.id)/\(t.block)")  // sent again with the next attempt
        } else {
            run.failures[t, default: 0] += 1
            if r.status != .retryable || run.failures[t]! >= config.maxAttempts {
                failJob(run, "\(t) failed on \(w.id): \(r.error.message)")
            }
        }
    }

    /// Decodes and checks a result, then makes it durable (file fsynced, then recorded in one
    /// transaction) on the work queue, so the loop keeps heartbeats going; acknowledges on the loop.
    private func makeDurable(
        _ payload: ResultPayload, run: JobRun, _ t: TaskID, worker workerID: String, attempt: Int, routing: Data,
        accepted: Kiln_V1_TaskResultAck, reject: @escaping @Sendable (String, String) -> Void
    ) {
        let jobID = run.id
        let files = self.files
        let store = self.store
        // Collects carry one statistics per linear group; reconstructs are units (row slices).
        let groups = Tasks.groups.count
        let units = ReconstructUnits(spec: run.spec)
        let shards = run.graph.shards
        let sequential = run.spec.mode == .sequential
        work.async { [weak self] in
            let outcome = Result { () -> (error: Double, linears: [String: Double], covered: [TaskID]) in
                // A result in a file is checked in place: a collect's Hessians are never loaded,
                // a reconstruct's linears are decoded one at a time.
                var reconstructed: (linears: [QuantizedLinear], errors: [String: Double], error: Double)?
                let covered: [TaskID]
                switch payload {
                case .memory(let data):
                    let o = try TaskPayload.decodeOutput(data)
                    guard o.taskID == t else { throw CoordinatorError("payload is for \(o.taskID), not \(t)") }
                    try Coordinator.validate(o, groups: groups, shards: shards, units: units)
                    if case let .reconstruct(rr) = o {
                        reconstructed = (
                            rr.linears, Coordinator.linearErrors(rr.linears), rr.linears.map(\.relativeError).max() ?? 0
                        )
                    }
                    covered = o.coveredTasks
                case .file(let file, _, _) where t.isReconstruct:
                    reconstructed = try Coordinator.checkReconstruct(file, t, units: units, keep: sequential)
                    covered = [t]
                case .file(let file, _, _):
                    let c = try CollectFile(file)
                    guard c.taskID == t else { throw CoordinatorError("payload is for \(c.taskID), not \(t)") }
                    try Coordinator.validate(c, groups: groups, shards: shards)
                    covered = c.coveredTasks
                }
                if covered.count > 1 {
                    // A sum of several shards counts each once: none may be durable already. (The
                    // work queue makes every result durable, so the store is current here.)
                    let recorded = Set(try store.results(job: jobID).map(\.task))
                    if let dup = covered.first(where: recorded.contains) {
                        throw CoordinatorError("the result sums \(dup), which another result already holds")
                    }
                }
                // Durable before acknowledged: file fsynced, then recorded in one transaction.
                let url: URL
                let sum: UInt32
                let durableStart = DispatchTime.now().uptimeNanoseconds
                switch payload {
                case .memory(let data): (url, sum) = try files.write(data, job: jobID, task: t)
                case let .file(file, _, checksum): (url, sum) = (try files.adopt(file, job: jobID, task: t), checksum)
                }
                self?.metrics.time(
                    "kiln_result_fsync_seconds", [("kind", t.kindName)],
                    seconds: Double(DispatchTime.now().uptimeNanoseconds - durableStart) / 1e9)
                try store.recordResult(
                    job: jobID,
                    StoredResult(task: t, path: url.path, checksum: sum, bytes: payload.count, worker: workerID),
                    covering: covered, attempt: attempt, nowMs: Coordinator.nowMs())
                guard let reconstructed else { return (0, [:], covered) }
                // Kept decoded for the block's propagate inputs (work queue: it owns the caches);
                // parallel mode has none (a 7B block's linears are ~250 MB decoded).
                if sequential { self?.reconstructedCache[jobID, default: [:]][t] = reconstructed.linears }
                return (reconstructed.error, reconstructed.errors, covered)
            }
            self?.post { [weak self] in
                guard let self, let run = self.jobs[jobID] else { return }
                run.accepting.remove(t)
                let live = self.workers[routing]
                switch outcome {
                case .failure(let e):
                    reject("\(e)", "frames[1]")
                    if run.running[t]?.attempt == attempt {
                        self.requeue(jobID, t, attempt: attempt, outcome: "rejected")
                    }
                    // Collects it deferred into the refused sum are to be done again.
                    for d in live?.deferred ?? [] where d.job == jobID && d.task.block == t.block {
                        self.requeue(jobID, d.task, attempt: d.attempt, outcome: "its sum was rejected")
                    }
                    live?.deferred.removeAll { $0.job == jobID && $0.task.block == t.block }
                case .success(let (err, linearErrors, covered)):
                    self.reply(routing, Message(.taskResultAck(accepted)))
                    live?.deferred.removeAll { d in d.job == jobID && covered.contains(d.task) }
                    for c in covered where !run.done.contains(c) {
                        live?.tasksDone += 1
                        if let s = c.shard, !run.isTerminal { run.shardOwner[s] = workerID }
                        self.completed(run, c, worker: workerID, error: err, linearErrors: linearErrors)
                    }
                }
            }
        }
    }

    /// A tensor_chunk from a worker.
    func onChunk(_ routing: Data, _ m: Message) {
        guard let w = workers[routing] else { return }
        countChunks(received: 1)
        onChunkEvent(w, w.incoming.accept(m, nowMs: Self.nowMs()))
    }

    /// What a chunk did: credit back, a complete result (handled as if it came whole),
    /// or a failed transfer: aborted, the result refused and its task retried.
    func onChunkEvent(_ w: WorkerSession, _ e: IncomingTransfers.Event) {
        switch e {
        case .progress(let credit):
            if let c = credit { reply(w.routing, Message(.credit(c))) }
        case let .complete(message, credit):
            reply(w.routing, Message(.credit(credit)))
            if case .taskResult(let r)? = message.body { onResult(w.routing, r, message) }
        case let .spooled(message, file, credit):
            reply(w.routing, Message(.credit(credit)))
            if case .taskResult(let r)? = message.body { onResult(w.routing, r, message, spooled: file) }
        case let .failed(announcement, error, credit):
            if announcement != nil { countChunks(failed: 1) }
            log.warning("chunk rejected: \(error)", metadata: ["worker": "\(w.id)", "field": "\(error.field)"])
            if let c = credit { reply(w.routing, Message(.credit(c))) }
            if case .taskResult(let r)? = announcement?.body { transferFailed(w, r, error) }
        }
    }

    /// A chunked result that cannot be completed: refused (the worker forgets it) and
    /// its task retried (counted as a failed attempt, so a worker that keeps sending
    /// damaged chunks cannot stall the job forever).
    func transferFailed(_ w: WorkerSession, _ r: Kiln_V1_TaskResult, _ e: ProtocolError) {
        var nack = Kiln_V1_TaskResultAck()
        nack.taskID = r.taskID
        nack.attempt = r.attempt
        nack.accepted = false
        nack.error = e.wireError
        reply(w.routing, Message(.taskResultAck(nack)))
        guard let t = TaskID(wireName: r.taskID), let cur = w.holding(t), cur.attempt == Int(r.attempt),
            let run = jobs[cur.job]
        else { return }
        w.release(t)
        requeue(cur.job, t, attempt: cur.attempt, outcome: "result transfer failed: \(e)")
        run.failures[t, default: 0] += 1
        if run.failures[t]! >= config.maxAttempts {
            failJob(run, "\(t): result transfers from \(w.id) keep failing: \(e)")
        }
    }

    /// Credit from a worker for one of our chunked transfers (task inputs).
    func onCredit(_ routing: Data, _ c: Kiln_V1_Credit) {
        guard let w = workers[routing] else { return }
        let (chunks, aborted, context) = w.outgoing.apply(c)
        if let e = aborted {
            // The worker reports the task as failed (retryable) itself.
            log.warning(
                "worker aborted transfer \(c.transferID): \(e.message)",
                metadata: ["worker": "\(w.id)", "task": "\(context)"])
        }
        var n = 0
        for m in chunks { n += reply(routing, m) }
        if !chunks.isEmpty {
            countChunks(sent: chunks.count)
            countSent(TaskID(wireName: context)?.kindName ?? "chunk", n)
            w.lastSentMs = Self.nowMs()
        }
    }

    /// Checks a collect result read in place, as `validate` checks a decoded one.
    static func validate(_ c: CollectFile, groups: Int, shards: Int) throws {
        guard c.groups.count == groups else {
            throw CoordinatorError("collect result has \(c.groups.count) groups, expected \(groups)")
        }
        guard let last = c.shards.last, last < shards else {
            throw CoordinatorError("collect result sums shards \(c.shards); the job has \(shards)")
        }
    }

    /// A reconstruct result in a file, checked as `validate` checks a decoded one, one linear
    /// decoded at a time; returns the linears when `keep` (else none) and their largest
    /// relative error.
    public static func checkReconstruct(
        _ file: SpoolFile, _ t: TaskID, units: ReconstructUnits, keep: Bool
    ) throws -> (linears: [QuantizedLinear], errors: [String: Double], error: Double) {
        let f = try ReconstructFile(file)
        guard f.taskID == t else { throw CoordinatorError("payload is for \(f.taskID), not \(t)") }
        guard f.group < units.count, f.tensors.count == units.linears(f.group).count else {
            throw CoordinatorError("reconstruct result holds \(f.tensors.count) linears, not unit \(f.group)'s")
        }
        var kept: [QuantizedLinear] = []
        var errors: [String: Double] = [:]
        var error = 0.0
        for i in f.tensors.indices {
            let l = try f.linear(i)
            try validate(
                .reconstruct(ReconstructResult(block: f.block, group: f.group, linears: [l])), linear: i, units: units)
            error = max(error, l.relativeError)
            errors.merge(linearErrors([l])) { max($0, $1) }
            if keep { kept.append(l) }
        }
        return (kept, errors, error)
    }

    /// Each linear's relative output error by linear name (row slices: the largest), finite only.
    public static func linearErrors(_ linears: [QuantizedLinear]) -> [String: Double] {
        var out: [String: Double] = [:]
        for l in linears where l.relativeError.isFinite { out[l.linear] = max(out[l.linear] ?? 0, l.relativeError) }
        return out
    }

    /// Checks a decoded result against what the job expects before accepting it.
    static func validate(_ o: ClusterTaskOutput, groups: Int, shards: Int, units: ReconstructUnits) throws {
        switch o {
        case let .collect(c):
            guard c.statistics.count == groups else {
                throw CoordinatorError("collect result has \(c.statistics.count) groups, expected \(groups)")
            }
            guard let last = c.shards.last, last < shards else {
                throw CoordinatorError("collect result sums shards \(c.shards); the job has \(shards)")
            }
        case let .reconstruct(r):
            guard r.group < units.count, r.linears.map(\.linear) == units.linears(r.group) else {
                throw CoordinatorError(
                    "reconstruct result linears \(r.linears.map(\.linear)) do not match unit \(r.group)")
            }
            try validate(r.linears)
        case .propagate, .merge:
            break
        }
    }

    /// Linear `i` of a reconstruct result (`o` holds it alone), checked as `validate` checks them all.
    static func validate(_ o: ClusterTaskOutput, linear i: Int, units: ReconstructUnits) throws {
        guard case let .reconstruct(r) = o, let l = r.linears.first else { return }
        let names = r.group < units.count ? units.linears(r.group) : []
        guard i < names.count, l.linear == names[i] else {
            throw CoordinatorError("reconstruct result linear \(i) '\(l.linear)' does not match unit \(r.group)")
        }
        try validate(r.linears)
    }

    /// Codes, parameters and group index sized as the shape says.
    static func validate(_ linears: [QuantizedLinear]) throws {
        for l in linears {
            let w = l.weight
            guard w.codes.count == w.rows * w.columns, w.parameters.count == w.rows * w.groupCount,
                w.groupIndex.count == w.columns
            else {
                throw CoordinatorError(
                    "\(l.tensor): codes/parameters/group index sizes disagree with \(w.rows)x\(w.columns)")
            }
        }
    }
}
