import Foundation
import Synchronization
import XCTest
import ZeroMQ

/// `join()` returns only once the thread has ended and released what its closure captured:
/// a coordinator's stop() relies on it so that no deinit runs on a thread left behind.
final class LoopThreadTests: XCTestCase {
    final class Token: Sendable {}
    final class Flag: Sendable { let value = Mutex(false) }

    func testJoinWaitsForTheThreadAndReleasesItsCaptures() {
        weak var released: Token?
        let ran = Flag()
        var thread: LoopThread?
        do {
            let token = Token()
            released = token
            thread = LoopThread(name: "test.loop") { [token] in
                Thread.sleep(forTimeInterval: 0.1)
                withExtendedLifetime(token) { ran.value.withLock { $0 = true } }
            }
        }
        thread?.join()
        XCTAssertTrue(ran.value.withLock { $0 })
        XCTAssertNil(released, "the closure's captures outlived join()")
        thread?.join()  // a second join returns at once
    }
}
