// libFuzzer target: cluster task payloads -> ClusterCodec.decode as the two
// types peers exchange: ClusterTaskInput (worker side, from an assignment) and
// ClusterTaskOutput (coordinator side, from a result or a result file). Every
// input must decode or throw.
//
// KILN_FUZZ_MAKE_SEEDS=DIR: writes seeds (real encoded payloads) to DIR and exits.
import Calibration
import Foundation
import Jobs
import Quantization
import Tensor

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Data(bytes: $0, count: size) } ?? Data()
    if let input = try? ClusterCodec.decode(ClusterTaskInput.self, from: bytes) {
        // A decoded value must survive its own round trip.
        _ = try? ClusterCodec.encode(input)
    }
    if let output = try? ClusterCodec.decode(ClusterTaskOutput.self, from: bytes) {
        _ = output.taskID.wireName
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
    guard let env = getenv("KILN_FUZZ_MAKE_SEEDS") else { return 0 }
    do {
        try makeSeeds(URL(fileURLWithPath: String(cString: env)))
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("seed generation failed: \(error)\n".utf8))
        exit(1)
    }
}

// Encodable mirrors of the payload types whose memberwise initializers are
// internal to Jobs: same keys, so ClusterCodec's bytes are those of the real types.
struct QuantizedLinearSeed: Encodable {
    var linear = "attn_q", block = 0, tensor = "blk.0.attn_q.weight", rows = 2, columns = 4
    var recipe = QuantRecipe(bits: 4, groupSize: 2)
    var groupSize = 2, groupCount = 2
    var codes: [UInt8] = [0, 15, 7, 8, 1, 2, 3, 4]
    var parameters: [Float] = (0..<16).map { Float($0) / 16 }
    var groupIndex: [Int32] = [0, 0, 1, 1]
    var outputError = 0.25, relativeError = 0.01, gptqLoss = 0.5
    var deadColumns = 0
    var seconds = 0.125
}

struct InputSeed: Encodable {
    var quantized: [QuantizedLinearSeed]?
    var lineage: [[QuantizedLinearSeed]]?
    var replayAllowed: Bool
}

struct ReconstructSeed: Encodable { var block = 0, group = 1, linears = [QuantizedLinearSeed()] }
struct PropagateSeed: Encodable { var block = 1, shard = 2, tokens = 128 }

enum OutputSeed: Encodable {
    case reconstruct(ReconstructSeed)
    case propagate(PropagateSeed)
}

func makeSeeds(_ dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    var stats = LinearStatistics(name: "blk.0.attn_qkv.input", columns: 4)
    try stats.add(Matrix(rows: 3, cols: 4, data: (0..<12).map { Float($0) / 3 - 1 }))
    let seeds: [(String, Data)] = [
        ("input-statistics", try ClusterCodec.encode(ClusterTaskInput(statistics: stats))),
        (
            "input-quantized",
            try ClusterCodec.encode(
                InputSeed(
                    quantized: [QuantizedLinearSeed()], lineage: [[QuantizedLinearSeed()]],
                    replayAllowed: true))
        ),
        (
            "output-collect",
            try ClusterCodec.encode(
                ClusterTaskOutput.collect(
                    CollectResult(
                        block: 0, shard: 1, statistics: [stats],
                        tokens: 3)))
        ),
        ("output-reconstruct", try ClusterCodec.encode(OutputSeed.reconstruct(ReconstructSeed()))),
        ("output-propagate", try ClusterCodec.encode(OutputSeed.propagate(PropagateSeed()))),
    ]
    for (name, data) in seeds {
        try data.write(to: dir.appendingPathComponent("\(name).bin"))
    }
}
