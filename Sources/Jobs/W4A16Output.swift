import Foundation
import ModelIO
import Models
import Quantization
import Tensor

/// Writes a compressed-tensors W4A16 directory ("pack-quantized", `CompressedTensorsWriter`)
/// from the quantized linears: the integer grid's 4-bit symmetric codes, whose zero point is
/// 8, are q + 8 for the signed value q the format stores, so the codes are packed as they are;
/// one fp16 scale per group of input columns (the model's dtype: compressed-tensors
/// dequantizes in the scale's dtype). Everything else as `W8A8Output`: HF names, q/k rows in
/// HF's halves layout, AWQ's folded norms, fp16 embeddings and norms, config and tokenizer.
public enum W4A16Output {
    public static func write(
        spec: JobSpec, view: any ModelView, linears: any QuantizedLinearSource, to url: URL
    ) throws {
        let quantized = try linears.summaries()
        let folded = try quantized.foldedTensors()
        guard try quantized.migrations().isEmpty else {
            throw JobError("migrated scales (SmoothQuant of ffn_down) are written only to compressed-tensors-w8a8")
        }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kiln-tok-\(getpid())-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let (modelConfig, tokenizerFiles) = try GPTQOutput.configAndTokenizer(view: view, tmp: tmp)
        let (items, source) = try GPTQOutput.compressedTensorsItems(view: view, quantized: quantized) {
            dst, q, bias in
            let groups = GPTQPacking.groupCount(inFeatures: q.columns, groupSize: spec.resolvedGroupSize)
            return .packedLinear(
                prefix: dst, outFeatures: q.rows, inFeatures: q.columns, groups: groups, bits: 4, bias: bias)
        }
        let config = CompressedTensorsW4A16Config(groupSize: spec.resolvedGroupSize)
        try CompressedTensorsWriter.write(
            to: url, items: items, config: config.jsonObject, scaleDType: .f16, modelConfig: modelConfig,
            tokenizerFiles: tokenizerFiles, replace: spec.overwrite
        ) { item in
            switch item {
            case let .tensor(name, _, _):
                let src = source[name]!
                return .floats(try folded[src] ?? view.load(src).data)
            case let .packedLinear(prefix, _, _, _, _, _), let .linear(prefix, _, _, _):
                let src = source[prefix]!
                let q = try linears.linear(src)
                var (codes, scales) = try packedCodes(q)
                var bias = view.has(GPTQOutput.biasName(src)) ? try view.load(GPTQOutput.biasName(src)).data : nil
                if let order = W8A8Output.halvesOrder(q, view: view) {
                    codes = GPTQOutput.permuteRows(codes, width: q.weight.columns, order: order)
                    scales = GPTQOutput.permuteRows(scales, width: q.weight.groupCount, order: order)
                    bias = bias.map { GPTQOutput.permuteRows($0, width: 1, order: order) }
                }
                return .packed(codes: codes, scales: scales, bias: bias)
            }
        }
    }

    /// The codes [rows, columns] and fp16-rounded scales [rows, groups], in the input's row layout.
    static func packedCodes(_ q: QuantizedLinear) throws -> ([UInt8], [Float]) {
        let w = q.weight
        let r = w.recipe
        let sequential = w.groupIndex.enumerated().allSatisfy {
            Int($0.element) == (r.groupSize == -1 ? 0 : $0.offset / r.groupSize)
        }
        guard r.format == .integer, r.bits == 4, r.symmetric, sequential, w.parameters.allSatisfy({ $0.zero == 8 })
        else {
            throw JobError(
                "\(q.tensor): not 4-bit symmetric (zero point 8) with groups in column order (\(r.bits) bits); "
                    + "compressed-tensors-w4a16 stores scale * (code - 8)")
        }
        return (w.codes, w.parameters.map { Float(Float16($0.scale)) })
    }
}
