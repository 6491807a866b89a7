import Cluster
import Foundation
import Jobs
import KilnMetrics
import KilnProtocol
import Logging
import Synchronization
import ZeroMQ

/// A task a worker holds: assigned to it and not yet answered.
struct HeldTask: Equatable {
    let job: String
    let task: TaskID
    let attempt: Int
}

/// A connected worker as the coordinator sees it.
final class WorkerSession {
    let routing: Data
    let id: String
    var capacity: Kiln_V1_WorkerCapacity
    var hostname: String
    let connectedMs: Int64
    var lastSeenMs: Int64
    var lastSentMs: Int64 = 0
    /// Tasks assigned and not answered, in assignment order.
    var held: [HeldTask] = []
    /// Collects it answered "deferred": their statistics travel in a later result of the
    /// block. Nobody else runs them; they go back to the queue if the worker is lost.
    var deferred: [HeldTask] = []
    /// "job/block" whose quantized linears this connection was sent: its propagates of the
    /// block go without them (the worker keeps them; it says so if it lost them).
    var quantizedBlocks: Set<String> = []
    var tasksDone: UInt64 = 0
    var lost = false
    var heartbeatSequence: UInt64 = 0
    /// Chunked transfers with this worker (inputs out, results in).
    var outgoing: OutgoingTransfers
    var incoming: IncomingTransfers

    init(
        routing: Data, id: String, capacity: Kiln_V1_WorkerCapacity, hostname: String, nowMs: Int64,
        config: CoordinatorConfig
    ) {
        self.routing = routing
        self.id = id
        self.capacity = capacity
        self.hostname = hostname
        connectedMs = nowMs
        lastSeenMs = nowMs
        outgoing = OutgoingTransfers(chunkSize: config.effectiveChunkBytes, window: config.chunkWindow)
        incoming = IncomingTransfers(
            window: config.chunkWindow, limits: config.limits, maxBytes: config.maxTransferBytes)
    }

    /// The worker's task lanes (its hello's threads, bounded: the field comes from a peer).
    var lanes: Int { Int(min(max(capacity.threads, 1), 256)) }
    /// Tasks it may hold: one per lane plus one queued behind them, so a lane never waits
    /// for a round trip to the coordinator between two tasks.
    var slots: Int { lanes + 1 }

    func holding(_ t: TaskID) -> HeldTask? { held.first { $0.task == t } }

    func release(_ t: TaskID) { held.removeAll { $0.task == t } }
}

/// The loop's inbox: closures to run on the loop thread and the socket that wakes it.
struct Inbox {
    var pending: [@Sendable () -> Void] = []
    var wake: ZMQSocket?
}

/// Bytes sent to workers per task kind (and received back), for the benchmark figures.
public struct TrafficCounters: Sendable {
    public var sent: [String: Int] = [:]
    public var received: [String: Int] = [:]
    /// Chunk messages sent and received (chunked transfers), and transfers that failed.
    public var chunksSent = 0
    public var chunksReceived = 0
    public var transfersFailed = 0
}

/// The coordinator: one ROUTER for workers and clients, one PUB for progress, a job
/// store, the scheduler and the merger/writer. Its sockets are used only by the loop
/// thread (ZeroMQ's rule); heavy work (merges, the writer) runs on a serial queue and
/// hands its outcome back to the loop through `inbox`.
public final class Coordinator: @unchecked Sendable {  // loop-only state checked by assertOnLoop; the rest under locks
    public let config: CoordinatorConfig
    let context: ZMQContext
    var log: Logger
    let router: ZMQSocket
    let pub: ZMQSocket
    let store: JobStore
    let files: ResultFiles
    /// Held while the coordinator runs: no second coordinator or `kiln gc` on the data dir.
    let dataDirLock: DataDirLock
    let zap: ZAPAuthenticator?
    /// Actual endpoints after binding (a port of * resolved).
    public let endpoints: (listen: String, publish: String)
    /// Without CURVE: the token every client request and worker hello must carry (see LocalToken).
    public let token: String?

    var jobs: [String: JobRun] = [:]
    var jobOrder: [String] = []
    var workers: [Data: WorkerSession] = [:]
    var lostWorkers: [String: WorkerSession] = [:]
    var sequence: UInt64 = 0
    /// Submit idempotency: client token -> job id.
    var clientTokens: [String: String] = [:]
    /// Tasks found done in the store at start (resumed, not rerun).
    public internal(set) var resumedTaskCount = 0
    /// Per-block caches the scheduler sends from, dropped when the block no longer needs
    /// them: the block's collect files, opened and checked by merge(b) (their Hessians stay
    /// on disk, summed into each reconstruct's input a piece at a time), and the quantized
    /// linears for propagates. Lineage reads the durable files without caching.
    var statisticsParts: [String: [Int: [CollectFile]]] = [:]
    var quantizedCache: [String: [Int: [QuantizedLinear]]] = [:]
    /// Reconstruct results as decoded when they arrived, until their block's linears are assembled.
    var reconstructedCache: [String: [TaskID: [QuantizedLinear]]] = [:]
    /// A group's merged statistics as sent, while more row slices of it may be sent
    /// (`--row-parts`): summed from the collect files once per group, not once per slice.
    var preparedStatistics: [String: [Int: [Int: PreparedInput]]] = [:]
    /// Each job's spec as the JSON every assignment carries, encoded once.
    var specJSONCache: [String: String] = [:]
    /// Bad messages are logged a few times per peer and kind, then summarised (loop thread only):
    /// a peer can send them as fast as the network carries them.
    var badMessageLog = LogLimiter(burst: 3, intervalMs: 10_000)

    let work = DispatchQueue(label: "kiln.coordinator.work")
    /// Submits are validated here (model headers, input files), off the loop (Coordinator+Clients).
    let validation = DispatchQueue(label: "kiln.coordinator.validation")
    /// Closures for the loop thread, and the PUSH end of the loop's wake-up socket (a
    /// socket is not thread-safe: both under the lock). The loop polls the PULL end with
    /// the ROUTER, so work finished on the queue is handled at once, not at the next tick.
    private let inbox = Mutex(Inbox())
    private let wakeReceiver: ZMQSocket
    /// The thread running the loop (nil before it starts), for `assertOnLoop`.
    private let loopThread = Mutex<ObjectIdentifier?>(nil)
    private let loopStop = LoopStop()
    /// The thread `start()` made, joined by `stop()` (nil when the caller runs the loop itself).
    private let started = Mutex<LoopThread?>(nil)

    private let trafficLock = NSLock()
    private var _traffic = TrafficCounters()
    public var traffic: TrafficCounters { trafficLock.withLock { _traffic } }
    func countSent(_ kind: String, _ n: Int) {
        trafficLock.withLock { _traffic.sent[kind, default: 0] += n }
        metrics.count("kiln_bytes_sent_total", [("kind", kind)], by: n)
    }
    func countReceived(_ kind: String, _ n: Int) {
        trafficLock.withLock { _traffic.received[kind, default: 0] += n }
        metrics.count("kiln_bytes_received_total", [("kind", kind)], by: n)
    }
    let metrics: MetricSeries
    /// When the state gauges were last set (loop only).
    var metricsSetMs: Int64 = 0
    func countChunks(sent: Int = 0, received: Int = 0, failed: Int = 0) {
        trafficLock.withLock {
            _traffic.chunksSent += sent
            _traffic.chunksReceived += received
            _traffic.transfersFailed += failed
        }
    }

    /// In-process observer (the embedded `kiln run` progress): called on the loop thread.
    public var onEvent: ((String, JobEvent) -> Void)?

    public init(
        config: CoordinatorConfig, context: ZMQContext = .shared,
        logger: Logger = Logger(label: "kiln.coordinator")
    ) throws {
        self.config = config
        metrics = MetricSeries(factory: config.metricsFactory)
        self.context = context
        self.log = logger
        badMessageLog = LogLimiter(burst: 3, intervalMs: config.repeatLogIntervalMs)
        let secured = config.curveSecretKey != nil
        let listen = try EndpointPolicy.bindable(config.listen, flag: "--listen")
        try EndpointPolicy.check(listen, secured: secured, insecure: config.insecure, flag: "--listen")
        let publish =
            try config.publish.map { try EndpointPolicy.bindable($0, flag: "--publish") }
            ?? EndpointPolicy.defaultPublish(for: listen)
        try EndpointPolicy.check(publish, secured: secured, insecure: config.insecure, flag: "--publish")

        try FileManager.default.createDirectory(at: config.dataDir, withIntermediateDirectories: true)
        dataDirLock = try DataDirLock(dataDir: config.dataDir)
        token = secured ? nil : try LocalToken.loadOrCreate(dataDir: config.dataDir)
        store = try JobStore(path: config.dataDir.appendingPathComponent("kiln.sqlite").path)
        files = try ResultFiles(dataDir: config.dataDir)

        if config.curveSecretKey != nil {
            let log = logger
            zap = try ZAPAuthenticator(
                context: context, allowedKeys: config.allowedKeys,
                log: { line in
                    log.warning(
                        "\(line) (to let a key in, add it to the --allow-keys file and restart the coordinator)")
                }, limiter: LogLimiter(burst: 3, intervalMs: config.repeatLogIntervalMs))
        } else {
            zap = nil
        }
        router = try context.socket(.router)
        pub = try context.socket(.pub)
        let opts: [ZMQOption] = [
            .linger(0), .maxMessageSize(config.maxMessageBytes), .routerMandatory(false),
            .sendHighWaterMark(0), .receiveHighWaterMark(0),
        ]
        try router.set(opts)
        if let secret = config.curveSecretKey {
            do {
                let pair = try ZMQCurveKeyPair(secretKey: secret)
                try router.set([.curveServer(true), .curveSecretKey(pair.secretKey), .zapDomain("kiln")])
                try pub.set([.curveServer(true), .curveSecretKey(pair.secretKey), .zapDomain("kiln")])
            } catch {
                throw CoordinatorError(
                    "\(config.curveSecretSource): not a usable CURVE secret key (\(error)); "
                        + "make a key pair with `kiln keygen NAME`")
            }
        }
        try pub.set([.linger(0), .sendHighWaterMark(100_000)])
        try router.bind(listen)
        try pub.bind(publish)
        endpoints = (try router.lastEndpoint, try pub.lastEndpoint)
        let wake = "inproc://kiln-coordinator-wake-\(UUID().uuidString)"
        wakeReceiver = try context.socket(.pull)
        try wakeReceiver.bind(wake)
        let wakeSender = try context.socket(.push)
        // Never block a poster: one pending wake-up is enough (the loop drains the inbox).
        try wakeSender.set([.sendHighWaterMark(1)])
        try wakeSender.connect(wake)
        inbox.withLock { $0.wake = wakeSender }
        try resumeJobs()
    }

    deinit {
        router.close()
        pub.close()
        inbox.withLock { $0.wake?.close() }
        wakeReceiver.close()
        zap?.stop()
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Runs the loop on a new thread (`stop()` joins it).
    public func start() {
        let t = LoopThread(name: "kiln.coordinator") { [self] in self.run() }
        started.withLock { $0 = t }
    }

    /// Asks the loop to stop and waits for it (and for background work) to finish.
    public func stop() {
        loopStop.requestAndWait()
        // Join, not just "the loop returned": the loop thread holds a reference to this
        // coordinator until it ends; left running, it could run deinit (closing the store,
        // releasing queues and sockets) concurrently with the caller, even with exit().
        // Regression: heap corruption at exit in ConfinementTests, 1 run in 3 (see LoopThread).
        started.withLock { $0 }?.join()
        // A job that ended since the last tick (a fast job, a restart that found it ended)
        // still has its result files removed; the loop has returned, so its state is ours.
        releaseEndedJobs()
        validation.sync {}
        work.sync {}
        router.close()
        pub.close()
        inbox.withLock { $0.wake?.close() }
        wakeReceiver.close()
        zap?.stop()
        dataDirLock.release()
    }

    /// Makes the loop return soon (safe from any thread or a signal handler's queue).
    public func requestStop() {
        loopStop.request()
        post {}
    }

    var shouldStop: Bool { loopStop.isRequested }

    /// Runs f on the loop thread soon, waking the loop if it waits.
    func post(_ f: @escaping @Sendable () -> Void) {
        inbox.withLock { box in
            box.pending.append(f)
            // The first closure of a batch wakes the loop; the loop takes the whole batch.
            if box.pending.count == 1 { _ = try? box.wake?.send(Data(), dontWait: true) }
        }
    }

    /// Loop-only state is touched on the loop thread alone (or before the loop starts).
    func assertOnLoop() {
        guard let loop = loopThread.withLock({ $0 }) else { return }
        precondition(ObjectIdentifier(Thread.current) == loop, "coordinator state used off its loop thread")
    }

    /// The event loop: messages, heartbeats, liveness, scheduling.
    public func run() {
        loopStop.loopStarted()
        loopThread.withLock { $0 = ObjectIdentifier(Thread.current) }
        defer { loopStop.loopReturned() }
        log.info(
            "coordinator listening", metadata: ["listen": "\(endpoints.listen)", "publish": "\(endpoints.publish)"])
        let poller = ZMQPoller()
        poller.register(router)
        poller.register(wakeReceiver)
        while !shouldStop {
            do {
                // A message, a wake-up (work done on the queue, a local request) or the
                // timer for heartbeats and liveness.
                _ = try poller.poll(timeout: tickMs)
                let t0 = Self.nowMs()
                var handled = 0
                // Drain what is queued (bounded, so timers still run under load).
                while handled < 256, let frames = try router.receiveMultipart(timeout: 0) {
                    handled += 1
                    handle(frames)
                }
                while try wakeReceiver.receive(timeout: 0) != nil {}
                let pending = inbox.withLock { box -> [@Sendable () -> Void] in
                    defer { box.pending = [] }
                    return box.pending
                }
                let t1 = Self.nowMs()
                for f in pending { f() }
                let t2 = Self.nowMs()
                tick()
                let t3 = Self.nowMs()
                // Workers call a coordinator silent after a few heartbeat intervals: a loop
                // that stops for seconds drops them. Say where the time went.
                if t3 - t0 >= Int64(config.heartbeatIntervalMs) {
                    log.warning(
                        "loop stalled",
                        metadata: [
                            "ms": "\(t3 - t0)", "messages": "\(handled) in \(t1 - t0) ms",
                            "posted": "\(pending.count) in \(t2 - t1) ms", "tick_ms": "\(t3 - t2)",
                        ])
                }
            } catch {
                log.error("coordinator loop: \(error)")
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }

    /// Longest wait between ticks: a fraction of the heartbeat interval, so heartbeats and
    /// liveness keep their timing; messages and wake-ups end the wait at once.
    var tickMs: Int32 { Int32(clamping: max(1, min(250, Int(config.heartbeatIntervalMs) / 4))) }

    /// Decodes one ROUTER message; anything malformed is logged and dropped.
    func handle(_ frames: [Data]) {
        assertOnLoop()
        guard frames.count >= 2 else {
            logBad(
                frames.first ?? Data(), kind: "no envelope", "dropped a message without envelope",
                ["frames": "\(frames.count)"])
            return
        }
        let routing = frames[0]
        let message: Message
        do {
            message = try Message.decode(Array(frames.dropFirst()), limits: config.limits)
        } catch let e as ProtocolError {
            logBad(routing, kind: e.field, "dropped a bad message: \(e)", ["field": "\(e.field)"])
            if let w = workers[routing] {
                w.lastSeenMs = Self.nowMs()
                // A damaged chunk fails its transfer at once (the task is retried), rather than stalling it.
                if let id = Message.chunkTransferID(Array(frames.dropFirst()), limits: config.limits) {
                    onChunkEvent(w, w.incoming.fail(id, e))
                }
            }
            reply(routing, Message(.error(e.wireError)))
            return
        } catch {
            logBad(routing, kind: "undecodable", "dropped a bad message: \(error)")
            return
        }
        if let token, workers[routing] == nil, !LocalToken.matches(message.envelope.authToken, token) {
            return refuseWithoutToken(routing, message)
        }
        if let w = workers[routing] { w.lastSeenMs = Self.nowMs() }
        guard let body = message.body else { return }
        switch body {
        case .workerHello(let h): onHello(routing, h)
        case .heartbeat: onHeartbeat(routing)
        case .workerGoodbye(let g): onGoodbye(routing, g)
        case .taskResult(let r): onResult(routing, r, message)
        case .taskProgress(let p): onProgress(routing, p)
        case .rangeFetchRequest(let r): onRangeFetch(routing, r, message.correlationID)
        case .tensorChunk: onChunk(routing, message)
        case .credit(let c): onCredit(routing, c)
        case .submitRequest(let r): onSubmit(routing, r, message.correlationID)
        case .statusRequest(let r): onStatus(routing, r, message.correlationID)
        case .cancelRequest(let r): onCancel(routing, r, message.correlationID)
        case .listWorkersRequest: onListWorkers(routing, message.correlationID)
        case .snapshotRequest(let r): onSnapshot(routing, r, message.correlationID)
        case .reportRequest(let r): onReport(routing, r, message.correlationID)
        case .error(let e):
            logBad(routing, kind: "error report", "peer reported an error: \(e.message)", ["field": "\(e.field)"])
        default:
            logBad(routing, kind: "unexpected kind", "dropped an unexpected message kind")
        }
    }

    /// A message from a peer that is not a welcomed worker and lacks the token: dropped;
    /// requests are told what to do (answering every stray heartbeat would make an echo service).
    func refuseWithoutToken(_ routing: Data, _ m: Message) {
        logBad(
            routing, kind: "token",
            "refused a message \(m.envelope.authToken.isEmpty ? "without" : "with a wrong") token")
        switch m.body {
        case .workerHello?, .submitRequest?, .statusRequest?, .cancelRequest?, .listWorkersRequest?, .snapshotRequest?,
            .reportRequest?, .rangeFetchRequest?:
            let path = config.dataDir.appendingPathComponent(LocalToken.fileName).path
            let e = Kiln_V1_Error(
                .unauthorized, field: "auth_token",
                "this coordinator requires its token; run as a user who can read \(path), or pass --token-file "
                    + "\(path) (or set KILN_TOKEN_FILE)")
            reply(routing, Message(.error(e), correlationID: m.correlationID))
        default:
            return
        }
    }

    /// Logs a dropped or odd message unless this peer has sent too many of this kind lately
    /// (those are counted and reported by `reportSuppressed`).
    func logBad(_ routing: Data, kind: String, _ message: @autoclosure () -> String, _ metadata: Logger.Metadata = [:])
    {
        let peer = peerName(routing)
        guard badMessageLog.admit("\(peer) (\(kind))", nowMs: Self.nowMs()) else { return }
        log.warning("\(message())", metadata: metadata.merging(["peer": "\(peer)"]) { $1 })
    }

    func reportSuppressed(force: Bool = false) {
        for (key, n) in badMessageLog.summaries(nowMs: Self.nowMs(), force: force) {
            log.warning("\(n) more malformed message\(n == 1 ? "" : "s") from \(key) suppressed")
        }
    }

    func peerName(_ routing: Data) -> String {
        if let w = workers[routing] { return w.id }
        return routing.map { String(format: "%02x", $0) }.joined()
    }

    @discardableResult
    func reply(_ routing: Data, _ m: Message) -> Int {
        do {
            let frames = try m.encodeForSocket(limits: config.limits)
            let n = frames.reduce(0) { a, f in
                if case .copy(let d) = f { return a + d.count }
                if case .zeroCopy(let b) = f { return a + b.count }
                return a
            }
            // A peer gone away (or a full queue) must never block or kill the loop.
            _ = try router.send(frames: [.copy(routing)] + frames, dontWait: true)
            return n
        } catch {
            log.warning("could not send to \(peerName(routing)): \(error)")
            return 0
        }
    }

    /// Periodic work: heartbeats to workers, liveness, scheduling.
    func tick() {
        assertOnLoop()
        reportSuppressed()
        let now = Self.nowMs()
        for w in Array(workers.values) {
            if now - w.lastSeenMs > config.livenessMs {
                dropWorker(w, reason: "silent for \(now - w.lastSeenMs) ms")
                continue
            }
            if w.incoming.active > 0 {
                for e in w.incoming.expire(nowMs: now, silenceMs: max(config.livenessMs, 10_000)) { onChunkEvent(w, e) }
            }
            if now - w.lastSentMs >= Int64(config.heartbeatIntervalMs) {
                w.heartbeatSequence += 1
                var hb = Kiln_V1_Heartbeat()
                hb.sequence = w.heartbeatSequence
                hb.sentUnixMs = now
                reply(w.routing, Message(.heartbeat(hb)))
                w.lastSentMs = now
            }
        }
        schedule()
        if now - metricsSetMs >= 1000 {
            metricsSetMs = now
            recordStateMetrics()
        }
    }
}
