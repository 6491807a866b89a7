import CZeroMQ
import Foundation

/// The socket types Kiln uses.
public enum ZMQSocketType: Sendable, CaseIterable {
    case pair, pub, sub, req, rep, dealer, router, pull, push

    var raw: Int32 {
        switch self {
        case .pair: return ZMQ_PAIR
        case .pub: return ZMQ_PUB
        case .sub: return ZMQ_SUB
        case .req: return ZMQ_REQ
        case .rep: return ZMQ_REP
        case .dealer: return ZMQ_DEALER
        case .router: return ZMQ_ROUTER
        case .pull: return ZMQ_PULL
        case .push: return ZMQ_PUSH
        }
    }
}

/// A socket option with its value. Times are milliseconds.
public enum ZMQOption: Sendable {
    /// How long pending outgoing messages are kept after close (0 = drop; -1 = forever).
    case linger(Int32)
    case receiveTimeout(Int32)
    case sendTimeout(Int32)
    case routingID(Data)
    /// Largest inbound message accepted; a peer sending more is disconnected (-1 = no limit).
    case maxMessageSize(Int64)
    case sendHighWaterMark(Int32)
    case receiveHighWaterMark(Int32)
    case subscribe(Data)
    case unsubscribe(Data)
    /// ROUTER: fail with EHOSTUNREACH instead of silently dropping unroutable messages.
    case routerMandatory(Bool)
    /// ZMTP heartbeats: send a PING every `ms`.
    case heartbeatInterval(Int32)
    /// ZMTP heartbeats: the TTL the peer should apply to us.
    case heartbeatTTL(Int32)
    /// ZMTP heartbeats: drop the connection if no traffic for `ms` after a PING.
    case heartbeatTimeout(Int32)
    /// Queue messages only to completed connections.
    case immediate(Bool)
    case reconnectInterval(Int32)
    case reconnectIntervalMax(Int32)
    case curveServer(Bool)
    /// Z85 (40 characters) CURVE public key.
    case curvePublicKey(String)
    /// Z85 (40 characters) CURVE secret key.
    case curveSecretKey(String)
    /// Z85 (40 characters) public key of the server a client connects to.
    case curveServerKey(String)
    case zapDomain(String)
}

/// A socket's readiness, as `zmq_poll` reports it.
public struct ZMQPollEvents: OptionSet, Sendable, Hashable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    public static let pollIn = ZMQPollEvents(rawValue: Int16(ZMQ_POLLIN))
    public static let pollOut = ZMQPollEvents(rawValue: Int16(ZMQ_POLLOUT))
    public static let pollErr = ZMQPollEvents(rawValue: Int16(ZMQ_POLLERR))
}

/// An outgoing frame: copied into libzmq, or handed over without a copy.
public enum ZMQFrame: Sendable {
    /// libzmq copies the bytes (cheap for small frames).
    case copy(Data)
    /// libzmq sends straight from the buffer and releases it when done
    /// (`zmq_msg_init_data` with a free callback). Do not mutate the buffer
    /// after handing it over.
    case zeroCopy(ZMQBuffer)
}

/// Memory that libzmq can send without copying. The bytes are allocated once
/// (64-byte aligned) and freed when the last reference - Swift's or libzmq's -
/// goes away.
// @unchecked: immutable fields; the bytes are written before the buffer is handed over, then only read.
public final class ZMQBuffer: @unchecked Sendable {
    public let count: Int
    public let baseAddress: UnsafeMutableRawPointer

    public init(count: Int) {
        precondition(count >= 0)
        self.count = count
        baseAddress = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
    }

    public convenience init(copying data: Data) {
        self.init(count: data.count)
        data.withUnsafeBytes { src in
            if let s = src.baseAddress { baseAddress.copyMemory(from: s, byteCount: src.count) }
        }
    }

    deinit { baseAddress.deallocate() }

    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: baseAddress, count: count) }

    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(bytes)
    }

    /// A copy of the bytes as Data.
    public var data: Data { Data(bytes: baseAddress, count: count) }
}

/// Frames this size or larger are received without a copy (the Data keeps the
/// libzmq message alive).
let zeroCopyReceiveThreshold = 64 * 1024

/// One libzmq socket. Closed on deinit (or by `close()`).
///
/// Threading: one thread uses a socket at a time (libzmq sockets are not
/// thread-safe). The type is `@unchecked Sendable` so a socket can be created
/// on one thread and handed to another, under that rule.
public final class ZMQSocket: @unchecked Sendable {
    public let context: ZMQContext
    public let type: ZMQSocketType
    private var handle: UnsafeMutableRawPointer?

    init(context: ZMQContext, type: ZMQSocketType) throws {
        guard let h = zmq_socket(context.handle, type.raw) else { throw ZMQError.last("socket") }
        self.context = context
        self.type = type
        self.handle = h
        // Kiln never wants close() to block on undelivered messages.
        try set(.linger(0))
    }

    deinit { close() }

    /// Closes the socket now. Further use throws ENOTSOCK.
    public func close() {
        if let h = handle {
            zmq_close(h)
            handle = nil
        }
    }

    public var isClosed: Bool { handle == nil }

    var raw: UnsafeMutableRawPointer? { handle }

    private func live(_ op: String, endpoint: String? = nil) throws -> UnsafeMutableRawPointer {
        guard let h = handle else { throw ZMQError(code: ENOTSOCK, operation: op, endpoint: endpoint) }
        return h
    }

    // MARK: endpoints

    public func bind(_ endpoint: String) throws { try onEndpoint("bind", endpoint) { zmq_bind($0, $1) } }

    public func connect(_ endpoint: String) throws { try onEndpoint("connect", endpoint) { zmq_connect($0, $1) } }

    public func unbind(_ endpoint: String) throws { try onEndpoint("unbind", endpoint) { zmq_unbind($0, $1) } }

    public func disconnect(_ endpoint: String) throws {
        try onEndpoint("disconnect", endpoint) { zmq_disconnect($0, $1) }
    }

    /// One libzmq call on an endpoint (zmq_bind, zmq_connect...); its failure names both.
    private func onEndpoint(
        _ op: String, _ endpoint: String, _ call: (UnsafeMutableRawPointer, String) -> Int32
    ) throws {
        let h = try live(op, endpoint: endpoint)
        if call(h, endpoint) != 0 { throw ZMQError.last(op, endpoint: endpoint) }
    }

    /// The endpoint last bound (resolves `tcp://127.0.0.1:*` to the real port).
    public var lastEndpoint: String {
        get throws {
            let h = try live("getsockopt(ZMQ_LAST_ENDPOINT)")
            var buf = [CChar](repeating: 0, count: 1024)
            var size = buf.count
            if zmq_getsockopt(h, ZMQ_LAST_ENDPOINT, &buf, &size) != 0 {
                throw ZMQError.last("getsockopt(ZMQ_LAST_ENDPOINT)")
            }
            return String(nulTerminated: buf)
        }
    }

    // MARK: options

    public func set(_ option: ZMQOption) throws {
        switch option {
        case .linger(let v): try setInt(ZMQ_LINGER, v, "ZMQ_LINGER")
        case .receiveTimeout(let v): try setInt(ZMQ_RCVTIMEO, v, "ZMQ_RCVTIMEO")
        case .sendTimeout(let v): try setInt(ZMQ_SNDTIMEO, v, "ZMQ_SNDTIMEO")
        case .routingID(let d): try setBytes(ZMQ_ROUTING_ID, d, "ZMQ_ROUTING_ID")
        case .maxMessageSize(let v):
            var value = v
            try setRaw(ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size, "ZMQ_MAXMSGSIZE")
        case .sendHighWaterMark(let v): try setInt(ZMQ_SNDHWM, v, "ZMQ_SNDHWM")
        case .receiveHighWaterMark(let v): try setInt(ZMQ_RCVHWM, v, "ZMQ_RCVHWM")
        case .subscribe(let d): try setBytes(ZMQ_SUBSCRIBE, d, "ZMQ_SUBSCRIBE")
        case .unsubscribe(let d): try setBytes(ZMQ_UNSUBSCRIBE, d, "ZMQ_UNSUBSCRIBE")
        case .routerMandatory(let b): try setInt(ZMQ_ROUTER_MANDATORY, b ? 1 : 0, "ZMQ_ROUTER_MANDATORY")
        case .heartbeatInterval(let v): try setInt(ZMQ_HEARTBEAT_IVL, v, "ZMQ_HEARTBEAT_IVL")
        case .heartbeatTTL(let v): try setInt(ZMQ_HEARTBEAT_TTL, v, "ZMQ_HEARTBEAT_TTL")
        case .heartbeatTimeout(let v): try setInt(ZMQ_HEARTBEAT_TIMEOUT, v, "ZMQ_HEARTBEAT_TIMEOUT")
        case .immediate(let b): try setInt(ZMQ_IMMEDIATE, b ? 1 : 0, "ZMQ_IMMEDIATE")
        case .reconnectInterval(let v): try setInt(ZMQ_RECONNECT_IVL, v, "ZMQ_RECONNECT_IVL")
        case .reconnectIntervalMax(let v): try setInt(ZMQ_RECONNECT_IVL_MAX, v, "ZMQ_RECONNECT_IVL_MAX")
        case .curveServer(let b): try setInt(ZMQ_CURVE_SERVER, b ? 1 : 0, "ZMQ_CURVE_SERVER")
        case .curvePublicKey(let k): try setKey(ZMQ_CURVE_PUBLICKEY, k, "ZMQ_CURVE_PUBLICKEY")
        case .curveSecretKey(let k): try setKey(ZMQ_CURVE_SECRETKEY, k, "ZMQ_CURVE_SECRETKEY")
        case .curveServerKey(let k): try setKey(ZMQ_CURVE_SERVERKEY, k, "ZMQ_CURVE_SERVERKEY")
        case .zapDomain(let s): try setBytes(ZMQ_ZAP_DOMAIN, Data(s.utf8), "ZMQ_ZAP_DOMAIN")
        }
    }

    /// Sets several options in order.
    public func set(_ options: [ZMQOption]) throws {
        for o in options { try set(o) }
    }

    private func setRaw(_ opt: Int32, _ value: UnsafeRawPointer?, _ size: Int, _ name: String) throws {
        let h = try live("setsockopt(\(name))")
        if zmq_setsockopt(h, opt, value, size) != 0 { throw ZMQError.last("setsockopt(\(name))") }
    }

    private func setInt(_ opt: Int32, _ v: Int32, _ name: String) throws {
        var value = v
        try setRaw(opt, &value, MemoryLayout<Int32>.size, name)
    }

    private func setBytes(_ opt: Int32, _ d: Data, _ name: String) throws {
        try d.withUnsafeBytes { try setRaw(opt, $0.baseAddress, $0.count, name) }
    }

    private func setKey(_ opt: Int32, _ z85: String, _ name: String) throws {
        guard z85.utf8.count == 40 else {
            throw ZMQError(code: EINVAL, operation: "setsockopt(\(name)): a Z85 key has 40 characters")
        }
        try setBytes(opt, Data(z85.utf8), name)
    }

    /// ZMQ_RCVMORE after a receive.
    var hasMore: Bool {
        guard let h = handle else { return false }
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        return zmq_getsockopt(h, ZMQ_RCVMORE, &v, &size) == 0 && v != 0
    }

    /// The socket's current readiness without waiting (ZMQ_EVENTS).
    public var events: ZMQPollEvents {
        get throws {
            let h = try live("getsockopt(ZMQ_EVENTS)")
            var v: Int32 = 0
            var size = MemoryLayout<Int32>.size
            if zmq_getsockopt(h, ZMQ_EVENTS, &v, &size) != 0 { throw ZMQError.last("getsockopt(ZMQ_EVENTS)") }
            return ZMQPollEvents(rawValue: Int16(truncatingIfNeeded: v))
        }
    }

    // MARK: sending

    /// Sends one multipart message, copying each frame.
    /// - Returns: false if the message could not be queued (`dontWait` and the
    ///   high-water mark was reached, or the send timeout expired).
    @discardableResult
    public func send(_ frames: [Data], dontWait: Bool = false) throws -> Bool {
        try send(frames: frames.map { ZMQFrame.copy($0) }, dontWait: dontWait)
    }

    /// Sends one single-frame message.
    @discardableResult
    public func send(_ frame: Data, dontWait: Bool = false) throws -> Bool {
        try send(frames: [.copy(frame)], dontWait: dontWait)
    }

    /// Sends one multipart message; `.zeroCopy` frames are not copied.
    /// libzmq queues a multipart message atomically: if the first frame is
    /// accepted, all are.
    @discardableResult
    public func send(frames: [ZMQFrame], dontWait: Bool = false) throws -> Bool {
        let h = try live("send")
        precondition(!frames.isEmpty, "ZMQSocket.send: a message has at least one frame")
        for (i, frame) in frames.enumerated() {
            var flags: Int32 = i < frames.count - 1 ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            var msg = zmq_msg_t()
            switch frame {
            case .copy(let d):
                guard zmq_msg_init_size(&msg, d.count) == 0 else { throw ZMQError.last("msg_init_size") }
                if d.count > 0 {
                    d.withUnsafeBytes { src in
                        zmq_msg_data(&msg).copyMemory(from: src.baseAddress!, byteCount: src.count)
                    }
                }
            case .zeroCopy(let buffer):
                let hint = Unmanaged.passRetained(buffer).toOpaque()
                let rc = zmq_msg_init_data(
                    &msg, buffer.baseAddress, buffer.count,
                    { _, hint in
                        if let hint { Unmanaged<ZMQBuffer>.fromOpaque(hint).release() }
                    }, hint)
                guard rc == 0 else {
                    Unmanaged<ZMQBuffer>.fromOpaque(hint).release()
                    throw ZMQError.last("msg_init_data")
                }
            }
            while true {
                if zmq_msg_send(&msg, h, flags) >= 0 { break }
                let err = zmq_errno()
                if err == EINTR { continue }
                zmq_msg_close(&msg)
                if err == EAGAIN && i == 0 { return false }
                throw ZMQError(code: err, operation: "send")
            }
        }
        return true
    }

    // MARK: receiving

    /// Receives one multipart message.
    /// - Parameter timeout: milliseconds to wait; nil uses the socket's
    ///   receive timeout (blocking unless `.receiveTimeout` was set), 0 does
    ///   not wait.
    /// - Returns: the frames, or nil if nothing arrived in time.
    public func receiveMultipart(timeout: Int32? = nil) throws -> [Data]? {
        let h = try live("receive")
        var flags: Int32 = 0
        if let timeout {
            guard try poll(.pollIn, timeout: timeout) else { return nil }
            flags = ZMQ_DONTWAIT
        }
        var frames: [Data] = []
        while true {
            let msg = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            zmq_msg_init(msg)
            var rc: Int32
            repeat { rc = zmq_msg_recv(msg, h, flags) } while rc < 0 && zmq_errno() == EINTR
            if rc < 0 {
                let err = zmq_errno()
                zmq_msg_close(msg)
                msg.deallocate()
                if err == EAGAIN && frames.isEmpty { return nil }
                throw ZMQError(code: err, operation: "receive")
            }
            let more = zmq_msg_more(msg) != 0
            let size = zmq_msg_size(msg)
            if size >= zeroCopyReceiveThreshold {
                // Keep the libzmq message alive for as long as the Data is.
                frames.append(
                    Data(
                        bytesNoCopy: zmq_msg_data(msg), count: size,
                        deallocator: .custom({ _, _ in
                            zmq_msg_close(msg)
                            msg.deallocate()
                        })))
            } else {
                frames.append(size == 0 ? Data() : Data(bytes: zmq_msg_data(msg), count: size))
                zmq_msg_close(msg)
                msg.deallocate()
            }
            if !more { return frames }
            flags = 0  // the rest of a multipart message is already here
        }
    }

    /// Receives one message and returns its first frame (for single-frame protocols).
    public func receive(timeout: Int32? = nil) throws -> Data? {
        try receiveMultipart(timeout: timeout)?.first
    }

    /// Waits up to `timeout` ms (-1 = forever) for `events` on this socket alone.
    public func poll(_ events: ZMQPollEvents = .pollIn, timeout: Int32) throws -> Bool {
        let h = try live("poll")
        var item = zmq_pollitem_t(socket: h, fd: 0, events: events.rawValue, revents: 0)
        while true {
            let rc = zmq_poll(&item, 1, Int(timeout))
            if rc >= 0 { return rc > 0 && (item.revents & events.rawValue) != 0 }
            if zmq_errno() == EINTR { continue }
            throw ZMQError.last("poll")
        }
    }

    // MARK: monitoring

    /// Publishes this socket's events on a PAIR endpoint (inproc://...).
    /// Connect a `.pair` socket there and read them with `ZMQMonitorEvent.parse`.
    public func monitor(_ endpoint: String, events: Int32 = ZMQ_EVENT_ALL) throws {
        let h = try live("socket_monitor", endpoint: endpoint)
        if zmq_socket_monitor(h, endpoint, events) != 0 { throw ZMQError.last("socket_monitor", endpoint: endpoint) }
    }
}

/// One event from a socket monitor.
public struct ZMQMonitorEvent: Sendable, Equatable {
    public let event: UInt16
    public let value: UInt32
    public let endpoint: String

    public init(event: UInt16, value: UInt32, endpoint: String) {
        self.event = event
        self.value = value
        self.endpoint = endpoint
    }

    public static let connected = UInt16(ZMQ_EVENT_CONNECTED)
    public static let connectDelayed = UInt16(ZMQ_EVENT_CONNECT_DELAYED)
    public static let connectRetried = UInt16(ZMQ_EVENT_CONNECT_RETRIED)
    public static let accepted = UInt16(ZMQ_EVENT_ACCEPTED)
    public static let disconnected = UInt16(ZMQ_EVENT_DISCONNECTED)
    public static let handshakeSucceeded = UInt16(ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
    public static let handshakeFailedAuth = UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
    public static let handshakeFailedProtocol = UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
    public static let handshakeFailedNoDetail = UInt16(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)

    /// Parses the two frames a monitor socket sends; nil if they are not one.
    public static func parse(_ frames: [Data]) -> ZMQMonitorEvent? {
        guard frames.count == 2, frames[0].count == 6 else { return nil }
        let b = [UInt8](frames[0])
        let event = UInt16(b[0]) | UInt16(b[1]) << 8
        let value = UInt32(b[2]) | UInt32(b[3]) << 8 | UInt32(b[4]) << 16 | UInt32(b[5]) << 24
        return ZMQMonitorEvent(event: event, value: value, endpoint: String(decoding: frames[1], as: UTF8.self))
    }
}
