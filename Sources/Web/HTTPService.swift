import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A Hummingbird server on its own task, started and stopped from synchronous code (the
/// coordinator and worker commands). `start` returns once the port is bound, or throws
/// a message naming the flag and address when it cannot be (taken, not local, refused).
public final class HTTPService: Sendable {
    public let bind: HTTPBind
    /// The bound port (the asked one, or the one picked for port 0).
    public let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, Never>
    private let finished: DispatchSemaphore

    public static func start(
        _ bind: HTTPBind, router: Router<BasicRequestContext>, logger: Logger
    ) throws -> HTTPService {
        let ready = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<Int, any Error>?>(nil)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(bind.host, port: bind.port), serverName: "kiln"),
            onServerRunning: { channel in
                outcome.withLock { $0 = .success(channel.localAddress?.port ?? bind.port) }
                ready.signal()
            },
            logger: logger)
        // In a service group, so that `stop` can shut it down gracefully: requests in flight
        // end (the dashboard's event streams are ended first) rather than being cancelled.
        let group = ServiceGroup(services: [app], logger: logger)
        let task = Task {
            do { try await group.run() } catch {
                let first = outcome.withLock { o -> Bool in
                    guard o == nil else { return false }
                    o = .failure(error)
                    return true
                }
                if first { ready.signal() } else { logger.error("\(bind.flag) \(bind): the server stopped: \(error)") }
            }
            finished.signal()
        }
        ready.wait()
        switch outcome.withLock({ $0 })! {
        case .success(let port):
            return HTTPService(bind: bind, port: port, group: group, task: task, finished: finished)
        case .failure(let error):
            finished.wait()
            throw WebError("\(bind.flag) \(bind): cannot listen: \(Self.explain(error))")
        }
    }

    private init(bind: HTTPBind, port: Int, group: ServiceGroup, task: Task<Void, Never>, finished: DispatchSemaphore) {
        self.bind = bind
        self.port = port
        self.group = group
        self.task = task
        self.finished = finished
    }

    /// Closes the port and waits for the server to end: gracefully, or cancelled after 5 s
    /// (a client that keeps a request open).
    public func stop() {
        let group = self.group
        Task { await group.triggerGracefulShutdown() }
        if finished.wait(timeout: .now() + 5) == .timedOut {
            task.cancel()
            finished.wait()
        }
    }

    /// NIO's bind errors, said plainly.
    static func explain(_ error: any Error) -> String {
        if let io = error as? IOError {
            switch io.errnoCode {
            case EADDRINUSE: return "the port is in use by another process; pick another port"
            case EADDRNOTAVAIL: return "the address is not one of this host's; bind one of its addresses"
            case EACCES: return "permission denied (ports below 1024 need privileges); pick a port above 1024"
            default: return "\(io)"
            }
        }
        return "\(error)"
    }
}
