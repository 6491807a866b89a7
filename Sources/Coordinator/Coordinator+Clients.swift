import Cluster
import Foundation
import Jobs
import KilnProtocol
import Logging
import ModelIO
import Synchronization
import ZeroMQ

// Client requests on the ROUTER (a client connects a DEALER): submit, status, cancel,
// workers, snapshot, report. Progress goes out on the PUB socket with the job id as topic;
// a watcher subscribes, then asks for a snapshot, then applies updates with a
// greater sequence (the Clone pattern).

extension Coordinator {
    func errorReply(_ routing: Data, _ code: Kiln_V1_ErrorCode, field: String, _ message: String, correlation: String) {
        reply(routing, Message(.error(Kiln_V1_Error(code, field: field, message)), correlationID: correlation))
    }

    /// Validation reads files (the model's header and tokenizer, the inputs): it runs on the
    /// validation queue so that a slow disk or a large model does not hold up heartbeats and
    /// results, and the job is admitted back on the loop.
    func onSubmit(_ routing: Data, _ r: Kiln_V1_SubmitRequest, _ cid: String) {
        if replyKnownToken(routing, r.clientToken, cid) { return }
        let spec: JobSpec
        do { spec = try SpecConversion.fromProto(r.spec) } catch { return rejectSubmit(routing, error, cid) }
        let token = r.clientToken
        validation.async { [self] in
            let checked = Result { try validateJob(spec) }
            post { [self] in
                // A submit with the same token may have been admitted while this one validated.
                if replyKnownToken(routing, token, cid) { return }
                do {
                    let run = try submit(checked.get(), clientToken: token)
                    var resp = Kiln_V1_SubmitResponse()
                    resp.jobID = run.id
                    resp.status = status(run)
                    reply(routing, Message(.submitResponse(resp), correlationID: cid))
                } catch {
                    rejectSubmit(routing, error, cid)
                }
            }
        }
    }

    /// Answers a submit whose client token names a job already admitted (idempotency).
    private func replyKnownToken(_ routing: Data, _ token: String, _ cid: String) -> Bool {
        guard !token.isEmpty, let existing = clientTokens[token], let run = jobs[existing] else { return false }
        var resp = Kiln_V1_SubmitResponse()
        resp.jobID = existing
        resp.status = status(run)
        reply(routing, Message(.submitResponse(resp), correlationID: cid))
        return true
    }

    private func rejectSubmit(_ routing: Data, _ error: any Error, _ cid: String) {
        log.warning("submit rejected: \(error)")
        errorReply(routing, .invalidField, field: "submit_request.spec", "\(error)", correlation: cid)
    }

    /// A job checked for admission: options, paths, files, the model's header and
    /// tokenizer (no tensor is read). Any thread: it reads only the immutable `config`.
    func validateJob(_ spec: JobSpec) throws -> ValidatedJob {
        ValidatedJob(spec: spec, model: try spec.validate(limits: config.jobLimits))
    }

    /// Admits a validated job on the loop: checks the disk budget against the jobs already
    /// admitted, plans its task graph, stores it and queues it.
    func submit(_ job: ValidatedJob, clientToken: String = "") throws -> JobRun {
        let spec = job.spec
        let blocks = job.model.config.layerCount
        try checkDiskSpace(spec, view: job.model)
        let now = Self.nowMs()
        let id = "job-" + String(UInt64(now), radix: 36) + "-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let run = JobRun(id: id, spec: spec, blocks: blocks, state: .queued, submittedMs: now)
        try store.insertJob(
            StoredJob(
                id: id, spec: spec, state: "queued", error: "", clientToken: clientToken,
                submittedMs: now, finishedMs: 0), tasks: run.graph.tasks)
        jobs[id] = run
        jobOrder.append(id)
        if !clientToken.isEmpty { clientTokens[clientToken] = id }
        log.info(
            "job submitted",
            metadata: [
                "job": "\(id)", "blocks": "\(blocks)", "shards": "\(run.graph.shards)",
                "tasks": "\(run.graph.tasks.count)", "mode": "\(spec.mode.rawValue)",
            ])
        publishState(run)
        return run
    }

    /// Submits from any thread (the embedded `kiln run`): validates on the caller's thread,
    /// then admits on the loop, which must be running.
    public func submitJob(_ spec: JobSpec) throws -> String {
        let job = try validateJob(spec)
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<String, any Error>>(.failure(CoordinatorError("coordinator stopped")))
        post { [self] in
            let r = Result { try self.submit(job).id }
            outcome.withLock { $0 = r }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0 }.get()
    }

    /// A job's state, read on the loop thread: (state, error).
    /// Evaluation results measured outside the coordinator (it never loads the weights):
    /// `kiln run` evaluates before and after, and the job's status (the dashboard) shows them.
    /// Finite values only; published as a state update.
    public func recordEvaluation(job id: String, _ results: [String: Double]) {
        let finite = results.filter { $0.value.isFinite }
        onLoop { [self] in
            guard let run = self.jobs[id], !finite.isEmpty else { return }
            run.evalResults.merge(finite) { $1 }
            self.publishState(run)
        }
    }

    /// The sequence number of the last progress update published.
    public func publishedSequence() -> UInt64 {
        let out = Mutex<UInt64>(0)
        onLoop { [self] in out.withLock { $0 = self.sequence } }
        return out.withLock { $0 }
    }

    /// Runs f on the loop and waits for it (returns at once if the loop has stopped).
    private func onLoop(_ f: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphore(value: 0)
        post {
            f()
            done.signal()
        }
        _ = done.wait(timeout: .now() + 10)
    }

    public func jobState(_ id: String) -> (state: Kiln_V1_JobState, error: String)? {
        let done = DispatchSemaphore(value: 0)
        let out = Mutex<(Kiln_V1_JobState, String)?>(nil)
        post { [self] in
            if let r = self.jobs[id] { out.withLock { $0 = (r.state, r.error) } }
            done.signal()
        }
        done.wait()
        return out.withLock { $0 }
    }

    func onStatus(_ routing: Data, _ r: Kiln_V1_StatusRequest, _ cid: String) {
        guard let run = jobs[r.jobID] else {
            return errorReply(
                routing, .unknownJob, field: "status_request.job_id", "no job '\(r.jobID)'", correlation: cid)
        }
        var resp = Kiln_V1_StatusResponse()
        resp.status = status(run)
        reply(routing, Message(.statusResponse(resp), correlationID: cid))
    }

    func onCancel(_ routing: Data, _ r: Kiln_V1_CancelRequest, _ cid: String) {
        guard let run = jobs[r.jobID] else {
            return errorReply(
                routing, .unknownJob, field: "cancel_request.job_id", "no job '\(r.jobID)'", correlation: cid)
        }
        if !run.isTerminal && !run.writing {
            run.state = .cancelled
            run.error = r.reason.isEmpty ? "cancelled" : "cancelled: \(r.reason)"
            run.finishedMs = Self.nowMs()
            try? store.setJobState(run.id, state: "cancelled", error: run.error, finishedMs: run.finishedMs)
            cancelRunning(run, reason: run.error)
            publishState(run)
            log.info("job cancelled", metadata: ["job": "\(run.id)"])
        }
        var resp = Kiln_V1_CancelResponse()
        resp.jobID = run.id
        resp.state = run.state
        reply(routing, Message(.cancelResponse(resp), correlationID: cid))
    }

    func onListWorkers(_ routing: Data, _ cid: String) {
        var resp = Kiln_V1_ListWorkersResponse()
        let live = workers.values.sorted { ($0.connectedMs, $0.id) < ($1.connectedMs, $1.id) }
        let lost = lostWorkers.values.sorted { $0.id < $1.id }
        for w in live + lost {
            var i = Kiln_V1_WorkerInfo()
            i.workerID = w.id
            i.capacity = w.capacity
            i.state = w.lost ? .lost : (w.held.isEmpty ? .idle : .busy)
            i.runningTaskIds = w.held.map(\.task.wireName)
            i.connectedUnixMs = w.connectedMs
            i.lastHeartbeatUnixMs = w.lastSeenMs
            i.tasksDone = w.tasksDone
            i.hostname = w.hostname
            resp.workers.append(i)
        }
        reply(routing, Message(.listWorkersResponse(resp), correlationID: cid))
    }

    func onSnapshot(_ routing: Data, _ r: Kiln_V1_SnapshotRequest, _ cid: String) {
        var resp = Kiln_V1_SnapshotResponse()
        resp.sequence = sequence
        if r.jobID.isEmpty {
            resp.jobs = jobOrder.compactMap { jobs[$0] }.map(status)
        } else if let run = jobs[r.jobID] {
            resp.jobs = [status(run)]
        } else {
            return errorReply(
                routing, .unknownJob, field: "snapshot_request.job_id", "no job '\(r.jobID)'", correlation: cid)
        }
        reply(routing, Message(.snapshotResponse(resp), correlationID: cid))
    }

    func onReport(_ routing: Data, _ r: Kiln_V1_ReportRequest, _ cid: String) {
        guard let run = jobs[r.jobID] else {
            return errorReply(
                routing, .unknownJob, field: "report_request.job_id", "no job '\(r.jobID)'", correlation: cid)
        }
        guard let report = run.report, let json = try? report.jsonData() else {
            let why =
                run.state != .succeeded
                ? "it has not succeeded"
                : run.spec.measureTypes
                    ? "this coordinator started after it ended (reports are kept in memory)"
                    : "the coordinator keeps the reports of sensitivity jobs (measure_types) only"
            return errorReply(
                routing, .invalidField, field: "report_request.job_id", "job '\(r.jobID)' has no report: \(why)",
                correlation: cid)
        }
        var resp = Kiln_V1_ReportResponse()
        resp.jobID = run.id
        resp.reportJson = String(decoding: json, as: UTF8.self)
        reply(routing, Message(.reportResponse(resp), correlationID: cid))
    }

    /// The whole state of a job: one ModuleProgress per (block, phase).
    func status(_ run: JobRun) -> Kiln_V1_JobStatus {
        var s = Kiln_V1_JobStatus()
        s.jobID = run.id
        s.state = run.state
        s.spec = (try? SpecConversion.toProto(run.spec)) ?? Kiln_V1_JobSpec()
        s.blocksTotal = UInt32(run.graph.blocks)
        s.blocksDone = UInt32(run.blocksDone)
        s.submittedUnixMs = run.submittedMs
        s.elapsedMs = UInt64(max(0, (run.finishedMs > 0 ? run.finishedMs : Self.nowMs()) - run.submittedMs))
        if !run.error.isEmpty {
            s.error = Kiln_V1_Error(run.state == .cancelled ? .cancelled : .taskFailed, run.error)
        }
        s.evalResults = run.evalResults
        let now = Self.nowMs()
        for b in 0..<run.graph.blocks {
            for ph in [Kiln_V1_Phase.collect, .merge, .reconstruct, .propagate] {
                guard let p = run.phases[b]?[ph] else { continue }
                var m = Kiln_V1_ModuleProgress()
                m.block = UInt32(b)
                m.phase = ph
                m.done = UInt32(p.done)
                m.total = UInt32(p.total)
                m.workerID = p.worker
                m.error = p.error
                m.linearErrors = p.linearErrors
                m.startedUnixMs = p.startedMs
                if p.startedMs > 0 {
                    m.elapsedMs = UInt64(max(0, (p.finishedMs > 0 ? p.finishedMs : now) - p.startedMs))
                }
                s.modules.append(m)
            }
        }
        return s
    }

    /// Publishes one update (topic = job id) and counts it in the global sequence.
    func publish(_ run: JobRun, module: Kiln_V1_ModuleProgress? = nil, full: Bool = false) {
        sequence += 1
        var u = Kiln_V1_ProgressUpdate()
        u.sequence = sequence
        u.jobID = run.id
        u.state = run.state
        if let module { u.module = module }
        if full { u.status = status(run) }
        do {
            _ = try pub.send(
                Message(.progressUpdate(u)), prefix: [Data(run.id.utf8)], dontWait: true, limits: config.limits)
        } catch {
            log.warning("progress publish failed: \(error)")
        }
    }

    func publishState(_ run: JobRun) {
        publish(run, full: true)
        recordStateMetrics()  // a job's phase is current at once, not at the next second
    }
}

/// A job that passed validation off the loop, with its opened model (header only).
struct ValidatedJob: Sendable {
    let spec: JobSpec
    let model: any ModelView
}
