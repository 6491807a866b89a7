import Foundation
import Synchronization

/// The stop handshake of a thread that runs a socket loop (coordinator, worker): any thread
/// may ask the loop to return, and `requestAndWait` returns once a started loop has.
public final class LoopStop: @unchecked Sendable {  // the semaphore is thread-safe; the flags are under the mutex
    private let state = Mutex((requested: false, started: false))
    private let stopped = DispatchSemaphore(value: 0)

    public init() {}

    /// Asks the loop to return soon (safe from any thread).
    public func request() { state.withLock { $0.requested = true } }

    public var isRequested: Bool { state.withLock { $0.requested } }

    /// The loop calls this first, and `loopReturned` when it returns.
    public func loopStarted() { state.withLock { $0.started = true } }

    public func loopReturned() { stopped.signal() }

    /// Asks the loop to return and waits for it, if it ever started.
    public func requestAndWait() {
        let started = state.withLock { s in
            s.requested = true
            return s.started
        }
        if started {
            stopped.wait()
            stopped.signal()  // re-signal: the owner's stop() may be called again
        }
    }
}
