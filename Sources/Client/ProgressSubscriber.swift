import Foundation
import KilnProtocol
import ZeroMQ

/// The Clone pattern's client: a SUB socket on the coordinator's progress feed
/// plus snapshot requests over the coordinator client's DEALER, both polled on
/// the caller's thread. Ordering is CloneSequencer's; this class moves bytes.
public final class ProgressSubscriber {
    public enum Event: Equatable, Sendable {
        case snapshot(Kiln_V1_SnapshotResponse)
        case update(Kiln_V1_ProgressUpdate)
    }

    public let publishEndpoint: String
    public let jobID: String?
    public let client: CoordinatorClient
    /// Without any feed traffic for this long, a fresh snapshot is asked for:
    /// it catches an update lost with nothing after it, and a dead coordinator.
    public var idleResyncMs: Int64 = 5000
    /// Feed messages that failed validation and were dropped (with the last reason).
    public private(set) var droppedMessages = 0
    public private(set) var lastDropReason: String?

    let sub: ZMQSocket
    private var sequencer: CloneSequencer
    private var pendingSnapshot: (id: String, deadlineMs: Int64)?
    private var lastActivityMs = Clock.nowMs

    /// Subscribes at once (before any snapshot is requested, as the pattern requires).
    /// Every topic is subscribed so the global sequence numbers reveal losses;
    /// updates of other jobs are filtered here.
    public init(client: CoordinatorClient, publishEndpoint: String, jobID: String? = nil) throws {
        self.client = client
        self.publishEndpoint = publishEndpoint
        self.jobID = jobID
        sequencer = CloneSequencer(jobID: jobID)
        sub = try client.context.socket(.sub)
        try sub.set([.maxMessageSize(CoordinatorClient.maxReplyBytes), .receiveHighWaterMark(100_000)])
        try client.security?.apply(to: sub)
        try sub.set(.subscribe(Data()))
        do { try sub.connect(publishEndpoint) } catch let e as ZMQError {
            throw ClientError.badEndpoint(publishEndpoint, reason: e.message)
        }
    }

    deinit { sub.close() }

    /// Requests the first snapshot and waits for it (updates meanwhile are
    /// buffered). Returns the snapshot followed by the buffered updates newer than it.
    public func start() throws -> [Event] {
        requestSnapshot()
        while true {
            let events = try next(timeoutMs: 100)
            if events.contains(where: { if case .snapshot = $0 { return true } else { return false } }) {
                return events
            }
        }
    }

    /// Waits up to `timeoutMs` for feed traffic or a snapshot reply; returns the
    /// events to apply, in order (empty if nothing new). Throws if a snapshot
    /// request gets no answer within the client's timeout.
    public func next(timeoutMs: Int) throws -> [Event] {
        let now = Clock.nowMs
        if pendingSnapshot == nil && (sequencer.needsSnapshot || now - lastActivityMs >= idleResyncMs) {
            requestSnapshot()
        }
        if let p = pendingSnapshot, now >= p.deadlineMs {
            throw client.noAnswer()
        }
        var wait = Int64(timeoutMs)
        if let p = pendingSnapshot { wait = min(wait, p.deadlineMs - now) }
        let poller = ZMQPoller()
        poller.register(sub)
        poller.register(client.socket)
        _ = try poller.poll(timeout: Int32(clamping: max(wait, 0)))

        var events: [Event] = []
        while let frames = try sub.receiveMultipart(timeout: 0) {
            lastActivityMs = Clock.nowMs
            guard let update = decodeUpdate(frames) else { continue }
            events += sequencer.receive(update).map(Event.update)
        }
        while let message = try client.receiveOne(timeoutMs: 0) {
            guard let p = pendingSnapshot, message.correlationID == p.id, let body = message.body else { continue }
            let snapshot = try client.unpack(body, expecting: "snapshot_response", jobID: jobID) {
                if case .snapshotResponse(let v) = $0 { return v } else { return nil }
            }
            if let jobID, !snapshot.jobs.contains(where: { $0.jobID == jobID }) {
                throw ClientError.unknownJob(endpoint: client.endpoint, jobID: jobID)
            }
            pendingSnapshot = nil
            lastActivityMs = Clock.nowMs
            // The snapshot's state comes first; the buffered updates newer than it after.
            events.append(.snapshot(snapshot))
            events += sequencer.snapshotReceived(sequence: snapshot.sequence).map(Event.update)
        }
        return events
    }

    private func requestSnapshot() {
        sequencer.snapshotRequested()
        do {
            let id = try client.sendRequest(.snapshotRequest(CoordinatorClient.snapshotRequest(jobID ?? "")))
            pendingSnapshot = (id, Clock.nowMs + Int64(client.timeoutMs))
        } catch {
            // The send queue is full (no coordinator): let the deadline report it.
            pendingSnapshot = ("", Clock.nowMs + Int64(client.timeoutMs))
        }
    }

    /// [topic][envelope][tensor frames...] -> the update, or nil (counted) if invalid.
    private func decodeUpdate(_ frames: [Data]) -> Kiln_V1_ProgressUpdate? {
        guard frames.count >= 2 else { return drop("a feed message has a topic frame and an envelope") }
        do {
            let message = try Message.decode(Array(frames.dropFirst()))
            guard case .progressUpdate(let u)? = message.body else {
                return drop("\(message.body.map(CoordinatorClient.kind(of:)) ?? "nothing") on the progress feed")
            }
            return u
        } catch {
            return drop("\(error)")
        }
    }

    private func drop(_ reason: String) -> Kiln_V1_ProgressUpdate? {
        droppedMessages += 1
        lastDropReason = reason
        return nil
    }
}
