// ZeroMQ layer: a small Swift wrapper over libzmq (see docs/ARCHITECTURE.md).
//
// Threading rule (the libzmq rule): a context may be shared by any number of
// threads; a socket is used by one thread at a time. `ZMQSocket` is therefore
// `@unchecked Sendable`: handing a socket to another thread is allowed, using it
// from two threads at once is not.

import CZeroMQ
import Foundation

/// An error reported by libzmq (or by this wrapper), with the operation, the
/// endpoint when there is one, and `zmq_strerror`'s text.
public struct ZMQError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The errno value (`zmq_errno()` at the time of failure).
    public let code: Int32
    /// What was being done: "bind", "connect", "send", "setsockopt(ZMQ_LINGER)", ...
    public let operation: String
    /// The endpoint involved, if any.
    public let endpoint: String?
    /// `zmq_strerror(code)`.
    public let message: String

    public init(code: Int32, operation: String, endpoint: String? = nil) {
        self.code = code
        self.operation = operation
        self.endpoint = endpoint
        self.message = String(cString: zmq_strerror(code))
    }

    /// Builds an error from the current `zmq_errno()`.
    static func last(_ operation: String, endpoint: String? = nil) -> ZMQError {
        ZMQError(code: zmq_errno(), operation: operation, endpoint: endpoint)
    }

    public var description: String {
        if let endpoint { return "zmq \(operation) \(endpoint): \(message) (errno \(code))" }
        return "zmq \(operation): \(message) (errno \(code))"
    }

    /// True for "try again" (timeouts, high-water mark with DONTWAIT).
    public var isAgain: Bool { code == EAGAIN }
}

/// A libzmq context. Sockets keep their context alive; the context is
/// terminated (`zmq_ctx_term`) when the last reference goes away, which only
/// happens after every socket made from it has been closed.
public final class ZMQContext: @unchecked Sendable {  // immutable handle; libzmq contexts are thread-safe
    let handle: UnsafeMutableRawPointer

    /// A process-wide context (never terminated). inproc:// endpoints are only
    /// visible within one context, so the coordinator and its embedded workers
    /// share this one.
    public static let shared = ZMQContext()

    /// - Parameter ioThreads: libzmq I/O threads (1 is enough below ~1 GB/s).
    public init(ioThreads: Int32 = 1) {
        guard let h = zmq_ctx_new() else { fatalError("zmq_ctx_new failed: \(ZMQError.last("ctx_new"))") }
        handle = h
        if ioThreads != 1 { _ = zmq_ctx_set(h, ZMQ_IO_THREADS, ioThreads) }
    }

    deinit {
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    /// A new socket of `type` in this context.
    public func socket(_ type: ZMQSocketType) throws -> ZMQSocket {
        try ZMQSocket(context: self, type: type)
    }

    /// libzmq's version as (major, minor, patch).
    public static var version: (major: Int32, minor: Int32, patch: Int32) {
        var a: Int32 = 0
        var b: Int32 = 0
        var c: Int32 = 0
        zmq_version(&a, &b, &c)
        return (a, b, c)
    }

    /// Whether libzmq was built with a capability ("curve", "ipc", ...).
    public static func has(_ capability: String) -> Bool { zmq_has(capability) != 0 }
}
