import Foundation
import Jobs
import Tensor
import TestSupport
import XCTest

/// The spilling store: same job bytes as in memory; damaged files named, never trusted.
final class ActivationStoreTests: XCTestCase {
    func testSpilledJobWritesTheSameBytes() throws {
        let model = try Assets.truncatedSmolLM2()
        let dir = Paths.tempDir("kiln-spill")
        var a = Assets.spec(model: model, out: dir.appendingPathComponent("mem.gguf"))
        a.mode = .sequential
        var b = a
        b.output = dir.appendingPathComponent("spill.gguf").path
        let spill = dir.appendingPathComponent("acts")
        _ = try Job.run(a, concurrency: 1)
        let report = try Job.run(b, concurrency: 2, spill: spill)
        XCTAssertEqual(
            try Data(contentsOf: URL(fileURLWithPath: a.output)), try Data(contentsOf: URL(fileURLWithPath: b.output)))
        XCTAssertTrue(report.notes.contains { $0.contains("spilled") }, "\(report.notes)")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: spill.path), [], "spill files are removed after the job"
        )
    }

    func testRoundTripAndDamage() throws {
        let store = try FileActivationStore(directory: Paths.tempDir("kiln-act"))
        let a = ShardActivations(
            block: 3,
            windows: [
                Matrix(rows: 2, cols: 3, data: [1, -2, 3, .pi, 0, -0.5]),
                Matrix(rows: 1, cols: 3, data: [7, 8, 9]),
            ])
        try store.put(shard: 5, a)
        XCTAssertEqual(try store.get(shard: 5), a)
        XCTAssertNil(try store.get(shard: 6))

        let file = store.directory.appendingPathComponent("shard-5.act")
        let good = try Data(contentsOf: file)
        var cases: [(String, Data)] = [("truncated", good.prefix(good.count - 3)), ("header only", good.prefix(12))]
        var hugeCount = good
        hugeCount.replaceSubrange(16..<20, with: [0xFF, 0xFF, 0xFF, 0x7F])  // window count
        cases.append(("absurd window count", hugeCount))
        var hugeShape = good
        hugeShape.replaceSubrange(20..<24, with: [0xFF, 0xFF, 0xFF, 0xFF])  // rows of window 0
        cases.append(("absurd shape", hugeShape))
        var magic = good
        magic[0] = UInt8(ascii: "X")
        cases.append(("bad magic", magic))
        for (label, bytes) in cases {
            try bytes.write(to: file)
            XCTAssertThrowsError(try store.get(shard: 5), label) {
                XCTAssertTrue("\($0)".contains("shard-5.act") && "\($0)".contains("damaged"), "\(label): \($0)")
            }
        }
        store.remove(shard: 5)
        XCTAssertNil(try store.get(shard: 5))
    }
}
