import Foundation
import Jobs
import ModelIO
import Models
import TestSupport
import XCTest

/// `BlockwisePerplexity` produces every perplexity in a job's report: it must agree with
/// `Perplexity.evaluate` (what `kiln eval` runs) and with the reference implementation.
final class BlockwisePerplexityTests: XCTestCase {
    func testAgreesWithPerplexityAndReferenceOnSmolLM2() throws {
        try XCTSkipUnless(
            FileManager.default.fileExists(atPath: Paths.smollm2.path), "SmolLM2 asset missing: run Ops/fetch-assets.sh"
        )
        let model = try loadCausalLM(view: try openModel(Paths.smollm2))
        let ids = try FixtureTensors(Paths.fixture("smollm2/fortunes_eval_ids.safetensors")).ints("ids")
        let ref = try fixtureJSON("smollm2/smollm2_reference.json")
        let windows = 2

        let blockwise = try BlockwisePerplexity.evaluate(
            model: model, ids: ids, context: 512, windows: windows, block: { try model.block($0) })
        let plain = try Perplexity.evaluate(model: model, ids: ids, contextLength: 512, windows: windows)

        XCTAssertEqual(blockwise.scoredTokensPerWindow, plain.scoredTokensPerWindow)
        // The same operations per window, so the same sums bit for bit.
        XCTAssertEqual(blockwise.windowNLLSums, plain.windowNLLSums)
        XCTAssertEqual(blockwise.perplexity, plain.perplexity)

        let refSums = Array((ref["window_nll_sums"] as! [Double]).prefix(windows))
        XCTAssertEqual(blockwise.windowNLLSums.count, refSums.count)
        for (a, b) in zip(blockwise.windowNLLSums, refSums) { XCTAssertEqual(a, b, accuracy: b * 1e-3) }
        let refPerplexity = Foundation.exp(refSums.reduce(0, +) / Double(511 * windows))
        XCTAssertEqual(blockwise.perplexity, refPerplexity, accuracy: refPerplexity * 1e-3)
    }
}
