import CZeroMQ
import Foundation

/// `zmq_poll` over several sockets. Build it once per loop, then call
/// `poll(timeout:)` repeatedly. Same threading rule as the sockets it holds.
public final class ZMQPoller {
    public private(set) var sockets: [ZMQSocket] = []
    private var interest: [ZMQPollEvents] = []

    public init() {}

    /// Adds a socket; returns its index in `poll`'s result.
    @discardableResult
    public func register(_ socket: ZMQSocket, events: ZMQPollEvents = .pollIn) -> Int {
        sockets.append(socket)
        interest.append(events)
        return sockets.count - 1
    }

    /// Waits up to `timeout` ms (-1 = forever, 0 = just look) for any registered
    /// event. Returns each socket's ready events, in registration order (empty
    /// sets on timeout).
    public func poll(timeout: Int32) throws -> [ZMQPollEvents] {
        var items = [zmq_pollitem_t]()
        items.reserveCapacity(sockets.count)
        for (s, ev) in zip(sockets, interest) {
            guard let raw = s.raw else { throw ZMQError(code: ENOTSOCK, operation: "poll") }
            items.append(zmq_pollitem_t(socket: raw, fd: 0, events: ev.rawValue, revents: 0))
        }
        while true {
            let rc = items.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, Int32($0.count), Int(timeout)) }
            if rc >= 0 { return items.map { ZMQPollEvents(rawValue: $0.revents) } }
            if zmq_errno() == EINTR { continue }
            throw ZMQError.last("poll")
        }
    }

    /// The registered sockets that are readable within `timeout` ms.
    public func readable(timeout: Int32) throws -> [ZMQSocket] {
        let ready = try poll(timeout: timeout)
        return zip(sockets, ready).filter { $0.1.contains(.pollIn) }.map { $0.0 }
    }
}
