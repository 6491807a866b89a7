import Foundation
import ModelIO
import Tensor
import TestSupport
import XCTest

/// Kiln's GPTQ and compressed-tensors W4A16 directories read back through `openModel`: each
/// linear presented as `<prefix>.weight`, equal to what the writer's own dequantization (the
/// job report's weights) gives; damaged files give errors naming the file and the tensor.
final class PackedCheckpointTests: XCTestCase {
    var dir: URL!
    override func setUp() { dir = Paths.tempDir("packed-checkpoint") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    let prefix = "model.layers.0.self_attn.q_proj"
    let modelConfig = Data(
        """
        {"model_type": "llama", "vocab_size": 16, "hidden_size": 128, "intermediate_size": 256,
         "num_hidden_layers": 1, "num_attention_heads": 2}
        """.utf8)

    func gptqLinear(bits: Int, group: Int, actOrder: Bool, minZero: Int, rng: inout TestRNG) -> GPTQLinear {
        let (out, n) = (64, 128)
        let ng = GPTQPacking.groupCount(inFeatures: n, groupSize: group)
        var gIdx = GPTQPacking.sequentialGIdx(inFeatures: n, groupSize: group)
        if actOrder {
            for i in stride(from: n - 1, to: 0, by: -1) { gIdx.swapAt(i, rng.int(i + 1)) }
        }
        let maxq = (1 << bits) - 1
        return GPTQLinear(
            prefix: prefix, outFeatures: out, inFeatures: n, bits: bits, groupSize: group,
            codes: (0..<(out * n)).map { _ in UInt8(rng.int(maxq + 1)) },
            scales: (0..<(out * ng)).map { _ in 0.001 + abs(rng.float()) * 0.05 },
            zeros: (0..<(out * ng)).map { _ in minZero + rng.int(maxq + 1 - minZero) }, gIdx: gIdx)
    }

    func writeGPTQ(_ l: GPTQLinear, format: GPTQConfig.CheckpointFormat = .gptq) throws -> URL {
        let out = dir.appendingPathComponent("gptq-\(l.bits)-\(format.rawValue)")
        let w = try GPTQSafetensorsWriter(
            directory: out, config: GPTQConfig(bits: l.bits, groupSize: l.groupSize, checkpointFormat: format),
            modelConfig: modelConfig)
        try w.declareTensor("model.embed_tokens.weight", dtype: .f16, shape: [16, 128])
        try w.declareLinear(l.prefix, outFeatures: l.outFeatures, inFeatures: l.inFeatures)
        try w.writeTensor("model.embed_tokens.weight", floats: [Float](repeating: 0.5, count: 16 * 128))
        try w.writeLinear(l)
        try w.finish()
        return out
    }

    func testGPTQLinearsLoadAsTheWritersDequantization() throws {
        var rng = TestRNG(7)
        for (bits, group, actOrder, format) in [
            (4, 32, false, GPTQConfig.CheckpointFormat.gptq), (3, 64, true, .gptq), (8, -1, false, .gptq),
            (2, 32, true, .gptqV2),
        ] {
            let l = gptqLinear(
                bits: bits, group: group, actOrder: actOrder, minZero: format == .gptq ? 1 : 0, rng: &rng)
            let view = try openModel(try writeGPTQ(l, format: format))
            let info = try XCTUnwrap(view.info(prefix + ".weight"), "\(bits) bits")
            XCTAssertEqual(info.shape, [64, 128])
            XCTAssertFalse(view.tensors.contains { $0.name.hasSuffix(".qweight") })
            XCTAssertEqual(try view.load(prefix + ".weight").data, l.dequantized().data, "\(bits) bits \(format)")
            XCTAssertEqual(try view.load("model.embed_tokens.weight").data.first, 0.5)
        }
    }

    func testW4A16LinearsLoadAsScaleTimesSignedCode() throws {
        var rng = TestRNG(3)
        let (out, n, g) = (64, 128, 32)
        let codes = (0..<(out * n)).map { _ in UInt8(rng.int(16)) }
        let scales = (0..<(out * n / g)).map { _ in Float(Float16(0.001 + abs(rng.float()) * 0.05)) }
        let target = dir.appendingPathComponent("w4a16")
        try CompressedTensorsWriter.write(
            to: target,
            items: [
                .packedLinear(prefix: prefix, outFeatures: out, inFeatures: n, groups: n / g, bits: 4, bias: false)
            ],
            config: CompressedTensorsW4A16Config(groupSize: g).jsonObject, scaleDType: .f16, modelConfig: modelConfig
        ) { _ in .packed(codes: codes, scales: scales, bias: nil) }
        let w = try openModel(target).load(prefix + ".weight")
        for o in [0, 17, 63] {
            for i in [0, 31, 32, 127] {
                XCTAssertEqual(w.data[o * n + i], scales[o * (n / g) + i / g] * (Float(codes[o * n + i]) - 8))
            }
        }
    }

    func testDamagedGPTQCheckpointsNameFileAndTensor() throws {
        var rng = TestRNG(11)
        let l = gptqLinear(bits: 4, group: 32, actOrder: false, minZero: 1, rng: &rng)
        let out = try writeGPTQ(l)
        let config = out.appendingPathComponent("config.json")
        let original = try Data(contentsOf: config)
        func setConfig(_ edit: (inout [String: Any]) -> Void) throws {
            var c = try JSONSerialization.jsonObject(with: original) as! [String: Any]
            edit(&c)
            try JSONSerialization.data(withJSONObject: c).write(to: config)
        }
        // Bits that disagree with the stored shapes: qzeros' width no longer fits.
        try setConfig { c in c["quantization_config"] = ["quant_method": "gptq", "bits": 8, "group_size": 32] }
        assertModelIOError(["model.safetensors", "\(prefix).qzeros", "expected [4, 16]"]) { try openModel(out) }
        try setConfig { c in c["quantization_config"] = ["quant_method": "awq", "bits": 4] }
        assertModelIOError(["config.json", "quant_method", "'awq'"]) { try openModel(out) }
        try setConfig { c in c["quantization_config"] = ["quant_method": "gptq", "bits": 5, "group_size": 32] }
        assertModelIOError(["config.json", "bits", "5"]) { try openModel(out) }
        try original.write(to: config)

        // A g_idx entry beyond the groups: found when the linear is loaded.
        let file = out.appendingPathComponent("model.safetensors")
        let range = try XCTUnwrap(SafeTensorsFile(file).tensor(prefix + ".g_idx")).range
        var bytes = try Data(contentsOf: file)
        withUnsafeBytes(of: Int32(999).littleEndian) {
            bytes.replaceSubrange(range.lowerBound..<(range.lowerBound + 4), with: $0)
        }
        try bytes.write(to: file)
        let view = try openModel(out)
        assertModelIOError(["model.safetensors", "\(prefix).g_idx", "999", "0..<4"]) {
            try view.load(prefix + ".weight")
        }
        assertModelIOError(["\(prefix).weight", "packed"]) { try view.rawBytes(prefix + ".weight") }
    }
}
