import Foundation
import KilnProtocol
import ZeroMQ

/// A stand-in coordinator on loopback for socket tests: a ROUTER answering
/// client requests and a PUB publishing a scripted job, on its own thread.
final class FakeCoordinator: @unchecked Sendable {
    let endpoint: String
    let publishEndpoint: String
    private let router: ZMQSocket
    private let pub: ZMQSocket
    private let lock = NSLock()
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    /// The job's state as the coordinator knows it, and the last sequence published.
    private var job: Kiln_V1_JobStatus
    private var sequence: UInt64 = 0
    /// Updates still to publish, one every `stepMs` once a snapshot was asked for.
    private var script: [(state: Kiln_V1_JobState, module: Kiln_V1_ModuleProgress?)]
    let stepMs: Int
    /// Requests answered twice: first with a stale correlation id, then properly.
    var sendStaleReplyFirst = false
    /// Snapshot requests seen.
    private(set) var snapshotRequests = 0
    /// Update sequence numbers published but dropped on purpose (a lossy feed).
    var dropSequences: Set<UInt64> = []

    init(job: Kiln_V1_JobStatus, script: [(Kiln_V1_JobState, Kiln_V1_ModuleProgress?)], stepMs: Int = 20) throws {
        router = try ZMQContext.shared.socket(.router)
        pub = try ZMQContext.shared.socket(.pub)
        try router.bind("tcp://127.0.0.1:*")
        try pub.bind("tcp://127.0.0.1:*")
        endpoint = try router.lastEndpoint
        publishEndpoint = try pub.lastEndpoint
        self.job = job
        self.script = script.map { (state: $0.0, module: $0.1) }
        self.stepMs = stepMs
    }

    func start() {
        let thread = Thread { [self] in
            loop()
            done.signal()
        }
        thread.start()
    }

    func stop() {
        lock.withLock { stopped = true }
        done.wait()
        router.close()
        pub.close()
    }

    var snapshotCount: Int { lock.withLock { snapshotRequests } }

    private func loop() {
        var started = false
        var nextStep = DispatchTime.now()
        while !lock.withLock({ stopped }) {
            if let (prefix, message) = try? router.receiveMessage(prefixCount: 1, timeout: 5) {
                if case .snapshotRequest = message.body { started = true }
                answer(message, to: prefix)
            }
            if started, !script.isEmpty, DispatchTime.now() >= nextStep {
                publishNext()
                nextStep = DispatchTime.now() + .milliseconds(stepMs)
            }
        }
    }

    private func publishNext() {
        let step = script.removeFirst()
        sequence += 1
        job.state = step.state
        if let m = step.module {
            if let i = job.modules.firstIndex(where: {
                $0.block == m.block && $0.phase == m.phase && $0.module == m.module
            }) {
                job.modules[i] = m
            } else {
                job.modules.append(m)
            }
        }
        var u = Kiln_V1_ProgressUpdate()
        u.sequence = sequence
        u.jobID = job.jobID
        u.state = step.state
        if let m = step.module { u.module = m }
        if step.state.isTerminal { u.status = job }
        guard !dropSequences.contains(sequence) else { return }
        _ = try? pub.send(Message(.progressUpdate(u)), prefix: [Data(job.jobID.utf8)])
    }

    private func answer(_ request: Message, to prefix: [Data]) {
        let body: Kiln_V1_Envelope.OneOf_Body
        switch request.body {
        case .statusRequest(let r):
            if r.jobID == job.jobID {
                var s = Kiln_V1_StatusResponse()
                s.status = job
                body = .statusResponse(s)
            } else {
                var e = Kiln_V1_Error()
                e.code = .unknownJob
                e.message = "no job \(r.jobID)"
                body = .error(e)
            }
        case .snapshotRequest:
            lock.withLock { snapshotRequests += 1 }
            var s = Kiln_V1_SnapshotResponse()
            s.sequence = sequence
            s.jobs = [job]
            body = .snapshotResponse(s)
        case .listWorkersRequest:
            var w = Kiln_V1_WorkerInfo()
            w.workerID = "w1"
            w.state = .idle
            var r = Kiln_V1_ListWorkersResponse()
            r.workers = [w]
            body = .listWorkersResponse(r)
        default:
            var e = Kiln_V1_Error()
            e.code = .invalidField
            e.message = "unsupported request"
            e.field = "body"
            body = .error(e)
        }
        if sendStaleReplyFirst {
            _ = try? router.send(
                Message(.statusResponse(Kiln_V1_StatusResponse()), correlationID: "stale"), prefix: prefix)
        }
        _ = try? router.send(Message(body, correlationID: request.correlationID), prefix: prefix)
    }
}
