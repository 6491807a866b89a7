// libFuzzer target: cluster task payloads -> the kiln.v1 decoder (Cluster's
// TaskPayload) as the two messages peers exchange: TaskInput (worker side, from an
// assignment) and TaskOutput (coordinator side, from a result or a result file).
// Every input must decode or throw; what decodes must encode and decode again to
// the same value.
//
// KILN_FUZZ_MAKE_SEEDS=DIR: writes seeds (real encoded payloads) to DIR and exits.
import Calibration
import Cluster
import Foundation
import Jobs
import KilnProtocol
import Quantization
import Tensor

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Data(bytes: $0, count: size) } ?? Data()
    if let input = try? TaskPayload.decodeInput(bytes) {
        guard let again = try? TaskPayload.decodeInput(TaskPayload.encode(input)),
            again.replayAllowed == input.replayAllowed, again.quantized?.count == input.quantized?.count,
            again.lineage?.count == input.lineage?.count, again.statistics == input.statistics
        else { fatalError("a decoded TaskInput does not survive its own round trip") }
    }
    if let output = try? TaskPayload.decodeOutput(bytes) {
        guard let again = try? TaskPayload.decodeOutput(TaskPayload.encode(output)), again.taskID == output.taskID
        else { fatalError("a decoded TaskOutput does not survive its own round trip") }
        if case let .reconstruct(r) = output {
            // The decoder's checks are what make this safe to index.
            for l in r.linears { _ = l.weight.dequantized() }
        }
    }
    inPlace(bytes)
    return 0
}

/// The same bytes as a collect result file read in place (the coordinator's path for
/// large results): it must refuse or walk them without trapping, and a reconstruct input
/// summed from what it accepts must be written without reading outside the file.
func inPlace(_ bytes: Data) {
    let dir = FileManager.default.temporaryDirectory
    let url = dir.appendingPathComponent("kiln-fuzz-collect-\(getpid()).bin")
    let out = dir.appendingPathComponent("kiln-fuzz-input-\(getpid()).bin")
    unlink(out.path)
    guard (try? bytes.write(to: url)) != nil, let file = try? SpoolFile(reading: url),
        let c = try? CollectFile(file)
    else { return }
    if case let .collect(d)? = try? TaskPayload.decodeOutput(bytes), d.shards != c.shards || d.block != c.block {
        fatalError("the in-place reader and the decoder disagree on the shards: \(c.shards), \(d.shards)")
    }
    for g in c.groups.indices {
        guard let sink = try? SpoolFile(creating: out) else { return }
        _ = try? MergedStatisticsInput.write(group: g, of: [c], to: sink, tile: 64)
    }
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

func makeSeeds(_ dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    var stats = LinearStatistics(name: "blk.0.attn_qkv.input", columns: 4)
    try stats.add(Matrix(rows: 3, cols: 4, data: (0..<12).map { Float($0) / 3 - 1 }))
    let weight = QuantizedTensor(
        rows: 2, columns: 4, recipe: QuantRecipe(bits: 4, groupSize: 2), groupSize: 2, groupCount: 2,
        codes: [0, 15, 7, 8, 1, 2, 3, 4],
        parameters: (0..<4).map { GroupParameters(scale: Float($0) / 16, zero: 8, inverse: 16, minimum: -1) },
        groupIndex: [0, 0, 1, 1])
    let linear = QuantizedLinear(
        linear: "attn_q", block: 0, tensor: "blk.0.attn_q.weight", weight: weight, outputError: 0.25,
        relativeError: 0.01, gptqLoss: 0.5, deadColumns: 0, seconds: 0.125)
    let seeds: [(String, Data)] = [
        ("input-statistics", try TaskPayload.encode(ClusterTaskInput(statistics: stats))),
        (
            "input-quantized",
            try TaskPayload.encode(ClusterTaskInput(quantized: [linear], lineage: [[linear]], replayAllowed: true))
        ),
        (
            "output-collect",
            try TaskPayload.encode(.collect(CollectResult(block: 0, shard: 1, statistics: [stats], tokens: 3)))
        ),
        ("output-merge", try TaskPayload.encode(.merge(MergeResult(block: 0, statistics: [stats])))),
        (
            "output-reconstruct",
            try TaskPayload.encode(.reconstruct(ReconstructResult(block: 0, group: 1, linears: [linear])))
        ),
        ("output-propagate", try TaskPayload.encode(.propagate(PropagateResult(block: 1, shard: 2, tokens: 128)))),
    ]
    for (name, data) in seeds {
        try data.write(to: dir.appendingPathComponent("\(name).bin"))
    }
}
