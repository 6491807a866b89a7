import Cluster
import CoreMetrics
import Foundation
import Jobs
import KilnMetrics
import KilnProtocol
import Logging
import Synchronization
import Tensor
import ZeroMQ

public struct WorkerConfig: Sendable {
    public var coordinator: String
    /// Task lanes: tasks run at once, each on one BLAS thread (so results never depend on it).
    public var threads = 1
    public var id: String
    /// CURVE: the coordinator's public key, and this worker's key pair (generated if nil).
    public var curveServerKey: String?
    public var curveKeys: ZMQCurveKeyPair?
    /// Where the CURVE keys came from, for errors ("--curve-server-key FILE, --curve-secret FILE").
    public var curveKeySource = "--curve-server-key, --curve-secret"
    /// The coordinator's token (its DATA_DIR/token) when it runs without CURVE.
    public var token: String?
    /// Until the coordinator's welcome says otherwise.
    public var heartbeatIntervalMs: UInt32 = 1000
    public var heartbeatLiveness: UInt32 = 3
    /// Reconnect backoff: doubles from the first value up to the cap.
    public var reconnectInitialMs = 250
    public var reconnectMaxMs = 8000
    public var maxMessageBytes: Int64 = 1 << 30
    public var limits: FramingLimits = .default
    /// Chunked transfers until the coordinator's welcome says otherwise: payloads above
    /// `chunkBytes` (capped by the frame limit) travel in chunks, `chunkWindow` in flight.
    public var chunkBytes = 1 << 20
    public var chunkWindow = 8
    /// Largest task input accepted in chunks.
    public var maxTransferBytes: UInt64 = 4 << 30
    /// Where a model fetched from the coordinator is kept (default: a directory under
    /// the system's temporary directory named after the worker id).
    public var cacheDirectory: URL?
    /// Always fetch the model from the coordinator, even if its path is readable here
    /// (hosts without the coordinator's file system).
    public var fetchModel = false
    /// Where the worker's metrics go (`kiln worker --metrics`: a Prometheus registry); nil: nowhere.
    public var metricsFactory: (any MetricsFactory)?

    public init(coordinator: String, threads: Int = 1, id: String? = nil) {
        self.coordinator = coordinator
        self.threads = threads
        self.id = id ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
    }
}

/// A worker: DEALER to the coordinator's ROUTER, hello with capacity, heartbeats both
/// ways (Paranoid Pirate), reconnect with exponential backoff, tasks run by Jobs'
/// task functions on a compute thread while this loop keeps the heartbeats going.
// @unchecked: socket and session on the loop thread only; outbox and stop under locks.
public final class Worker: @unchecked Sendable {
    public let config: WorkerConfig
    let context: ZMQContext
    var log: Logger
    private var socket: ZMQSocket?
    private var runner: TaskRunner!
    /// Where large chunked inputs arrive (see `spoolFile`).
    private var spoolDirectory: URL!
    private let outLock = NSLock()
    private var outbox: [Outgoing] = []
    /// Results not yet acknowledged (durable on the coordinator): resent after a reconnect.
    private var unacked: [String: Outgoing] = [:]
    private var session = 0
    private var lastHeardMs: Int64 = 0
    private var lastSentMs: Int64 = 0
    private var intervalMs: Int64
    private var liveness: Int64
    private var backoffMs: Int
    private var heartbeatSequence: UInt64 = 0
    private var outgoing: OutgoingTransfers
    private var incoming: IncomingTransfers
    private let fetcher = RangeFetcher()
    private let loopStop = LoopStop()
    /// The thread `start()` made, joined by `stop()` (nil when the caller runs the loop itself).
    private let started = Mutex<LoopThread?>(nil)
    /// Results handed to the socket (guarded by outLock: tests and the CLI read it from other threads).
    private var tasksRunCount = 0
    let metrics: MetricSeries
    private var metricsSetMs: Int64 = 0
    public var tasksRun: Int { outLock.withLock { tasksRunCount } }
    /// This connection's handshake events, and whether the coordinator welcomed it.
    private var watch: HandshakeWatch?
    private var welcomed = false
    private var reportedVerdict: HandshakeVerdict = .unknown
    /// Refusals repeat on every reconnect: logged a few times, then summarised.
    private var refusalLog = LogLimiter(burst: 3, intervalMs: 60_000)
    /// Made once when no key is configured (so every reconnect shows the coordinator the same key).
    private var ephemeralKeys: ZMQCurveKeyPair?

    public init(config: WorkerConfig, context: ZMQContext = .shared, logger: Logger? = nil) {
        self.config = config
        self.context = context
        self.log = logger ?? Logger(label: "kiln.worker")
        intervalMs = Int64(config.heartbeatIntervalMs)
        liveness = Int64(config.heartbeatLiveness)
        backoffMs = config.reconnectInitialMs
        outgoing = Self.outgoing(config, chunkBytes: config.chunkBytes, window: config.chunkWindow)
        incoming = Self.incoming(config, window: config.chunkWindow)
        log[metadataKey: "worker"] = "\(config.id)"
        Self.useBLASThreads(1)
        let log = self.log
        metrics = MetricSeries(factory: config.metricsFactory)
        let cache =
            config.cacheDirectory
            ?? FileManager.default.temporaryDirectory
            .appendingPathComponent(
                "kiln-worker-\(String(config.id.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }))")
        let spool = cache.appendingPathComponent("spool")
        spoolDirectory = spool
        runner = TaskRunner(
            lanes: config.threads, emit: { [weak self] m in self?.enqueue(m) },
            spool: { try Self.spoolFile(in: spool) }, log: { log.warning("\($0)") }, info: { log.info("\($0)") },
            models: ModelSource(
                fetcher: fetcher, cacheDirectory: cache, alwaysFetch: config.fetchModel,
                rangeBytes: min(8 << 20, config.limits.maxFrameBytes)))
        runner.chunkSize.store(outgoing.chunkSize, ordering: .relaxed)
    }

    /// A new file for an input that arrives in chunks (removed when its task is done with
    /// it), in the cache directory's spool/.
    private func spoolFile() throws -> SpoolFile { try Self.spoolFile(in: spoolDirectory) }

    /// A new file in `directory` (made if missing), removed when dropped; also where a
    /// large result is encoded before it is sent.
    static func spoolFile(in directory: URL) throws -> SpoolFile {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try SpoolFile(creating: directory.appendingPathComponent(".tmp-\(UUID().uuidString)"))
    }

    /// BLAS threads are process-wide (openblas_set_num_threads), and changing them while
    /// another thread is inside BLAS is unsafe: workers set them under one process-wide lock,
    /// and only when the count changes, so the workers of one cluster write it once, before
    /// any of them runs a task.
    private static let blasThreadsLock = Mutex(())

    static func useBLASThreads(_ n: Int) {
        blasThreadsLock.withLock { _ in
            if BLAS.threads != n { BLAS.threads = n }
        }
    }

    static func outgoing(_ c: WorkerConfig, chunkBytes: Int, window: Int) -> OutgoingTransfers {
        OutgoingTransfers(chunkSize: min(chunkBytes, c.limits.maxFrameBytes), window: window)
    }

    static func incoming(_ c: WorkerConfig, window: Int) -> IncomingTransfers {
        IncomingTransfers(window: window, limits: c.limits, maxBytes: c.maxTransferBytes)
    }

    /// Model fetches done (the model path was not readable here, or fetchModel was set).
    public var modelFetches: Int { runner.modelFetches }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func enqueue(_ m: Message) { enqueue(Outgoing(m)) }

    func enqueue(_ o: Outgoing) { outLock.withLock { outbox.append(o) } }

    /// Runs the loop on a new thread (`stop()` joins it).
    public func start() {
        let t = LoopThread(name: "kiln.worker.\(config.id)") { [self] in self.run() }
        started.withLock { $0 = t }
    }

    /// Says goodbye, stops the loop and the compute thread.
    public func stop() {
        loopStop.requestAndWait()
        // Joined, like the coordinator's: a loop thread left running holds the last reference
        // and could run deinit concurrently with the caller (see LoopThread).
        started.withLock { $0 }?.join()
        fetcher.cancelAll("worker stopping")
        runner.stop()
    }

    /// Makes the loop say goodbye and return soon (safe from any thread).
    public func requestStop() { loopStop.request() }

    private var shouldStop: Bool { loopStop.isRequested }

    public func run() {
        loopStop.loopStarted()
        defer { loopStop.loopReturned() }
        while !shouldStop {
            do {
                try connect()
                try serve()
            } catch {
                log.warning("connection: \(error)")
            }
            watch?.close()
            watch = nil
            socket?.close()
            socket = nil
            if shouldStop { break }
            log.info("reconnecting", metadata: ["after_ms": "\(backoffMs)"])
            sleepInterruptibly(ms: backoffMs)
            backoffMs = min(backoffMs * 2, config.reconnectMaxMs)
        }
    }

    private func sleepInterruptibly(ms: Int) {
        var left = ms
        while left > 0 && !shouldStop {
            Thread.sleep(forTimeInterval: 0.02)
            left -= 20
        }
    }

    private func connect() throws {
        session += 1
        let s = try context.socket(.dealer)
        try s.set([
            .linger(0), .routingID(Data("\(config.id)#\(session)".utf8)), .maxMessageSize(config.maxMessageBytes),
            .sendHighWaterMark(0), .receiveHighWaterMark(0),
        ])
        if let server = config.curveServerKey {
            let keys = try curveKeys()
            do {
                try s.set([.curveServerKey(server), .curvePublicKey(keys.publicKey), .curveSecretKey(keys.secretKey)])
            } catch {
                throw WorkerError(
                    "\(config.curveKeySource): libzmq refused the CURVE keys (\(error)); "
                        + "make a pair with `kiln keygen NAME`")
            }
        }
        watch?.close()
        watch = try HandshakeWatch(s)
        welcomed = false
        reportedVerdict = .unknown
        try s.connect(config.coordinator)
        socket = s
        // Transfers do not survive a connection: unacknowledged results are resent whole.
        outgoing = Self.outgoing(config, chunkBytes: outgoing.chunkSize, window: outgoing.window)
        incoming.cancelAll()
        fetcher.cancelAll("connection to the coordinator reset")
        lastHeardMs = Self.nowMs()
        try sendHello()
    }

    private func curveKeys() throws -> ZMQCurveKeyPair {
        if let k = config.curveKeys ?? ephemeralKeys { return k }
        let k = try ZMQCurveKeyPair.generate()
        ephemeralKeys = k
        return k
    }

    /// Says why the coordinator does not answer, when the handshake events tell: a refused
    /// key, nobody listening, a failed handshake. Each kind a few times, then summarised.
    private func reportHandshake(final: Bool) {
        guard let watch else { return }
        let v = watch.update()
        let now = Self.nowMs()
        for (key, n) in refusalLog.summaries(nowMs: now) {
            log.warning("\(key) (\(n) more time\(n == 1 ? "" : "s"), repeats suppressed)")
        }
        // Refusals and failures are final for this connection; "nobody there" only once it gave up.
        let report: Bool
        switch v {
        case .refused, .protocolFailure: report = v != reportedVerdict
        case .unreachable, .noHandshake: report = final
        case .unknown, .succeeded: report = false
        }
        guard report, !welcomed else { return }
        reportedVerdict = v
        let message = handshakeMessage(v)
        if refusalLog.admit(message, nowMs: now) { log.warning("\(message)") }
    }

    func handshakeMessage(_ v: HandshakeVerdict) -> String {
        let curve = config.curveServerKey != nil
        if let hint = v.hint(curve: curve) {
            return "the coordinator at \(config.coordinator) did not complete the connection handshake: \(hint)"
        }
        switch v {
        case .refused:
            let key = (try? curveKeys().publicKey) ?? "?"
            var m =
                "the coordinator at \(config.coordinator) refused this CURVE key (ask its operator to add \(key) "
                + "to --allow-keys)"
            if config.curveKeys == nil {
                m +=
                    "; this key was made for this run (no --curve-secret): make a pair with `kiln keygen NAME` and "
                    + "pass --curve-secret NAME.secret"
            }
            return m
        case .unreachable:
            return "no coordinator answers at \(config.coordinator) (is `kiln coordinator` running there?)"
        default:
            return "the coordinator at \(config.coordinator) went silent"
        }
    }

    private func sendHello() throws {
        var cap = Kiln_V1_WorkerCapacity()
        cap.threads = UInt32(max(1, config.threads))
        cap.memoryBytes = ProcessInfo.processInfo.physicalMemory
        cap.cpuKind = "\(Self.arch)/\(BLAS.coreName)"
        cap.canReadModel = true
        var h = Kiln_V1_WorkerHello()
        h.workerID = config.id
        h.protocolVersion = KilnWire.version
        h.capacity = cap
        h.hostname = ProcessInfo.processInfo.hostName
        h.softwareVersion = "kiln-1"
        try send(Message(.workerHello(h)))
    }

    static var arch: String {
        #if arch(x86_64)
        return "x86_64"
        #elseif arch(arm64)
        return "arm64"
        #else
        return "unknown"
        #endif
    }

    private func send(_ m: Message) throws { try send(Outgoing(m)) }

    private func send(_ o: Outgoing) throws {
        guard let s = socket else { return }
        var m = o.message
        if let token = config.token { m.envelope.authToken = token }
        // A result encoded to disk: sent from its file in chunks, or attached when it fits one.
        if let p = o.payload, case .taskResult(var r)? = m.body {
            if outgoing.needsChunking(p.size) {
                let sums = p.chunkSize == outgoing.chunkSize ? p.checksums : nil
                let (header, chunks) = try outgoing.start(
                    file: p.file, name: "result", checksums: sums, context: r.taskID)
                r.outputs = [header]
                m.envelope.body = .taskResult(r)
                guard try s.send(frames: try m.encodeForSocket(limits: config.limits), dontWait: true) else {
                    return
                }
                for c in chunks { _ = try s.send(frames: try c.encodeForSocket(limits: config.limits), dontWait: true) }
                lastSentMs = Self.nowMs()
                return
            }
            let frame = try TensorFrame(
                name: "result", dtype: .u8, shape: [p.size], bytes: try p.file.read(at: 0, count: p.size))
            r.outputs = [frame.header]
            m.envelope.body = .taskResult(r)
            m.tensors = [frame]
        }
        // A result too large for one frame: announced by its header, bytes in chunks.
        if case .taskResult(var r)? = m.body, m.tensors.count == 1, outgoing.needsChunking(m.tensors[0].bytes.count) {
            let (header, chunks) = try outgoing.start(m.tensors[0], context: r.taskID)
            r.outputs = [header]
            var announce = m
            announce.envelope.body = .taskResult(r)
            announce.tensors = []
            guard try s.send(frames: try announce.encodeForSocket(limits: config.limits), dontWait: true) else {
                return
            }
            for c in chunks { _ = try s.send(frames: try c.encodeForSocket(limits: config.limits), dontWait: true) }
            lastSentMs = Self.nowMs()
            return
        }
        // Never blocks: with no live connection (a refused key) a blocking send would hang
        // here for good, deaf to stop requests. What is not sent is sent again: hello on the
        // next connection, results (kept until acknowledged) after the next welcome.
        guard try s.send(frames: try m.encodeForSocket(limits: config.limits), dontWait: true) else { return }
        lastSentMs = Self.nowMs()
    }

    /// Serves one connection until the coordinator goes silent or stop is asked.
    private func serve() throws {
        guard let s = socket else { return }
        while !shouldStop {
            if let frames = try s.receiveMultipart(timeout: 20) {
                lastHeardMs = Self.nowMs()
                handle(frames)
            }
            let out = outLock.withLock { () -> [Outgoing] in
                defer { outbox = [] }
                return outbox
            }
            for o in out {
                if case .taskResult(let r)? = o.message.body {
                    // A deferred answer has no result to keep: the one that carries it is kept.
                    if r.status != .deferred { unacked["\(r.taskID)#\(r.attempt)"] = o }
                    outLock.withLock { tasksRunCount += 1 }
                    recordResult(r, o)
                }
                try send(o)
            }
            recordStateMetrics()
            reportHandshake(final: false)
            let now = Self.nowMs()
            if now - lastHeardMs > intervalMs * liveness {
                // This loop may itself have been busy (sending a large result): what arrived
                // meanwhile is read before the coordinator is called silent.
                if let frames = try s.receiveMultipart(timeout: 0) {
                    lastHeardMs = Self.nowMs()
                    handle(frames)
                    continue
                }
                let verdict = watch?.update() ?? .unknown
                if !welcomed && verdict != .unknown && verdict != .succeeded {
                    reportHandshake(final: true)
                } else {
                    log.warning("coordinator silent", metadata: ["ms": "\(now - lastHeardMs)"])
                }
                return
            }
            if now - lastSentMs >= intervalMs {
                heartbeatSequence += 1
                var hb = Kiln_V1_Heartbeat()
                hb.sequence = heartbeatSequence
                hb.sentUnixMs = now
                try send(Message(.heartbeat(hb)))
            }
        }
        var bye = Kiln_V1_WorkerGoodbye()
        bye.workerID = config.id
        bye.reason = "stopping"
        try? send(Message(.workerGoodbye(bye)))
    }

    private func handle(_ frames: [Data]) {
        let m: Message
        do { m = try Message.decode(frames, limits: config.limits) } catch {
            log.warning("dropped a bad message from the coordinator: \(error)")
            // A damaged chunk: its transfer fails now (the task is retried) rather than stalling.
            if let id = Message.chunkTransferID(frames, limits: config.limits) {
                let e = error as? ProtocolError ?? .invalidField(field: "tensor_chunk", reason: "\(error)")
                onChunkEvent(incoming.fail(id, e))
            }
            return
        }
        countReceived(m, frames)
        switch m.body {
        case .workerWelcome(let w)?:
            if w.heartbeatIntervalMs > 0 { intervalMs = Int64(w.heartbeatIntervalMs) }
            if w.heartbeatLiveness > 0 { liveness = Int64(w.heartbeatLiveness) }
            if w.chunkSize > 0 || w.maxChunksInFlight > 0 {
                let size = w.chunkSize > 0 ? Int(clamping: w.chunkSize) : outgoing.chunkSize
                let window = w.maxChunksInFlight > 0 ? Int(w.maxChunksInFlight) : outgoing.window
                outgoing = Self.outgoing(config, chunkBytes: size, window: window)
                runner.chunkSize.store(outgoing.chunkSize, ordering: .relaxed)
                incoming = Self.incoming(config, window: window)
            }
            backoffMs = config.reconnectInitialMs
            welcomed = true
            log.info("welcomed", metadata: ["coordinator": "\(config.coordinator)", "heartbeat_ms": "\(intervalMs)"])
            // Results computed while disconnected: the coordinator may not have them durably yet.
            for (_, r) in unacked.sorted(by: { $0.key < $1.key }) { try? send(r) }
        case .heartbeat?:
            break
        case .taskAssignment(let a)?:
            if m.tensors.isEmpty, let h = a.inputs.first?.tensor, h.transferID != 0 {
                // The input follows in chunks; the task starts when it is complete.
                // A reconstruct's merged statistics (up to ~1 GB for a 7B down_proj) go to a file
                // as they arrive: queued or decoded, they are never held twice in memory.
                do {
                    let sink = a.kind == .reconstruct ? try spoolFile() : nil
                    try incoming.announce(h, by: m, nowMs: Self.nowMs(), sink: sink)
                } catch {
                    log.warning("assignment \(a.taskID): chunked input refused: \(error)")
                    enqueue(
                        TaskRunner.failure(
                            a, .retryable, (error as? ProtocolError)?.code ?? .invalidField,
                            field: "task_assignment.inputs[0].tensor", "\(error)"))
                }
                return
            }
            guard m.tensors.count == 1 else {
                log.warning("assignment \(a.taskID) without its input frame dropped")
                return
            }
            log.debug("task", metadata: ["task": "\(a.taskID)", "attempt": "\(a.attempt)"])
            runner.submit(a, input: .data(m.tensors[0].bytes))
        case .tensorChunk?:
            onChunkEvent(incoming.accept(m, nowMs: Self.nowMs()))
        case .credit(let c)?:
            let (chunks, aborted, _) = outgoing.apply(c)
            if let e = aborted { log.warning("the coordinator aborted transfer \(c.transferID): \(e.message)") }
            for chunk in chunks { try? send(chunk) }
        case .rangeFetchResponse(let r)?:
            fetcher.deliver(r, bytes: m.tensors.first?.bytes)
        case .taskResultAck(let ack)?:
            unacked["\(ack.taskID)#\(ack.attempt)"] = nil
            if !ack.accepted { log.warning("result \(ack.taskID) rejected: \(ack.error.message)") }
        case .taskCancel(let c)?:
            // Tasks are short and pure: a cancelled one finishes and its result is ignored.
            log.info("task cancelled", metadata: ["task": "\(c.taskID)", "reason": "\(c.reason)"])
        case .error(let e)?:
            log.warning("coordinator error: \(e.message)", metadata: ["field": "\(e.field)"])
            if e.field == "heartbeat" { try? sendHello() }
        default:
            log.warning("dropped an unexpected message kind from the coordinator")
        }
    }

    /// What an incoming chunk did: credit back, a task whose input is complete, or a
    /// failed transfer (aborted; its task reported retryable so the coordinator retries it).
    private func onChunkEvent(_ e: IncomingTransfers.Event) {
        switch e {
        case .progress(let credit):
            if let c = credit { try? send(Message(.credit(c))) }
        case let .complete(message, credit):
            try? send(Message(.credit(credit)))
            if case .taskAssignment(let a)? = message.body {
                log.debug("task", metadata: ["task": "\(a.taskID)", "attempt": "\(a.attempt)", "chunked": "true"])
                runner.submit(a, input: .data(message.tensors[0].bytes))
            }
        case let .spooled(message, file, credit):
            try? send(Message(.credit(credit)))
            if case .taskAssignment(let a)? = message.body {
                log.debug("task", metadata: ["task": "\(a.taskID)", "attempt": "\(a.attempt)", "spooled": "true"])
                runner.submit(a, input: .file(file))
            }
        case let .failed(announcement, error, credit):
            log.warning("chunk rejected: \(error)")
            if let c = credit { try? send(Message(.credit(c))) }
            if case .taskAssignment(let a)? = announcement?.body {
                enqueue(
                    TaskRunner.failure(a, .retryable, error.code, field: error.field, "input transfer failed: \(error)")
                )
            }
        }
    }
}

/// A worker misconfiguration, said in the user's terms (flags, files).
public struct WorkerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

// Metrics (series listed in docs/ARCHITECTURE.md); loop thread only.
extension Worker {
    /// A task's answer leaving: its count by kind and status, its duration, its bytes.
    fileprivate func recordResult(_ r: Kiln_V1_TaskResult, _ o: Outgoing) {
        guard metrics.enabled else { return }
        let kind = TaskID(wireName: r.taskID)?.kindName ?? "unknown"
        let status: String
        switch r.status {
        case .ok: status = "ok"
        case .deferred: status = "deferred"
        case .retryable: status = "retryable"
        default: status = "failed"
        }
        metrics.count("kiln_worker_tasks_total", [("kind", kind), ("status", status)])
        if r.status != .deferred {
            metrics.time("kiln_worker_task_duration_seconds", [("kind", kind)], seconds: Double(r.elapsedMs) / 1000)
        }
        let bytes = o.payload?.size ?? o.message.tensors.reduce(0) { $0 + $1.bytes.count }
        metrics.count("kiln_worker_bytes_sent_total", [("kind", kind)], by: bytes)
    }

    /// Bytes from the coordinator by what they carry: a task's input (by kind), chunks, model ranges, control.
    fileprivate func countReceived(_ m: Message, _ frames: [Data]) {
        guard metrics.enabled else { return }
        let kind: String
        switch m.body {
        case .taskAssignment(let a)?: kind = TaskID(wireName: a.taskID)?.kindName ?? "unknown"
        case .tensorChunk?: kind = "chunk"
        case .rangeFetchResponse?: kind = "model"
        default: kind = "control"
        }
        metrics.count("kiln_worker_bytes_received_total", [("kind", kind)], by: frames.reduce(0) { $0 + $1.count })
    }

    /// Connection, silence of the coordinator, lanes and queued tasks; once a second.
    fileprivate func recordStateMetrics() {
        let now = Self.nowMs()
        guard metrics.enabled, now - metricsSetMs >= 1000 else { return }
        metricsSetMs = now
        metrics.setState([
            ("kiln_worker_connected", [], welcomed ? 1 : 0),
            ("kiln_worker_coordinator_silence_seconds", [], Double(max(0, now - lastHeardMs)) / 1000),
            ("kiln_worker_lanes", [], Double(config.threads)),
            ("kiln_worker_queue_depth", [], Double(runner.queued)),
            ("kiln_worker_unacknowledged_results", [], Double(unacked.count)),
        ])
    }
}
