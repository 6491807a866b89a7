import Foundation
import Jobs
import ModelIO
import TestSupport
import XCTest

enum Assets {
    static func smollm2() throws -> URL {
        let u = Paths.smollm2
        guard FileManager.default.fileExists(atPath: u.path) else {
            throw XCTSkip("SmolLM2 asset missing at \(u.path); run Ops/fetch-assets.sh")
        }
        return u
    }

    static let calib = Paths.fixture("text/fortunes_calib.txt")
    static let eval = Paths.fixture("text/fortunes_eval.txt")

    private static let lock = NSLock()
    nonisolated(unsafe) private static var truncatedURL: URL?

    /// SmolLM2 cut to its first `blocks` blocks (same metadata, tokenizer, embedding):
    /// a real model that runs whole jobs in seconds.
    static func truncatedSmolLM2() throws -> URL {
        let src = try smollm2()
        return try lock.withLock {
            if let u = truncatedURL { return u }
            let blocks = 2
            let dir = Paths.tempDir("kiln-jobs-model")
            let out = dir.appendingPathComponent("smollm2-2blocks.gguf")
            try GGUFVariants.write(
                from: src, to: out, blocks: blocks, overrides: ["llama.block_count": .uint32(UInt32(blocks))])
            truncatedURL = out
            return out
        }
    }

    /// A small job on `model`.
    static func spec(
        model: URL, out: URL, method: QuantMethod = .gptq, format: OutputFormat = .ggufQ4_0,
        samples: Int = 4, seqlen: Int = 64, shardSize: Int = 2, mode: JobMode = .sequential
    ) -> JobSpec {
        var s = JobSpec(model: model.path, calibration: calib.path, output: out.path)
        s.samples = samples
        s.seqlen = seqlen
        s.method = method
        s.format = format
        s.shardSize = shardSize
        s.mode = mode
        return s
    }
}

func fileBytes(_ u: URL) throws -> Data { try Data(contentsOf: u) }
