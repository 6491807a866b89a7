import Client
import KilnProtocol
import XCTest

final class JobViewTests: XCTestCase {
    func testSnapshotGivesOneWaitingRowPerBlock() {
        let v = JobView(status: status("j1", .running, blocks: 3))
        XCTAssertEqual(v.rows.map(\.block), [0, 1, 2])
        XCTAssertEqual(v.rows.map(\.stage), [.waiting, .waiting, .waiting])
        XCTAssertEqual(v.blocksDone, 0)
        XCTAssertFalse(v.isFinished)
    }

    func testBlockGoesThroughItsStagesFromUpdates() {
        var v = JobView(status: status("j1", .running, blocks: 2))
        v.apply(update(1, module: module(0, .collect, done: 1, total: 4, worker: "w1", started: 1_000)))
        XCTAssertEqual(v.rows[0].stage, .statistics)
        XCTAssertEqual(v.rows[0].statistics, PhaseCount(done: 1, total: 4))
        XCTAssertEqual(v.rows[0].workers, ["w1"])
        v.apply(update(2, module: module(0, .collect, done: 4, total: 4, worker: "w2", started: 1_000, elapsed: 400)))
        XCTAssertEqual(v.rows[0].stage, .merging, "statistics complete, reconstruction not reported yet")
        v.apply(
            update(
                3, module: module(0, .reconstruct, done: 1, total: 3, module: "attn.qkv", worker: "w1", started: 1_500))
        )
        v.apply(
            update(4, module: module(0, .reconstruct, done: 0, total: 4, module: "mlp", worker: "w2", started: 1_600)))
        XCTAssertEqual(v.rows[0].stage, .reconstructing)
        XCTAssertEqual(v.rows[0].reconstruction, PhaseCount(done: 1, total: 7))
        XCTAssertEqual(v.rows[0].workers, ["w1", "w2"])
        v.apply(
            update(
                5,
                module: module(
                    0, .reconstruct, done: 3, total: 3, module: "attn.qkv", worker: "w1",
                    started: 1_500, elapsed: 300, error: 0.25)))
        v.apply(
            update(
                6,
                module: module(
                    0, .reconstruct, done: 4, total: 4, module: "mlp", worker: "w2",
                    started: 1_600, elapsed: 900, error: 0.5)))
        XCTAssertEqual(v.rows[0].stage, .done)
        XCTAssertEqual(v.rows[0].error, 0.75)
        XCTAssertEqual(v.rows[0].workers, ["w2"], "the last worker that ran a part of it")
        XCTAssertEqual(v.rows[0].elapsedMs(nowUnixMs: 99_999), 1_500, "from the first start to the last end")
        XCTAssertNil(v.rows[0].etaMs(nowUnixMs: 99_999))
        XCTAssertEqual(v.rows[1].stage, .waiting)
        XCTAssertEqual(v.blocksDone, 1)
    }

    func testSequentialPropagationKeepsTheBlockOpen() {
        var v = JobView(status: status("j1", .running, blocks: 1))
        v.apply(update(1, module: module(0, .reconstruct, done: 7, total: 7, started: 10, elapsed: 5)))
        v.apply(update(2, module: module(0, .propagate, done: 1, total: 2, started: 20)))
        XCTAssertEqual(v.rows[0].stage, .propagating)
        v.apply(update(3, module: module(0, .propagate, done: 2, total: 2, started: 20, elapsed: 5)))
        XCTAssertEqual(v.rows[0].stage, .done)
    }

    func testFullStatusInAnUpdateReplacesEverything() {
        var v = JobView(status: status("j1", .running, blocks: 2))
        v.apply(update(1, module: module(1, .collect, done: 1, total: 2, started: 5)))
        let fresh = status(
            "j1", .writing, blocks: 2,
            modules: [
                module(0, .reconstruct, done: 7, total: 7, started: 1, elapsed: 1),
                module(1, .reconstruct, done: 7, total: 7, started: 1, elapsed: 1),
            ])
        v.apply(update(2, state: .writing, status: fresh))
        XCTAssertEqual(v.state, .writing)
        XCTAssertEqual(v.rows.map(\.stage), [.done, .done])
        XCTAssertEqual(v.rows[1].statistics, PhaseCount(), "the old module entry is gone")
    }

    func testUpdatesOfOtherJobsAreIgnored() {
        var v = JobView(status: status("j1", .running, blocks: 1))
        let before = v
        v.apply(update(1, job: "j2", state: .failed, module: module(0, .collect, done: 1, total: 1, started: 1)))
        XCTAssertEqual(v, before)
    }

    func testSucceededMarksEveryBlockDoneAndFailedKeepsTheError() {
        var v = JobView(status: status("j1", .running, blocks: 2))
        v.apply(update(1, state: .succeeded))
        XCTAssertTrue(v.isFinished)
        XCTAssertEqual(v.rows.map(\.stage), [.done, .done])
        XCTAssertEqual(v.fraction, 1)

        var failed = status("j2", .failed, blocks: 1)
        var e = Kiln_V1_Error()
        e.code = .modelUnreadable
        e.message = "m.gguf: not found"
        e.field = "spec.model_path"
        failed.error = e
        let f = JobView(status: failed)
        XCTAssertTrue(f.isFinished)
        XCTAssertEqual(f.error?.message, "m.gguf: not found")
        XCTAssertTrue(JobTable.summary(f, nowUnixMs: 0).contains("error: m.gguf: not found (field spec.model_path)"))
    }

    func testBlockIndexFromThePeerNeverSizesTheTable() {
        var v = JobView(status: status("j1", .running, blocks: 2))
        v.apply(update(1, module: module(4_000_000_000, .collect, done: 1, total: 1, started: 1)))
        XCTAssertEqual(v.rows.count, 2)
        v.apply(update(2, module: module(5, .collect, done: 1, total: 2, started: 1)))
        XCTAssertEqual(v.rows.count, 6, "a block beyond blocks_total still gets a row")
        XCTAssertEqual(JobView(status: status("j1", .running, blocks: .max)).rows.count, JobView.maxBlocks)
    }

    func testElapsedAndETAFollowTheRateSoFar() {
        var v = JobView(status: status("j1", .running, blocks: 1, submitted: 1_000))
        v.apply(update(1, module: module(0, .collect, done: 2, total: 4, started: 1_000)))
        v.apply(update(2, module: module(0, .reconstruct, done: 0, total: 4, started: 0)))
        let row = v.rows[0]
        // Half the statistics, none of the reconstruction: a quarter done after 1 s.
        XCTAssertEqual(row.fraction, 0.25)
        XCTAssertEqual(row.elapsedMs(nowUnixMs: 2_000), 1_000)
        XCTAssertEqual(row.etaMs(nowUnixMs: 2_000), 3_000)
        XCTAssertEqual(v.jobElapsedMs(nowUnixMs: 2_000), 1_000)
        XCTAssertEqual(v.etaMs(nowUnixMs: 2_000), 3_000)
        XCTAssertNil(JobView(status: status("j1", .running, blocks: 1)).etaMs(nowUnixMs: 5), "no rate yet")
    }

    func testStageChangesListOnlyBlocksThatMoved() {
        let a = JobView(status: status("j1", .running, blocks: 3))
        var b = a
        b.apply(update(1, module: module(1, .collect, done: 1, total: 2, started: 1)))
        XCTAssertEqual(b.stageChanges(from: a).map(\.block), [1])
        var c = b
        c.apply(update(2, module: module(1, .collect, done: 2, total: 2, started: 1)))
        XCTAssertEqual(c.stageChanges(from: b).map(\.block), [1])
        var d = c
        d.apply(update(3, module: module(1, .collect, done: 2, total: 2, started: 1, elapsed: 7)))
        XCTAssertEqual(d.stageChanges(from: c), [])
        XCTAssertEqual(a.stageChanges(from: nil).count, 3)
    }
}
