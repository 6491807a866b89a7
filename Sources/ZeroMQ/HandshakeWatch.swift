import CZeroMQ
import Foundation
import Synchronization

/// What a connecting socket's monitor events say about its peer, so a client or
/// worker that gets no answer can tell "refused this key" from "nobody there".
public enum HandshakeVerdict: Equatable, Sendable {
    /// No event yet.
    case unknown
    /// A ZMTP handshake completed (the peer let us in).
    case succeeded
    /// The peer's ZAP handler denied us (CURVE key not allowed); `status` is its ZAP code (400).
    case refused(status: UInt32)
    /// The handshake broke off: mechanism mismatch (CURVE against plain), bad crypto, ...
    case protocolFailure(code: UInt32)
    /// TCP connected but no handshake completed (e.g. a wrong server key: a CURVE server
    /// drops a HELLO it cannot decrypt without a word).
    case noHandshake
    /// Nothing accepts the connection (refused or retried).
    case unreachable

    /// `protocolFailure` codes worth explaining: CURVE against plain, keys that do not match.
    public static let mechanismMismatch = UInt32(ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
    public static let cryptographic = UInt32(ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)

    /// What to check after a failed handshake (`curve`: this side uses CURVE); nil for
    /// verdicts that are not handshake failures.
    public func hint(curve: Bool) -> String? {
        switch self {
        case .protocolFailure(let code) where code == Self.mechanismMismatch:
            return curve
                ? "it does not use CURVE; drop --curve-server-key and --curve-secret"
                : "it requires CURVE; pass --curve-server-key (its public key) and --curve-secret (this side's key)"
        case .protocolFailure(let code) where code == Self.cryptographic:
            return "the CURVE keys do not match; check that --curve-server-key holds the coordinator's public key"
        case .protocolFailure(let code):
            return String(
                format: "protocol error 0x%08x; check that both ends run the same kiln and CURVE settings", code)
        case .noHandshake where curve:
            return "check that --curve-server-key holds the coordinator's public key (a CURVE server drops a "
                + "handshake it cannot decrypt)"
        default:
            return nil
        }
    }
}

/// The monitor events of one socket folded into a verdict. A pure state machine
/// (tested without a network); `HandshakeWatch` feeds it from the socket.
public struct HandshakeState: Sendable, Equatable {
    public private(set) var connects = 0
    public private(set) var retries = 0
    public private(set) var succeeded = 0
    public private(set) var authFailures = 0
    public private(set) var protocolFailures = 0
    /// The latest handshake outcome; a later success overrides an earlier failure.
    public private(set) var last: HandshakeVerdict = .unknown

    public init() {}

    public mutating func apply(_ e: ZMQMonitorEvent) {
        switch e.event {
        case ZMQMonitorEvent.connected:
            connects += 1
        case ZMQMonitorEvent.connectRetried:
            retries += 1
        case ZMQMonitorEvent.handshakeSucceeded:
            succeeded += 1
            last = .succeeded
        case ZMQMonitorEvent.handshakeFailedAuth:
            authFailures += 1
            last = .refused(status: e.value)
        case ZMQMonitorEvent.handshakeFailedProtocol, ZMQMonitorEvent.handshakeFailedNoDetail:
            protocolFailures += 1
            last = .protocolFailure(code: e.value)
        default:
            break
        }
    }

    public var verdict: HandshakeVerdict {
        if last != .unknown { return last }
        if connects > 0 { return .noHandshake }
        if retries > 0 { return .unreachable }
        return .unknown
    }
}

/// Watches a socket's connection and handshake events (`zmq_socket_monitor` into an
/// inproc PAIR). Create it before the socket connects; call `update()` from the thread
/// that uses the socket (same rule as sockets: one thread at a time).
// @unchecked: `pair` is used by one thread at a time (the socket rule); the state is under a Mutex.
public final class HandshakeWatch: @unchecked Sendable {
    private let current = Mutex(HandshakeState())
    public var state: HandshakeState { current.withLock { $0 } }
    private let pair: ZMQSocket

    static let events =
        ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED
        | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
        | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL

    public init(_ socket: ZMQSocket) throws {
        let endpoint = "inproc://kiln.monitor.\(UUID().uuidString)"
        try socket.monitor(endpoint, events: Self.events)
        pair = try socket.context.socket(.pair)
        try pair.connect(endpoint)
    }

    deinit { pair.close() }

    /// Reads the events queued so far (never waits).
    @discardableResult
    public func update() -> HandshakeVerdict {
        while let frames = try? pair.receiveMultipart(timeout: 0) {
            if let e = ZMQMonitorEvent.parse(frames) { current.withLock { $0.apply(e) } }
        }
        return state.verdict
    }

    public var verdict: HandshakeVerdict { state.verdict }

    public func close() { pair.close() }
}
