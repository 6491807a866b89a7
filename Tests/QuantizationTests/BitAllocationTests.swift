import Quantization
import XCTest

/// `--target-bpw`'s choice: within the budget, least summed error on hand-made and random
/// instances (against exhaustive search), deterministic, and a clear error below the least size.
final class BitAllocationTests: XCTestCase {
    typealias C = BitAllocation.Candidate

    func testHullDropsDominatedAndNonConvexCandidates() {
        let hull = BitAllocation.lowerHull([
            C(format: .ggufQ8_0, error: 1),
            C(format: .ggufQ4_0, error: 100),
            C(format: .ggufQ4_K, error: 60),  // same bits as Q4_0, less error: replaces it
            C(format: .ggufQ5_1, error: 59),  // 6 bits: above the chord from Q4_K (4.5) to Q8_0 (8.5)
            C(format: .ggufQ4_1, error: 70),  // more bits than Q4_K and more error: dominated
            C(format: .ggufQ2_K, error: 400),
        ])
        XCTAssertEqual(hull.map(\.format), [.ggufQ2_K, .ggufQ4_K, .ggufQ8_0])
    }

    func testTheSensitiveTensorGetsTheBits() throws {
        // Equal sizes; b loses far more than a from fewer bits, so the budget's upgrade goes to b.
        let a = BitAllocation.Tensor(
            name: "a", weights: 1000, candidates: [C(format: .ggufQ4_0, error: 10), C(format: .ggufQ8_0, error: 9)])
        let b = BitAllocation.Tensor(
            name: "b", weights: 1000, candidates: [C(format: .ggufQ4_0, error: 500), C(format: .ggufQ8_0, error: 5)])
        let c = try BitAllocation.choose([a, b], targetBitsPerWeight: 6.5)
        XCTAssertEqual(c.formats, [.ggufQ4_0, .ggufQ8_0])
        XCTAssertEqual(c.bitsPerWeight, 6.5)
        XCTAssertEqual(c.error, 15)
        // A budget with room for both upgrades takes both; one with none takes neither.
        XCTAssertEqual(try BitAllocation.choose([a, b], targetBitsPerWeight: 8.5).formats, [.ggufQ8_0, .ggufQ8_0])
        XCTAssertEqual(try BitAllocation.choose([a, b], targetBitsPerWeight: 6.4).formats, [.ggufQ4_0, .ggufQ4_0])
    }

    func testBelowTheLeastSizeIsAClearError() {
        let t = BitAllocation.Tensor(
            name: "blk.0.attn_q.weight", weights: 64, candidates: [C(format: .ggufQ4_0, error: 1)])
        XCTAssertThrowsError(try BitAllocation.choose([t], targetBitsPerWeight: 4)) { e in
            XCTAssertTrue("\(e)".contains("below the least these types allow: 4.5"), "\(e)")
        }
        let bad = BitAllocation.Tensor(name: "x", weights: 64, candidates: [C(format: .ggufQ4_0, error: .nan)])
        XCTAssertThrowsError(try BitAllocation.choose([bad], targetBitsPerWeight: 8)) { e in
            XCTAssertTrue("\(e)".contains("tensor 'x'"), "\(e)")
        }
    }

    /// Random instances with convex error curves (error halving per added bit, as quantization
    /// error does): the greedy's choice is within the budget, no worse than the best single type
    /// for all tensors, and within one upgrade's error of exhaustive search over every assignment.
    func testMatchesExhaustiveSearchOnConvexInstances() throws {
        var seeded = SplitMix(42)
        let formats: [WeightFormat] = [.ggufQ2_K, .ggufQ3_K, .ggufQ4_K, .ggufQ5_K, .ggufQ6_K, .ggufQ8_0]
        for trial in 0..<40 {
            let tensors = (0..<4).map { i -> BitAllocation.Tensor in
                let scale = Double(seeded.next() % 1000 + 1)
                let weights = 256 * Int(seeded.next() % 8 + 1)
                return BitAllocation.Tensor(
                    name: "t\(i)", weights: weights,
                    candidates: formats.map { C(format: $0, error: scale * pow(2, -2 * $0.bitsPerWeight!)) })
            }
            let total = Double(tensors.map(\.weights).reduce(0, +))
            let target = 2.625 + Double(seeded.next() % 1000) / 1000 * (8.5 - 2.625)
            let c = try BitAllocation.choose(tensors, targetBitsPerWeight: target)
            XCTAssertLessThanOrEqual(c.bitsPerWeight, target * (1 + 1e-12), "trial \(trial)")
            // Exhaustive: 6^4 assignments.
            var best = Double.infinity
            for code in 0..<1296 {
                var k = code
                var bits = 0.0
                var error = 0.0
                for t in tensors {
                    let cand = t.candidates[k % 6]
                    k /= 6
                    bits += cand.format.bitsPerWeight! * Double(t.weights)
                    error += cand.error
                }
                if bits <= target * total * (1 + 1e-12) { best = min(best, error) }

            }
            // The greedy is the LP optimum but for the first upgrade that did not fit (and it goes
            // on with the others): it is within one hull step's error of the exhaustive optimum.
            let step = tensors.map { t in
                let h = BitAllocation.lowerHull(t.candidates)
                return zip(h, h.dropFirst()).map { $0.error - $1.error }.max() ?? 0
            }.max()!
            XCTAssertLessThanOrEqual(c.error, best + step, "trial \(trial): target \(target)")
            XCTAssertGreaterThanOrEqual(c.error, best * (1 - 1e-12), "trial \(trial): better than exhaustive?")
            let uniform = formats.filter { $0.bitsPerWeight! <= target }.last
            if let u = uniform {
                let uniformError = tensors.map { t in t.candidates.first { $0.format == u }!.error }.reduce(0, +)
                XCTAssertLessThanOrEqual(c.error, uniformError * (1 + 1e-12), "trial \(trial): worse than all \(u)")
            }
            XCTAssertEqual(try BitAllocation.choose(tensors, targetBitsPerWeight: target), c, "not deterministic")
        }
    }
}
