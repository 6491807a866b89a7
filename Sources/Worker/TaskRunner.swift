import Cluster
import Foundation
import Jobs
import KilnProtocol
import Synchronization

/// Runs tasks on its lanes, one thread each (big stack, one BLAS thread inside), keeping
/// each job's context (model view, calibration windows) and shard activations between
/// tasks. Only the latest job's state is kept. Tasks are pure functions of the job and
/// their inputs, so the number of lanes never changes a result's bytes.
// @unchecked: the queue is guarded by `cond`, the current job by `jobLock`.
final class TaskRunner: @unchecked Sendable {
    final class Job: Sendable {
        let id: String
        let context: JobContext
        let store: InMemoryActivationStore

        init(id: String, context: JobContext, store: InMemoryActivationStore) {
            self.id = id
            self.context = context
            self.store = store
        }

        /// The quantized linears of the latest blocks propagated here: the coordinator sends
        /// a block's once per worker, not with every shard's propagate.
        let quantized = Mutex<[Int: [QuantizedLinear]]>([:])

        /// The propagate input's quantized block, or the one kept from an earlier propagate.
        func quantizedBlock(_ b: Int, sent: [QuantizedLinear]?) throws -> [QuantizedLinear] {
            try quantized.withLock { kept in
                if let sent {
                    kept[b] = sent
                    kept = kept.filter { $0.key >= b - 1 }  // this block and the one before
                    return sent
                }
                guard let q = kept[b] else { throw MissingQuantizedBlock(block: b) }
                return q
            }
        }
    }

    private let cond = NSCondition()
    /// A task's input as it arrived: in memory, or (a large chunked input) in a file.
    enum Input: Sendable {
        case data(Data)
        case file(SpoolFile)
    }
    private var queue: [(Kiln_V1_TaskAssignment, Input)] = []
    private var stopping = false
    private var current: Job?
    private let jobLock = NSLock()
    /// Collect results held back to travel merged (under `cond`).
    private var collects = PendingCollects()
    private let emit: (Outgoing) -> Void
    /// A new spool file for a result encoded to disk (the worker's spool directory).
    private let spool: () throws -> SpoolFile
    /// The chunk size of the worker's transfers now: a spooled result's chunk checksums
    /// are computed for it as the result is written.
    let chunkSize = Atomic<Int>(8 << 20)
    private let log: (String) -> Void
    private let info: (String) -> Void
    private let models: ModelSource
    private let fetchLock = NSLock()
    private var _modelFetches = 0
    var modelFetches: Int { fetchLock.withLock { _modelFetches } }

    init(
        lanes: Int, emit: @escaping (Outgoing) -> Void, spool: @escaping () throws -> SpoolFile,
        log: @escaping (String) -> Void, info: @escaping (String) -> Void, models: ModelSource
    ) {
        self.emit = emit
        self.spool = spool
        self.log = log
        self.info = info
        self.models = models
        models.send = { emit(Outgoing($0)) }
        for lane in 1...max(1, lanes) {
            let t = Thread { [self] in self.loop() }
            t.name = "kiln.worker.lane\(lane)"
            t.stackSize = 16 << 20
            t.start()
        }
    }

    /// Tasks waiting for a lane.
    var queued: Int { cond.withLock { queue.count } }

    func submit(_ a: Kiln_V1_TaskAssignment, input: Input) {
        cond.lock()
        queue.append((a, input))
        if let key = Self.collectKey(a) { collects.expected[key, default: 0] += 1 }
        cond.signal()
        cond.unlock()
    }

    func stop() {
        cond.lock()
        stopping = true
        cond.broadcast()
        cond.unlock()
    }

    private func loop() {
        while true {
            cond.lock()
            while queue.isEmpty && !stopping { cond.wait() }
            if stopping {
                cond.unlock()
                return
            }
            let (a, input) = queue.removeFirst()
            cond.unlock()
            // Handed over, so the bytes go as soon as they are decoded.
            for m in execute(a, input: consume input) { emit(m) }
        }
    }

    /// The job's context, opened by the first lane that needs it (the others wait for it).
    private func context(for a: Kiln_V1_TaskAssignment) throws -> Job {
        try jobLock.withLock { try openContext(for: a) }
    }

    private func openContext(for a: Kiln_V1_TaskAssignment) throws -> Job {
        if let c = current, c.id == a.jobID { return c }
        current = nil  // free the previous job's activations first
        models.forget(exceptJob: a.jobID)
        var spec: JobSpec
        do { spec = try JSONDecoder().decode(JobSpec.self, from: Data(a.jobSpecJson.utf8)) } catch {
            throw JobError("task_assignment.job_spec_json: not a Kiln JobSpec: \(error)")
        }
        // The model from the file system when this host sees the coordinator's file,
        // otherwise fetched in ranges from the coordinator into the local cache.
        let local = try models.path(job: a.jobID, spec: spec.model, location: a.model, log: info)
        if local != spec.model {
            fetchLock.withLock { _modelFetches += 1 }
            spec.model = local
        }
        let j = Job(
            id: a.jobID, context: try JobContext.open(spec, outputHead: false), store: InMemoryActivationStore())
        current = j
        return j
    }

    /// A failed result for an assignment that never ran (its input did not arrive intact).
    static func failure(
        _ a: Kiln_V1_TaskAssignment, _ status: Kiln_V1_TaskStatus, _ code: Kiln_V1_ErrorCode,
        field: String, _ msg: String
    ) -> Message {
        var r = result(for: a)
        r.status = status
        r.error = Kiln_V1_Error(code, field: field, msg)
        return Message(.taskResult(r))
    }

    /// A result naming its assignment (task, attempt, job), to be filled in.
    static func result(for a: Kiln_V1_TaskAssignment) -> Kiln_V1_TaskResult {
        var r = Kiln_V1_TaskResult()
        r.taskID = a.taskID
        r.attempt = a.attempt
        r.jobID = a.jobID
        return r
    }

    /// One task: Jobs' task function through ClusterExecution, result encoded with its
    /// checksum. A collect's result may be held back (a deferred answer now) to travel
    /// merged with the next collect of the same block queued here.
    private func execute(_ a: Kiln_V1_TaskAssignment, input: consuming Input) -> [Outgoing] {
        let t0 = DispatchTime.now()
        func elapsedMs() -> UInt64 { UInt64((DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1_000_000) }
        func fail(_ status: Kiln_V1_TaskStatus, _ code: Kiln_V1_ErrorCode, field: String, _ msg: String) -> [Outgoing] {
            log("task \(a.taskID) failed: \(msg)")
            var r = Self.result(for: a)
            r.status = status
            r.error = Kiln_V1_Error(code, field: field, msg)
            r.elapsedMs = elapsedMs()
            // Collects held back for this block go now, carried by the last of them.
            let held = Self.collectKey(a).flatMap { key in cond.withLock { collects.finished(key) } }
            return (held.map { [encoded($0.carrier, .collect($0.result), elapsedMs: 0)] } ?? []) + [
                Outgoing(Message(.taskResult(r)))
            ]
        }
        guard let task = TaskID(wireName: a.taskID) else {
            return fail(.failed, .invalidField, field: "task_assignment.task_id", "unknown task id '\(a.taskID)'")
        }
        do {
            let job = try context(for: a)
            var taskInput: ClusterTaskInput
            switch consume input {
            case .data(let d): taskInput = try TaskPayload.decodeInput(d)
            case .file(let f): taskInput = try TaskPayload.decodeInput(file: f)
            }
            if case let .propagate(b, _) = task {
                taskInput.quantized = try job.quantizedBlock(b, sent: taskInput.quantized)
            }
            let output = try ClusterExecution.run(job.context, store: job.store, task: task, taking: &taskInput) {
                done, total, stage in
                var p = Kiln_V1_TaskProgress()
                p.taskID = a.taskID
                p.attempt = a.attempt
                p.done = UInt32(done)
                p.total = UInt32(total)
                p.stage = stage
                self.emit(Outgoing(Message(.taskProgress(p))))
            }
            guard case let .collect(c) = output, let key = Self.collectKey(a) else {
                return [encoded(a, output, elapsedMs: elapsedMs())]
            }
            switch cond.withLock({ collects.finished(key, c, carrier: a) }) {
            case .deferred:
                var r = Self.result(for: a)
                r.status = .deferred
                r.elapsedMs = elapsedMs()
                return [Outgoing(Message(.taskResult(r)))]
            case let .send(results):
                return results.map { encoded($0.carrier, .collect($0.result), elapsedMs: elapsedMs()) }
            }
        } catch let e as MissingActivations {
            return fail(.retryable, .invalidField, field: "activations", e.description)
        } catch let e as MissingQuantizedBlock {
            return fail(.retryable, .invalidField, field: "quantized", e.description)
        } catch let e as ModelFetchError {
            return fail(.retryable, .modelUnreadable, field: "model_path", e.description)
        } catch {
            return fail(.failed, .taskFailed, field: "", "\(error)")
        }
    }

    /// The result message of `a` carrying `output`: a collect's or a reconstruct's encoded
    /// into a spool file (Hessians, codes: the bulk of a worker's memory, not copied), others
    /// in memory.
    private func encoded(_ a: Kiln_V1_TaskAssignment, _ output: ClusterTaskOutput, elapsedMs: UInt64) -> Outgoing {
        var r = Self.result(for: a)
        if output.isBulky {
            do {
                var w = SpoolWriter(try spool(), chunkSize: chunkSize.load(ordering: .relaxed))
                try TaskPayload.write(output, to: &w)
                let sums = try w.finish()
                r.status = .ok
                r.elapsedMs = elapsedMs
                r.metrics = ["bytes": Double(w.count)]
                return Outgoing(
                    Message(.taskResult(r)),
                    payload: ResultFile(file: w.file, size: w.count, chunkSize: w.chunkSize, checksums: sums))
            } catch {
                log("task \(a.taskID): cannot spool its result (\(error)); encoding it in memory")
            }
        }
        do {
            let payload = try TaskPayload.encode(output)
            let frame = try TensorFrame(name: "result", dtype: .u8, shape: [payload.count], bytes: payload)
            r.status = .ok
            r.outputs = [frame.header]
            r.elapsedMs = elapsedMs
            r.metrics = ["bytes": Double(payload.count)]
            return Outgoing(Message(.taskResult(r), tensors: [frame]))
        } catch {
            log("task \(a.taskID) failed: cannot encode its result: \(error)")
            r.status = .failed
            r.error = Kiln_V1_Error(.taskFailed, field: "", "cannot encode the result: \(error)")
            return Outgoing(Message(.taskResult(r)))
        }
    }

    /// "job/block" of a collect assignment; nil for other kinds.
    static func collectKey(_ a: Kiln_V1_TaskAssignment) -> String? {
        a.kind == .collect ? "\(a.jobID)/\(a.block)" : nil
    }
}

/// What a lane hands the worker's loop: a message, and for a result encoded to disk its
/// payload's file (sent from there in chunks, kept until the coordinator acknowledges it).
struct Outgoing: Sendable {
    var message: Message
    var payload: ResultFile?

    init(_ message: Message, payload: ResultFile? = nil) {
        self.message = message
        self.payload = payload
    }
}

/// A task result's encoded payload in a spool file (removed when the last reference goes).
struct ResultFile: Sendable {
    let file: SpoolFile
    let size: Int
    /// The chunk size `checksums` were computed for.
    let chunkSize: Int
    let checksums: [UInt32]
}

extension ClusterTaskOutput {
    /// Results that carry Hessians or codes (hundreds of MB for a 7B block).
    var isBulky: Bool {
        switch self {
        case .collect, .reconstruct: return true
        case .merge, .propagate: return false
        }
    }
}
