import Foundation
import Jobs
import KilnProtocol
import Logging
import Tensor
import ZeroMQ

public struct WorkerConfig: Sendable {
    public var coordinator: String
    /// BLAS threads; 1 by default so results never depend on thread scheduling.
    public var threads = 1
    public var id: String
    /// CURVE: the coordinator's public key, and this worker's key pair (generated if nil).
    public var curveServerKey: String?
    public var curveKeys: ZMQCurveKeyPair?
    /// Until the coordinator's welcome says otherwise.
    public var heartbeatIntervalMs: UInt32 = 1000
    public var heartbeatLiveness: UInt32 = 3
    /// Reconnect backoff: doubles from the first value up to the cap.
    public var reconnectInitialMs = 250
    public var reconnectMaxMs = 8000
    public var maxMessageBytes: Int64 = 1 << 30
    public var limits: FramingLimits = .default

    public init(coordinator: String, threads: Int = 1, id: String? = nil) {
        self.coordinator = coordinator
        self.threads = threads
        self.id = id ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
    }
}

/// A worker: DEALER to the coordinator's ROUTER, hello with capacity, heartbeats both
/// ways (Paranoid Pirate), reconnect with exponential backoff, tasks run by Jobs'
/// task functions on a compute thread while this loop keeps the heartbeats going.
public final class Worker: @unchecked Sendable {  // the socket is used only by the loop thread
    public let config: WorkerConfig
    let context: ZMQContext
    var log: Logger
    private var socket: ZMQSocket?
    private var runner: TaskRunner!
    private let outLock = NSLock()
    private var outbox: [Message] = []
    /// Results not yet acknowledged (durable on the coordinator): resent after a reconnect.
    private var unacked: [String: Message] = [:]
    private var session = 0
    private var lastHeardMs: Int64 = 0
    private var lastSentMs: Int64 = 0
    private var intervalMs: Int64
    private var liveness: Int64
    private var backoffMs: Int
    private var heartbeatSequence: UInt64 = 0
    private let stopLock = NSLock()
    private var stopRequested = false
    private let stopped = DispatchSemaphore(value: 0)
    private var started = false
    public private(set) var tasksRun = 0

    public init(config: WorkerConfig, context: ZMQContext = .shared, logger: Logger? = nil) {
        self.config = config
        self.context = context
        self.log = logger ?? Logger(label: "kiln.worker")
        intervalMs = Int64(config.heartbeatIntervalMs)
        liveness = Int64(config.heartbeatLiveness)
        backoffMs = config.reconnectInitialMs
        log[metadataKey: "worker"] = "\(config.id)"
        BLAS.threads = max(1, config.threads)
        let log = self.log
        runner = TaskRunner(emit: { [weak self] m in self?.enqueue(m) }, log: { log.warning("\($0)") })
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func enqueue(_ m: Message) { outLock.withLock { outbox.append(m) } }

    @discardableResult
    public func start() -> Thread {
        let t = Thread { [self] in self.run() }
        t.name = "kiln.worker.\(config.id)"
        t.start()
        return t
    }

    /// Says goodbye, stops the loop and the compute thread.
    public func stop() {
        let wait = stopLock.withLock { () -> Bool in stopRequested = true; return started }
        if wait { stopped.wait(); stopped.signal() }  // re-signal: stop() may be called again
        runner.stop()
    }

    /// Makes the loop say goodbye and return soon (safe from any thread).
    public func requestStop() { stopLock.withLock { stopRequested = true } }

    private var shouldStop: Bool { stopLock.withLock { stopRequested } }

    public func run() {
        stopLock.withLock { started = true }
        defer { stopped.signal() }
        while !shouldStop {
            do {
                try connect()
                try serve()
            } catch {
                log.warning("connection: \(error)")
            }
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
        while left > 0 && !shouldStop { Thread.sleep(forTimeInterval: 0.02); left -= 20 }
    }

    private func connect() throws {
        session += 1
        let s = try context.socket(.dealer)
        try s.set([.linger(0), .routingID(Data("\(config.id)#\(session)".utf8)), .maxMessageSize(config.maxMessageBytes),
                   .sendHighWaterMark(0), .receiveHighWaterMark(0)])
        if let server = config.curveServerKey {
            let keys = try config.curveKeys ?? ZMQCurveKeyPair.generate()
            try s.set([.curveServerKey(server), .curvePublicKey(keys.publicKey), .curveSecretKey(keys.secretKey)])
        }
        try s.connect(config.coordinator)
        socket = s
        lastHeardMs = Self.nowMs()
        try sendHello()
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

    private func send(_ m: Message) throws {
        guard let s = socket else { return }
        _ = try s.send(frames: try m.encodeForSocket(limits: config.limits))
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
            let out = outLock.withLock { () -> [Message] in defer { outbox = [] }; return outbox }
            for m in out {
                if case .taskResult(let r)? = m.body {
                    unacked["\(r.taskID)#\(r.attempt)"] = m
                    tasksRun += 1
                }
                try send(m)
            }
            let now = Self.nowMs()
            if now - lastHeardMs > intervalMs * liveness {
                log.warning("coordinator silent", metadata: ["ms": "\(now - lastHeardMs)"])
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
            return
        }
        switch m.body {
        case .workerWelcome(let w)?:
            if w.heartbeatIntervalMs > 0 { intervalMs = Int64(w.heartbeatIntervalMs) }
            if w.heartbeatLiveness > 0 { liveness = Int64(w.heartbeatLiveness) }
            backoffMs = config.reconnectInitialMs
            log.info("welcomed", metadata: ["coordinator": "\(config.coordinator)", "heartbeat_ms": "\(intervalMs)"])
            // Results computed while disconnected: the coordinator may not have them durably yet.
            for (_, r) in unacked.sorted(by: { $0.key < $1.key }) { try? send(r) }
        case .heartbeat?:
            break
        case .taskAssignment(let a)?:
            guard m.tensors.count == 1 else {
                log.warning("assignment \(a.taskID) without its input frame dropped")
                return
            }
            log.debug("task", metadata: ["task": "\(a.taskID)", "attempt": "\(a.attempt)"])
            runner.submit(a, input: m.tensors[0].bytes)
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
}
