import Client
import KilnProtocol
import XCTest

final class CloneSequencerTests: XCTestCase {
    func testBuffersUntilSnapshotThenAppliesOnlyNewerInOrder() {
        var s = CloneSequencer(jobID: "j1")
        // Arrive out of order while the snapshot is on its way.
        XCTAssertEqual(s.receive(update(6)), [])
        XCTAssertEqual(s.receive(update(4)), [])
        XCTAssertEqual(s.receive(update(5)), [])
        XCTAssertEqual(s.receive(update(3)), [])
        XCTAssertEqual(s.pendingCount, 4)
        let applied = s.snapshotReceived(sequence: 4)
        XCTAssertEqual(applied.map(\.sequence), [5, 6], "3 and 4 are already in the snapshot")
        XCTAssertFalse(s.needsSnapshot)
        XCTAssertEqual(s.pendingCount, 0)
        XCTAssertEqual(s.lastSequence, 6)
        XCTAssertEqual(s.receive(update(7)).map(\.sequence), [7])
    }

    func testDropsDuplicatesAndStaleUpdatesWhenLive() {
        var s = CloneSequencer()
        _ = s.snapshotReceived(sequence: 10)
        XCTAssertEqual(s.receive(update(9)), [])
        XCTAssertEqual(s.receive(update(10)), [])
        XCTAssertEqual(s.receive(update(11)).count, 1)
        XCTAssertEqual(s.receive(update(11)), [])
        XCTAssertFalse(s.needsSnapshot)
    }

    func testGapAsksForSnapshotAndBuffersUntilItComes() {
        var s = CloneSequencer(jobID: "j1")
        _ = s.snapshotReceived(sequence: 1)
        XCTAssertEqual(s.receive(update(2)).count, 1)
        // 3 was lost: 4 is still applied (it is newer state) but a snapshot is needed.
        XCTAssertEqual(s.receive(update(4)).map(\.sequence), [4])
        XCTAssertTrue(s.needsSnapshot)
        s.snapshotRequested()
        XCTAssertTrue(s.awaitingSnapshot)
        XCTAssertFalse(s.needsSnapshot)
        XCTAssertEqual(s.receive(update(5)), [])
        XCTAssertEqual(s.receive(update(6)), [])
        XCTAssertEqual(s.snapshotReceived(sequence: 5).map(\.sequence), [6])
        XCTAssertFalse(s.needsSnapshot)
    }

    func testOtherJobsAdvanceTheSequenceButAreFilteredOut() {
        var s = CloneSequencer(jobID: "j1")
        _ = s.snapshotReceived(sequence: 0)
        XCTAssertEqual(s.receive(update(1, job: "other")), [])
        XCTAssertEqual(s.receive(update(2, job: "j1")).map(\.sequence), [2])
        XCTAssertFalse(s.needsSnapshot, "an update of another job is not a gap")
        var all = CloneSequencer()
        _ = all.snapshotReceived(sequence: 0)
        XCTAssertEqual(all.receive(update(1, job: "other")).count, 1)
    }

    func testPendingOverflowDropsOldestAndTheGapIsNoticed() {
        var s = CloneSequencer(maxPending: 2)
        for q in 2...5 as ClosedRange<UInt64> { _ = s.receive(update(q)) }
        XCTAssertEqual(s.pendingCount, 2)
        // The snapshot reflects up to 1; 2 and 3 were dropped from the buffer.
        XCTAssertEqual(s.snapshotReceived(sequence: 1).map(\.sequence), [4, 5])
        XCTAssertTrue(s.needsSnapshot)
    }

    func testSnapshotFromRestartedCoordinatorResetsTheSequence() {
        var s = CloneSequencer()
        _ = s.snapshotReceived(sequence: 100)
        XCTAssertEqual(s.receive(update(3)), [])
        s.snapshotRequested()
        XCTAssertEqual(s.snapshotReceived(sequence: 2), [])
        XCTAssertEqual(s.receive(update(3)).count, 1)
    }

    func testFirstUpdatesBeforeAnyNumberedOne() {
        var s = CloneSequencer()
        _ = s.snapshotReceived(sequence: 0)
        XCTAssertEqual(s.receive(update(1)).count, 1)
        XCTAssertFalse(s.needsSnapshot)
    }
}
