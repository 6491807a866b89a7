import Jobs
import XCTest

final class ReadyTasksTests: XCTestCase {
    func testReadyTasksFollowDependenciesInCanonicalOrder() {
        let g = TaskGraph(blocks: 2, shards: 2, groups: 4, mode: .parallel)
        var r = ReadyTasks(graph: g)
        XCTAssertEqual(r.ready, [.collect(block: 0, shard: 0), .collect(block: 0, shard: 1)])
        r.markDone(.collect(block: 0, shard: 1))
        // collect(1,1) needs only collect(0,1); it comes after collect(0,0) canonically.
        XCTAssertEqual(r.ready, [.collect(block: 0, shard: 0), .collect(block: 1, shard: 1)])
        XCTAssertFalse(r.isReady(.merge(block: 0)))
        r.markDone(.collect(block: 0, shard: 0))
        XCTAssertEqual(
            r.ready, [.merge(block: 0), .collect(block: 1, shard: 0), .collect(block: 1, shard: 1)])
        r.markDone(.merge(block: 0))
        XCTAssertEqual(r.first, .reconstruct(block: 0, group: 0))
        XCTAssertEqual(r.ready.count, 4 + 2)
        r.markDone(.merge(block: 0))  // twice: no change
        XCTAssertEqual(r.ready.count, 4 + 2)
    }

    func testSequentialPropagateWaitsForEveryReconstruct() {
        let g = TaskGraph(blocks: 2, shards: 2, groups: 4, mode: .sequential)
        var r = ReadyTasks(graph: g)
        for t in [TaskID.collect(block: 0, shard: 0), .collect(block: 0, shard: 1), .merge(block: 0)] {
            r.markDone(t)
        }
        for k in 0..<3 { r.markDone(.reconstruct(block: 0, group: k)) }
        XCTAssertEqual(r.ready, [.reconstruct(block: 0, group: 3)])
        r.markDone(.reconstruct(block: 0, group: 3))
        XCTAssertEqual(r.ready, [.propagate(block: 0, shard: 0), .propagate(block: 0, shard: 1)])
        XCTAssertFalse(r.isReady(.collect(block: 1, shard: 0)))
    }

    /// A resumed job marks what its store holds, in any order; the result is the same state.
    func testMarkingDoneInAnyOrderGivesTheSameState() {
        let g = TaskGraph(blocks: 3, shards: 3, groups: 4, mode: .sequential)
        let finished = Array(g.order().prefix(17))
        var inOrder = ReadyTasks(graph: g)
        for t in finished { inOrder.markDone(t) }
        var shuffled = ReadyTasks(graph: g)
        var rng = SplitMix(seed: 7)
        for t in finished.shuffled(using: &rng) { shuffled.markDone(t) }
        XCTAssertEqual(inOrder.ready, shuffled.ready)
        XCTAssertEqual(inOrder.done, shuffled.done)
        XCTAssertEqual(inOrder.first, g.order()[17])
        for t in g.tasks { XCTAssertEqual(inOrder.isReady(t), shuffled.isReady(t), "\(t)") }
    }

    func testRunningEveryReadyTaskCompletesTheGraph() {
        for mode in [JobMode.parallel, .sequential] {
            let g = TaskGraph(blocks: 4, shards: 3, groups: 4, mode: mode)
            var r = ReadyTasks(graph: g)
            var waves = 0
            while !r.allDone {
                let wave = r.ready
                XCTAssertFalse(wave.isEmpty)
                for t in wave { r.markDone(t) }
                waves += 1
            }
            XCTAssertEqual(r.done, Set(g.tasks))
            XCTAssertNil(r.first)
            XCTAssertLessThanOrEqual(waves, g.tasks.count)
        }
    }
}

/// A small seeded generator, so the shuffle is the same on every run.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
