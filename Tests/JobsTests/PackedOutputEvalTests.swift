import Calibration
import Foundation
import Jobs
import ModelIO
import Models
import TestSupport
import XCTest

/// `kiln eval` on a GPTQ or compressed-tensors W4A16 directory a real job wrote (2-block
/// SmolLM2): the directory's own tokenizer and dequantized linears give the perplexity the
/// job's report gave. (Kiln against Kiln; the runtimes' figures: Ops/check-served-outputs.sh.)
final class PackedOutputEvalTests: XCTestCase {
    func evalMatchesReport(_ format: OutputFormat, group: Int?) throws {
        let model = try Assets.truncatedSmolLM2()
        var s = Assets.spec(
            model: model, out: Paths.tempDir("kiln-packed-eval-\(format.rawValue)").appendingPathComponent("out"),
            format: format, samples: 8, seqlen: 128, shardSize: 4)
        s.groupSize = group
        s.evalFile = Assets.eval.path
        s.evalWindows = 2
        let report = try Job.run(s, concurrency: 2)
        let after = try XCTUnwrap(report.perplexity).after

        // What `kiln eval DIR --text EVAL --windows 2` computes.
        let view = try openModel(URL(fileURLWithPath: s.output))
        XCTAssertTrue(view is PackedCheckpointModel, "\(type(of: view))")
        let tokenizer = try loadTokenizer(XCTUnwrap(view.tokenizer))
        let ids = tokenizer.encode(try TextFile.read(Assets.eval, what: "eval")).map(Int32.init)
        let lm = try loadCausalLM(view: view, options: ModelLoadOptions(lazyBlocks: false))
        let eval = try Perplexity.evaluate(model: lm, ids: ids, contextLength: 512, windows: 2)
        print("\(format.rawValue) 2-block SmolLM2: report \(after), kiln eval \(eval.perplexity)")
        XCTAssertEqual(eval.perplexity, after)
    }

    func testGPTQDirectoryEvalMatchesReport() throws { try evalMatchesReport(.gptqSafetensors, group: nil) }

    func testW4A16DirectoryEvalMatchesReport() throws { try evalMatchesReport(.compressedTensorsW4A16, group: 64) }
}
