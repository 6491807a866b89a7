import Jobs
import XCTest

final class TaskGraphTests: XCTestCase {
    func checkOrder(_ g: TaskGraph) {
        let order = g.order()
        XCTAssertEqual(order.count, g.tasks.count)
        XCTAssertEqual(Set(order).count, order.count)
        var pos: [TaskID: Int] = [:]
        for (i, t) in order.enumerated() { pos[t] = i }
        for t in order {
            for d in g.dependencies(of: t) {
                XCTAssertNotNil(pos[d], "\(t) depends on unknown \(d)")
                XCTAssertLessThan(pos[d]!, pos[t]!, "\(d) must precede \(t)")
            }
        }
        XCTAssertEqual(order, g.order(), "order must be deterministic")
    }

    func testParallelDependencies() {
        let g = TaskGraph(blocks: 3, shards: 2, groups: 4, mode: .parallel)
        checkOrder(g)
        XCTAssertFalse(
            g.tasks.contains {
                if case .propagate = $0 { return true }
                return false
            })
        XCTAssertEqual(g.dependencies(of: .collect(block: 0, shard: 1)), [])
        XCTAssertEqual(g.dependencies(of: .collect(block: 2, shard: 1)), [.collect(block: 1, shard: 1)])
        XCTAssertEqual(
            g.dependencies(of: .merge(block: 1)), [.collect(block: 1, shard: 0), .collect(block: 1, shard: 1)])
        XCTAssertEqual(g.dependencies(of: .reconstruct(block: 1, group: 3)), [.merge(block: 1)])
        XCTAssertEqual(
            Array(g.order().prefix(4)),
            [
                .collect(block: 0, shard: 0), .collect(block: 0, shard: 1), .merge(block: 0),
                .reconstruct(block: 0, group: 0),
            ])
    }

    func testSequentialDependencies() {
        let g = TaskGraph(blocks: 3, shards: 3, groups: 4, mode: .sequential)
        checkOrder(g)
        XCTAssertEqual(g.tasks.count, 3 * (3 + 1 + 4 + 3))
        XCTAssertEqual(g.dependencies(of: .collect(block: 1, shard: 2)), [.propagate(block: 0, shard: 2)])
        let p = g.dependencies(of: .propagate(block: 2, shard: 0))
        for k in 0..<4 { XCTAssertTrue(p.contains(.reconstruct(block: 2, group: k))) }
        // Block by block: everything of block 0 before anything of block 1.
        let order = g.order()
        let lastOf0 = order.lastIndex { $0.block == 0 }!
        let firstOf1 = order.firstIndex { $0.block == 1 }!
        XCTAssertLessThan(lastOf0, firstOf1)
        XCTAssertEqual(order[lastOf0], .propagate(block: 0, shard: 2))
    }

    /// RTN without the error report: reconstructs only, all ready at once, in both modes;
    /// RTN with it and GPTQ keep the statistics tasks.
    func testJobWithoutStatisticsHasOnlyReconstructs() {
        var spec = JobSpec(model: "m.gguf", calibration: "c.txt", output: "o.gguf")
        spec.samples = 6
        spec.shardSize = 2
        spec.method = .rtn
        for mode in JobMode.allCases {
            spec.mode = mode
            let g = TaskGraph(spec: spec, blocks: 3)
            XCTAssertFalse(g.statistics)
            checkOrder(g)
            XCTAssertEqual(g.tasks, (0..<3).flatMap { b in (0..<4).map { TaskID.reconstruct(block: b, group: $0) } })
            XCTAssertTrue(g.tasks.allSatisfy { g.dependencies(of: $0).isEmpty })
            let r = ReadyTasks(graph: g)
            XCTAssertEqual(r.ready, g.tasks)
        }
        spec.mode = .sequential
        spec.errorReport = true
        XCTAssertEqual(TaskGraph(spec: spec, blocks: 3).tasks.count, 3 * (3 + 1 + 4 + 3))
        spec.method = .gptq
        spec.errorReport = nil
        XCTAssertTrue(TaskGraph(spec: spec, blocks: 3).statistics)
    }

    func testTaskIDsAreCodable() throws {
        let ids: [TaskID] = [
            .collect(block: 1, shard: 2), .merge(block: 3), .reconstruct(block: 4, group: 1),
            .propagate(block: 5, shard: 0),
        ]
        let back = try JSONDecoder().decode([TaskID].self, from: JSONEncoder().encode(ids))
        XCTAssertEqual(back, ids)
    }
}
