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

/// Whether python3 can import the given modules.
func pythonHas(_ modules: [String]) -> Bool {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", modules.map { "import \($0)" }.joined(separator: "; ")]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}

/// Runs a script under Ops/ and parses its JSON stdout.
func runPython(_ script: String, _ args: [String]) throws -> [String: Any] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", Paths.repoRoot.appendingPathComponent(script).path] + args
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // stdout on another thread so neither pipe can fill up and block the script.
    final class Box: @unchecked Sendable { var data = Data() }
    let box = Box()
    let g = DispatchGroup()
    g.enter()
    DispatchQueue.global().async {
        box.data = out.fileHandleForReading.readDataToEndOfFile()
        g.leave()
    }
    let e = err.fileHandleForReading.readDataToEndOfFile()
    g.wait()
    let data = box.data
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw NSError(
            domain: "python", code: Int(p.terminationStatus),
            userInfo: [NSLocalizedDescriptionKey: String(decoding: e, as: UTF8.self)])
    }
    return try JSONSerialization.jsonObject(with: data) as! [String: Any]
}
