import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread that runs one loop and can be joined. `join()` returns once the thread has
/// ended: its closure has returned and released what it captured, and its thread-exit
/// work (thread-local destructors, the allocator's per-thread caches) is done.
///
/// Why not Foundation's `Thread`: it cannot be joined. A socket loop's owner that only waits
/// for the loop to return (`LoopStop`) goes on while the loop thread still runs; that thread
/// then held the last reference to its owner and ran the owner's deinit (closing its
/// SQLite store, releasing queues and sockets) concurrently with whatever the stopping
/// thread did next, even `exit()`. It aborted about one test run in three with glibc's
/// "malloc_consolidate(): unaligned fastbin chunk detected" in that thread's exit
/// (ConfinementTests). Owners join their loop thread in `stop()`.
// @unchecked: `id` is written by init before the thread can be joined, then only read; `joined` is under the mutex.
public final class LoopThread: @unchecked Sendable {
    private var id = pthread_t()
    private let joined = NSLock()
    private var done = false

    /// Starts `body` on a new thread named `name`.
    public init(name: String, stackSize: Int = 8 << 20, _ body: @escaping @Sendable () -> Void) {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setstacksize(&attr, stackSize)
        let start = Unmanaged.passRetained(LoopThreadStart(name, body)).toOpaque()
        let rc = pthread_create(
            &id, &attr,
            { arg in
                // Released before the thread ends: a joiner knows the closure's captures are gone.
                let start = Unmanaged<LoopThreadStart>.fromOpaque(arg!).takeRetainedValue()
                Thread.current.name = start.name  // set from the thread itself: the OS name too
                start.body()
                return nil
            }, start)
        precondition(rc == 0, "pthread_create failed: \(String(cString: strerror(rc)))")
    }

    /// Waits for the thread to end (at once if it has been joined before). Not from the thread itself.
    public func join() {
        joined.withLock {
            guard !done else { return }
            precondition(pthread_equal(id, pthread_self()) == 0, "a loop thread cannot join itself")
            let rc = pthread_join(id, nil)
            precondition(rc == 0, "pthread_join failed: \(String(cString: strerror(rc)))")
            done = true
        }
    }
}

/// What a new loop thread runs, handed over through pthread_create's argument.
private final class LoopThreadStart {
    let name: String
    let body: @Sendable () -> Void
    init(_ name: String, _ body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}
