import Foundation
import KilnProtocol
import ZeroMQ

/// Requests to a coordinator over one DEALER socket connected to its ROUTER.
///
/// Every request carries a fresh correlation id and only the reply with that id
/// is accepted: a late reply to an earlier request that timed out is dropped.
/// One thread uses a client at a time (it owns a libzmq socket).
public final class CoordinatorClient {
    public let endpoint: String
    /// How long a request waits for its reply.
    public let timeoutMs: Int
    public let security: ClientSecurity?
    /// The coordinator's token (a coordinator without CURVE requires it on every request).
    public let token: String?
    let context: ZMQContext
    let socket: ZMQSocket
    /// The socket's handshake events: why a request got no answer.
    let watch: HandshakeWatch
    /// Unique per client so ids never collide between clients of one coordinator.
    private let idPrefix = UUID().uuidString.prefix(8).lowercased()
    private var nextID: UInt64 = 0

    /// Replies larger than this are refused by libzmq before they reach us.
    static let maxReplyBytes: Int64 = 64 << 20

    public init(
        endpoint: String, timeoutMs: Int = 5000, security: ClientSecurity? = nil, token: String? = nil,
        context: ZMQContext = .shared
    ) throws {
        guard timeoutMs > 0 else { throw ClientError.badEndpoint(endpoint, reason: "timeout must be positive") }
        self.endpoint = endpoint
        self.timeoutMs = timeoutMs
        self.security = security
        self.token = token
        self.context = context
        socket = try context.socket(.dealer)
        try socket.set([.maxMessageSize(Self.maxReplyBytes), .sendTimeout(Int32(clamping: timeoutMs))])
        try security?.apply(to: socket)
        watch = try HandshakeWatch(socket)
        do { try socket.connect(endpoint) } catch let e as ZMQError {
            throw ClientError.badEndpoint(endpoint, reason: e.message)
        }
    }

    deinit {
        watch.close()
        socket.close()
    }

    // MARK: requests

    public func submit(
        _ spec: Kiln_V1_JobSpec, clientToken: String = UUID().uuidString
    ) throws -> Kiln_V1_SubmitResponse {
        var r = Kiln_V1_SubmitRequest()
        r.spec = spec
        r.clientToken = clientToken
        return try call(.submitRequest(r), expecting: "submit_response") {
            if case .submitResponse(let v) = $0 { return v } else { return nil }
        }
    }

    public func status(jobID: String) throws -> Kiln_V1_JobStatus {
        var r = Kiln_V1_StatusRequest()
        r.jobID = jobID
        return try call(.statusRequest(r), expecting: "status_response", jobID: jobID) {
            if case .statusResponse(let v) = $0 { return v.status } else { return nil }
        }
    }

    public func cancel(jobID: String, reason: String = "") throws -> Kiln_V1_CancelResponse {
        var r = Kiln_V1_CancelRequest()
        r.jobID = jobID
        r.reason = reason
        return try call(.cancelRequest(r), expecting: "cancel_response", jobID: jobID) {
            if case .cancelResponse(let v) = $0 { return v } else { return nil }
        }
    }

    public func workers() throws -> [Kiln_V1_WorkerInfo] {
        try call(.listWorkersRequest(Kiln_V1_ListWorkersRequest()), expecting: "list_workers_response") {
            if case .listWorkersResponse(let v) = $0 { return v.workers } else { return nil }
        }
    }

    /// Every job's status (jobID empty) or one job's, with the sequence number
    /// of the last progress update it reflects.
    public func snapshot(jobID: String = "") throws -> Kiln_V1_SnapshotResponse {
        let id = try sendRequest(.snapshotRequest(Self.snapshotRequest(jobID)))
        guard let snapshot = try awaitSnapshot(correlationID: id, jobID: jobID, timeoutMs: timeoutMs) else {
            throw noAnswer()
        }
        return snapshot
    }

    // MARK: plumbing (also used by ProgressSubscriber, which polls this socket beside its SUB)

    static func snapshotRequest(_ jobID: String) -> Kiln_V1_SnapshotRequest {
        var r = Kiln_V1_SnapshotRequest()
        r.jobID = jobID
        return r
    }

    func call<R>(
        _ body: Kiln_V1_Envelope.OneOf_Body, expecting: String, jobID: String? = nil,
        _ extract: (Kiln_V1_Envelope.OneOf_Body) -> R?
    ) throws -> R {
        let id = try sendRequest(body)
        guard let reply = try receiveReply(correlationID: id, timeoutMs: timeoutMs) else {
            throw noAnswer()
        }
        return try unpack(reply, expecting: expecting, jobID: jobID, extract)
    }

    func unpack<R>(
        _ reply: Kiln_V1_Envelope.OneOf_Body, expecting: String, jobID: String?,
        _ extract: (Kiln_V1_Envelope.OneOf_Body) -> R?
    ) throws -> R {
        if case .error(let e) = reply {
            if e.code == .unknownJob, let jobID, !jobID.isEmpty {
                throw ClientError.unknownJob(endpoint: endpoint, jobID: jobID)
            }
            throw ClientError.coordinator(endpoint: endpoint, error: e)
        }
        guard let value = extract(reply) else {
            throw ClientError.unexpectedReply(endpoint: endpoint, expected: expecting, got: Self.kind(of: reply))
        }
        return value
    }

    /// The snapshot reply to `correlationID`, nil on timeout.
    func awaitSnapshot(correlationID: String, jobID: String, timeoutMs: Int) throws -> Kiln_V1_SnapshotResponse? {
        guard let reply = try receiveReply(correlationID: correlationID, timeoutMs: timeoutMs) else { return nil }
        return try unpack(reply, expecting: "snapshot_response", jobID: jobID) {
            if case .snapshotResponse(let v) = $0 { return v } else { return nil }
        }
    }

    /// Sends a request and returns its correlation id.
    func sendRequest(_ body: Kiln_V1_Envelope.OneOf_Body) throws -> String {
        nextID += 1
        let id = "\(idPrefix)-\(nextID)"
        let sent: Bool
        var message = Message(body, correlationID: id)
        if let token { message.envelope.authToken = token }
        do { sent = try socket.send(message) } catch let e as ZMQError {
            if e.isAgain { throw noAnswer() }
            throw e
        }
        guard sent else { throw noAnswer() }
        return id
    }

    /// Why nothing came back, from the socket's handshake events: a refused key, nobody
    /// listening, a failed handshake, or (handshake done) a coordinator that is slow or stuck.
    func noAnswer() -> ClientError {
        let verdict = watch.update()
        if let hint = verdict.hint(curve: security != nil) {
            return .handshakeFailed(endpoint: endpoint, hint: hint)
        }
        switch verdict {
        case .refused:
            return .refusedKey(
                endpoint: endpoint, publicKey: security?.keys.publicKey ?? "",
                ephemeral: security?.ephemeral ?? false)
        case .unreachable:
            return .unreachable(endpoint: endpoint)
        default:
            return .noAnswer(endpoint: endpoint, timeoutMs: timeoutMs)
        }
    }

    /// Waits for the reply carrying `correlationID`, dropping stale replies to
    /// earlier requests. nil if none arrives within `timeoutMs`.
    func receiveReply(correlationID: String, timeoutMs: Int) throws -> Kiln_V1_Envelope.OneOf_Body? {
        let deadline = Clock.nowMs + Int64(timeoutMs)
        while true {
            let left = deadline - Clock.nowMs
            guard left > 0 else { return nil }
            // In slices, so a refused key ends the wait at once instead of at the deadline.
            guard let message = try receiveOne(timeoutMs: min(left, 100)) else {
                if case .refused = watch.update() { throw noAnswer() }
                continue
            }
            if message.correlationID == correlationID, let body = message.body { return body }
        }
    }

    /// One decoded message from the socket if one arrives within `timeoutMs`.
    func receiveOne(timeoutMs: Int64) throws -> Message? {
        guard var frames = try socket.receiveMultipart(timeout: Int32(clamping: max(timeoutMs, 0))) else { return nil }
        // Tolerate a REQ-style empty delimiter in front of the envelope.
        if frames.count > 1, frames[0].isEmpty { frames.removeFirst() }
        do {
            return try Message.decode(frames)
        } catch let e as ProtocolError {
            throw ClientError.malformedReply(endpoint: endpoint, reason: e.description)
        }
    }

    /// The oneof case name, for error messages ("statusResponse").
    static func kind(of body: Kiln_V1_Envelope.OneOf_Body) -> String {
        String(String(describing: body).prefix { $0 != "(" })
    }
}

/// Monotonic milliseconds (for deadlines; never compared with wall-clock time).
enum Clock {
    static var nowMs: Int64 { Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000) }
}
