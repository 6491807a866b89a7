import Client
import Foundation
import KilnProtocol
import Logging
import Synchronization
import ZeroMQ

/// The dashboard's view of the coordinator: an ordinary client of it, on its own thread.
/// It subscribes to the progress feed (the PUB socket `kiln watch` reads) with the Clone
/// pattern's snapshot, asks for the workers once a second, and hands every change to the
/// page's event streams as Server-Sent Events, in feed order.
public final class DashboardFeed: Sendable {
    /// How to reach the coordinator as a client.
    public struct Connection: Sendable {
        public var endpoint: String
        public var publishEndpoint: String
        public var security: ClientSecurity?
        public var token: String?
        public var timeoutMs = 5000
        /// inproc:// endpoints (`kiln run --http`) are reached in the coordinator's own context.
        public var context: ZMQContext
        public init(
            endpoint: String, publishEndpoint: String, security: ClientSecurity?, token: String?,
            context: ZMQContext = .shared
        ) {
            self.endpoint = endpoint
            self.publishEndpoint = publishEndpoint
            self.security = security
            self.token = token
            self.context = context
        }
    }

    private struct Shared {
        var state = DashboardState()
        var streams: [UUID: AsyncStream<String>.Continuation] = [:]
        /// Stopped: no new stream (a graceful shutdown waits for open ones).
        var closed = false
    }

    let log: Logger
    private let shared = Mutex(Shared())
    private let stopping = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// Most pages following at once (each holds a stream).
    static let maxStreams = 64

    public init(logger: Logger) { log = logger }

    /// Follows the coordinator at `connection` until `stop`.
    public func start(_ connection: Connection) {
        let t = Thread { [self] in
            self.run(connection)
            self.finished.signal()
        }
        t.name = "kiln.dashboard.feed"
        started.store(true, ordering: .releasing)
        t.start()
    }

    public func stop() {
        stopping.store(true, ordering: .releasing)
        if started.exchange(false, ordering: .acquiringAndReleasing) { finished.wait() }
        // Finished outside the lock: finishing runs the stream's onTermination, which takes it.
        let streams = shared.withLock { s in
            defer {
                s.streams = [:]
                s.closed = true
            }
            return Array(s.streams.values)
        }
        for c in streams { c.finish() }
    }

    /// Waits until the state reflects update `sequence` (or `timeout` passes); true if it does.
    public func waitFor(sequence: UInt64, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if shared.withLock({ $0.state.sequence >= sequence }) { return true }
            usleep(20_000)
        }
        return false
    }

    /// Stops following and keeps the last state, which the page goes on showing with `note`
    /// (`kiln run --http` after its in-process coordinator stopped).
    public func finish(note: String) {
        stopping.store(true, ordering: .releasing)
        if started.exchange(false, ordering: .acquiringAndReleasing) { finished.wait() }
        stopping.store(false, ordering: .releasing)
        change { s in
            s.feedError = nil
            return [Self.event("ended", DashboardState.quoted(note))]
        }
    }

    /// The whole state, as /api/state serves it.
    public func stateJSON() -> String { shared.withLock { $0.state.jsonText(nowUnixMs: WallClock.nowUnixMs) } }

    /// A page's event stream: the whole state first, then each change. nil: too many pages
    /// follow, or the feed has stopped (the server is shutting down).
    func subscribe() -> (id: UUID, events: AsyncStream<String>)? {
        let id = UUID()
        let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(10_000))
        let admitted = shared.withLock { s -> Bool in
            guard !s.closed, s.streams.count < Self.maxStreams else { return false }
            continuation.yield(Self.event("state", s.state.jsonText(nowUnixMs: WallClock.nowUnixMs)))
            s.streams[id] = continuation
            return true
        }
        guard admitted else { return nil }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
        return (id, stream)
    }

    func unsubscribe(_ id: UUID) { _ = shared.withLock { $0.streams.removeValue(forKey: id) } }

    /// An SSE event; `data` is one line of JSON.
    static func event(_ name: String, _ data: String, id: UInt64? = nil) -> String {
        "event: \(name)\n" + (id.map { "id: \($0)\n" } ?? "") + "data: \(data)\n\n"
    }

    /// Changes the state and sends the events it makes, under one lock: a page that
    /// subscribes between two changes sees the first in its state and the second as an event.
    private func change(_ f: (inout DashboardState) -> [String]) {
        shared.withLock { s in
            for e in f(&s.state) {
                for c in s.streams.values { c.yield(e) }
            }
        }
    }

    private var shouldStop: Bool { stopping.load(ordering: .acquiring) }

    private func run(_ connection: Connection) {
        var backoffMs: UInt32 = 250
        while !shouldStop {
            do {
                try follow(connection)
            } catch {
                let why = "\(error)"
                log.warning("dashboard feed: \(why)")
                change { s in
                    s.feedError = why
                    return [Self.event("feed_error", DashboardState.quoted(why))]
                }
                let until = Date().addingTimeInterval(Double(backoffMs) / 1000)
                while !shouldStop && Date() < until { usleep(50_000) }
                backoffMs = min(backoffMs * 2, 5000)
            }
        }
    }

    /// One connection: snapshot, updates, workers, until stop or an error.
    private func follow(_ c: Connection) throws {
        let client = try CoordinatorClient(
            endpoint: c.endpoint, timeoutMs: c.timeoutMs, security: c.security, token: c.token, context: c.context)
        let subscriber = try ProgressSubscriber(client: client, publishEndpoint: c.publishEndpoint)
        apply(try subscriber.start())
        var workersAtMs: Int64 = 0
        while !shouldStop {
            apply(try subscriber.next(timeoutMs: 200))
            let now = WallClock.nowUnixMs
            if now - workersAtMs >= 1000 {
                workersAtMs = now
                let workers = try client.workers()
                change { s in
                    s.workers = workers
                    s.feedError = nil
                    return [Self.event("workers", DashboardState.workersJSON(workers))]
                }
            }
        }
    }

    private func apply(_ events: [ProgressSubscriber.Event]) {
        guard !events.isEmpty else { return }
        change { s in
            var out: [String] = []
            for e in events {
                switch e {
                case .snapshot(let snap):
                    // A new snapshot (the first, or after a gap in the feed): pages start over from it.
                    s.apply(snap)
                    s.feedError = nil
                    out.append(Self.event("state", s.jsonText(nowUnixMs: WallClock.nowUnixMs)))
                case .update(let u):
                    s.apply(u)
                    if let json = try? u.jsonString(options: DashboardState.json) {
                        out.append(Self.event("update", json, id: u.sequence))
                    }
                }
            }
            return out
        }
    }
}
