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

    /// compressed-tensors-w4a16 stores what compressed-tensors and vLLM read: 4-bit symmetric
    /// codes in whole groups of each row, the groups in column order.
    func testW4A16RefusesWhatItCannotStore() throws {
        let model = try Assets.truncatedSmolLM2()
        let out = Paths.tempDir("kiln-w4a16-validation").appendingPathComponent("out")
        func error(_ edit: (inout JobSpec) -> Void) -> String {
            var s = Assets.spec(model: model, out: out, format: .compressedTensorsW4A16)
            edit(&s)
            do {
                try s.validate()
                return "no error"
            } catch { return "\(error)" }
        }
        // SmolLM2's 576 input columns are 4.5 groups of 128 (the default).
        XCTAssertTrue(error { _ in }.contains("--group 64"), error { _ in })
        XCTAssertTrue(error { $0.bits = 8 }.contains("--bits 8"), error { $0.bits = 8 })
        XCTAssertTrue(error { $0.symmetric = false }.contains("--no-sym"))
        XCTAssertTrue(error { $0.staticGroups = false }.contains("static groups"))
        XCTAssertEqual(error { $0.groupSize = 64 }, "no error")
    }
}
