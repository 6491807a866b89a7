import Client
import KilnProtocol
import XCTest

final class RenderingTests: XCTestCase {
    func testDurations() {
        XCTAssertEqual(JobTable.duration(950), "950ms")
        XCTAssertEqual(JobTable.duration(12_340), "12.3s")
        XCTAssertEqual(JobTable.duration(245_000), "4m05s")
        XCTAssertEqual(JobTable.duration(7_380_000), "2h03m")
        XCTAssertEqual(JobTable.duration(-5), "0ms")
    }

    func testTableHasSummaryHeaderAndARowPerBlock() {
        var v = JobView(status: status("j1", .running, blocks: 2, submitted: 0))
        v.apply(update(1, module: module(0, .collect, done: 2, total: 4, worker: "host-a/1", started: 1_000)))
        let lines = JobTable.lines(v, nowUnixMs: 3_000)
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[0].hasPrefix("job j1  running  blocks 0/2"), lines[0])
        XCTAssertTrue(
            lines[1].contains("statistics") && lines[1].contains("reconstruction") && lines[1].contains("eta"))
        XCTAssertTrue(lines[2].contains("statistics"), lines[2])
        XCTAssertTrue(lines[2].contains("[#####.....] 2/4"), lines[2])
        XCTAssertTrue(lines[2].contains("host-a/1"))
        XCTAssertTrue(lines[3].contains("waiting"))
    }

    func testPlainLinesOnlyForChanges() {
        let a = JobView(status: status("j1", .running, blocks: 2))
        let first = JobTable.plainLines(a, previous: nil, nowUnixMs: 0)
        XCTAssertEqual(first.count, 1, "the job line; waiting blocks are not news")
        var b = a
        b.apply(
            update(
                1, module: module(0, .reconstruct, done: 7, total: 7, worker: "w1", started: 1, elapsed: 2, error: 0.5))
        )
        let lines = JobTable.plainLines(b, previous: a, nowUnixMs: 10)
        XCTAssertEqual(
            lines, ["job j1 block 0: done  statistics -  reconstruction 7/7  error 5.000e-01  worker w1  elapsed 2ms"])
        XCTAssertEqual(JobTable.plainLines(b, previous: b, nowUnixMs: 10), [])
        var c = b
        c.apply(update(2, state: .succeeded))
        let end = JobTable.plainLines(c, previous: b, nowUnixMs: 10)
        XCTAssertTrue(end[0].contains("succeeded"))
        XCTAssertEqual(end.count, 2, "job line and block 1 reaching done")
    }

    func testJSONShape() throws {
        var v = JobView(status: status("j1", .running, blocks: 1))
        v.apply(update(1, module: module(0, .collect, done: 1, total: 2, started: 1)))
        let o = v.jsonObject(nowUnixMs: 1_001)
        XCTAssertEqual(o["state"] as? String, "running")
        let blocks = try XCTUnwrap(o["blocks"] as? [[String: Any]])
        XCTAssertEqual(blocks[0]["stage"] as? String, "statistics")
        XCTAssertEqual((blocks[0]["statistics"] as? [String: Any])?["done"] as? Int, 1)
        XCTAssertTrue(JSONSerialization.isValidJSONObject(o))
    }
}
