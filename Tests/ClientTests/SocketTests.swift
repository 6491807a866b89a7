import Client
import KilnProtocol
import XCTest
import ZeroMQ

/// CoordinatorClient and ProgressSubscriber against a fake coordinator on loopback.
final class SocketTests: XCTestCase {
    /// Two blocks: statistics then reconstruction each, then success.
    static func script() -> [(Kiln_V1_JobState, Kiln_V1_ModuleProgress?)] {
        var s: [(Kiln_V1_JobState, Kiln_V1_ModuleProgress?)] = [(.running, nil)]
        for b: UInt32 in 0..<2 {
            for d: UInt32 in 1...2 {
                s.append((.running, module(b, .collect, done: d, total: 2, worker: "w1", started: 1)))
            }
            for d: UInt32 in 1...3 {
                s.append((.running, module(b, .reconstruct, done: d, total: 3, worker: "w2", started: 2)))
            }
        }
        s.append((.writing, nil))
        s.append((.succeeded, nil))
        return s
    }

    func testRequestsMatchTheirRepliesByCorrelationID() throws {
        let fake = try FakeCoordinator(job: status("j1", .queued, blocks: 2), script: [])
        fake.sendStaleReplyFirst = true
        fake.start()
        defer { fake.stop() }
        let client = try CoordinatorClient(endpoint: fake.endpoint, timeoutMs: 5000)
        XCTAssertEqual(try client.status(jobID: "j1").jobID, "j1", "the stale reply was skipped")
        XCTAssertEqual(try client.workers().map(\.workerID), ["w1"])
        XCTAssertThrowsError(try client.status(jobID: "nope")) { error in
            XCTAssertEqual(error as? ClientError, .unknownJob(endpoint: fake.endpoint, jobID: "nope"))
        }
        XCTAssertThrowsError(try client.cancel(jobID: "j1")) { error in
            guard case .coordinator(_, let e)? = error as? ClientError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.field, "body")
        }
    }

    func testNoCoordinatorTimesOutWithAClearMessage() throws {
        // A bound ROUTER that never answers.
        let silent = try ZMQContext.shared.socket(.router)
        try silent.bind("tcp://127.0.0.1:*")
        let endpoint = try silent.lastEndpoint
        let client = try CoordinatorClient(endpoint: endpoint, timeoutMs: 300)
        let start = Date()
        XCTAssertThrowsError(try client.workers()) { error in
            XCTAssertEqual("\(error)", "no answer from \(endpoint) within 300 ms: is `kiln coordinator` running there?")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
    }

    func testFollowerSeesEveryBlockDoneFromSnapshotAndFeed() throws {
        let fake = try FakeCoordinator(job: status("j1", .queued, blocks: 2), script: Self.script())
        fake.start()
        defer { fake.stop() }
        let client = try CoordinatorClient(endpoint: fake.endpoint, timeoutMs: 5000)
        let subscriber = try ProgressSubscriber(client: client, publishEndpoint: fake.publishEndpoint, jobID: "j1")
        var calls = 0
        let final = try JobFollower(subscriber: subscriber, jobID: "j1").run(tickMs: 50) { _, _ in calls += 1 }
        XCTAssertGreaterThan(calls, 1)
        XCTAssertEqual(final.state, .succeeded)
        XCTAssertEqual(final.rows.map(\.stage), [.done, .done])
        XCTAssertEqual(final.rows[0].statistics, PhaseCount(done: 2, total: 2))
        XCTAssertEqual(final.rows[1].reconstruction, PhaseCount(done: 3, total: 3))
        XCTAssertEqual(subscriber.droppedMessages, 0)
    }

    func testLostUpdateIsRepairedByANewSnapshot() throws {
        let fake = try FakeCoordinator(job: status("j1", .queued, blocks: 2), script: Self.script(), stepMs: 30)
        fake.dropSequences = [4]  // block 0's first reconstruct step never reaches the feed
        fake.start()
        defer { fake.stop() }
        let client = try CoordinatorClient(endpoint: fake.endpoint, timeoutMs: 5000)
        let subscriber = try ProgressSubscriber(client: client, publishEndpoint: fake.publishEndpoint, jobID: "j1")
        let final = try JobFollower(subscriber: subscriber, jobID: "j1").run(tickMs: 50) { _, _ in }
        XCTAssertEqual(final.rows.map(\.stage), [.done, .done])
        XCTAssertGreaterThanOrEqual(fake.snapshotCount, 2, "the gap made the subscriber ask again")
    }

    func testWatchingAnUnknownJobFails() throws {
        let fake = try FakeCoordinator(job: status("j1", .queued, blocks: 2), script: [])
        fake.start()
        defer { fake.stop() }
        let client = try CoordinatorClient(endpoint: fake.endpoint, timeoutMs: 5000)
        let subscriber = try ProgressSubscriber(client: client, publishEndpoint: fake.publishEndpoint, jobID: "nope")
        XCTAssertThrowsError(try subscriber.start()) { error in
            XCTAssertEqual(error as? ClientError, .unknownJob(endpoint: fake.endpoint, jobID: "nope"))
        }
    }
}
