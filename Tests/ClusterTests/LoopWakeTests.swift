import Coordinator
import Foundation
import TestSupport
import XCTest
import ZeroMQ

/// Work handed to the coordinator's loop from another thread is run at once: the inbox
/// wakes the loop through its inproc socket instead of waiting for the next tick.
final class LoopWakeTests: XCTestCase {
    func testRequestsFromOtherThreadsDoNotWaitForTheTick() throws {
        let tag = UUID().uuidString.prefix(8)
        var config = CoordinatorConfig(
            listen: "inproc://wake-\(tag)", publish: "inproc://wake-\(tag)-pub",
            dataDir: Paths.tempDir("kiln-loop-wake"))
        // Ticks 250 ms apart (a quarter of the heartbeat interval, capped).
        config.heartbeatIntervalMs = 10_000
        let coordinator = try Coordinator(config: config, context: ZMQContext(), logger: quietLogger("wake"))
        coordinator.start()
        defer { coordinator.stop() }
        _ = coordinator.jobState("warm-up")
        let rounds = 20
        let t0 = Date()
        for i in 0..<rounds { XCTAssertNil(coordinator.jobState("no-such-job-\(i)")) }
        let perRequest = Date().timeIntervalSince(t0) / Double(rounds)
        // Waiting for the tick would take ~125 ms per request on average.
        XCTAssertLessThan(perRequest, 0.05, "a request took \(perRequest * 1000) ms on average")
    }
}
