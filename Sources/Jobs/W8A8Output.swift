import Foundation
import Int8GEMM
import ModelIO
import Models
import Quantization
import Tensor

/// Writes a compressed-tensors W8A8 directory (`CompressedTensorsWriter`) from the quantized
/// linears: each block linear as int8 codes with one Float32 scale per output channel,
/// SmoothQuant's folded norms in place of the input's, everything else fp16, HF names and
/// q/k rows in HF's halves layout (as `GPTQOutput`), config.json and tokenizer files.
///
/// The grid is the integer reference grid at 8 bits, symmetric, one group per row: value =
/// scale * (code - 128) with code in 0...255, scale = 2 max|w| / 255 (scale search may pick
/// a smaller one). So code - 128 is the int8 stored, with the scale in fp16, the model's
/// dtype (as GPTQ safetensors stores its scales): compressed-tensors casts weight_scale to
/// the model's dtype when it decompresses, so a Float32 scale would not be what transformers
/// runs. int8 * fp16(scale) is what every reader computes, and what the job's evaluation
/// runs (`int8Rows`). Runtimes quantize the activations per token at run time.
public enum W8A8Output {
    /// The linear's int8 codes and per-row scales as stored (fp16-rounded), in the input file's row layout.
    public static func int8Rows(_ q: QuantizedLinear) throws -> Int8Rows {
        let w = q.weight
        let r = w.recipe
        guard r.format == .integer, r.bits == 8, r.symmetric, w.groupCount == 1,
            w.parameters.allSatisfy({ $0.zero == 128 })
        else {
            throw JobError(
                "\(q.tensor): not 8-bit symmetric per output channel with zero point 128 (\(r.bits) bits, "
                    + "\(w.groupCount) groups per row); compressed-tensors-w8a8 stores int8 * scale")
        }
        return Int8Rows(
            rows: w.rows, cols: w.columns, codes: w.codes.map { Int8(Int($0) - 128) },
            scales: w.parameters.map { W8A8.ScaleStorage.f16.round($0.scale) })
    }

    public static func write(
        spec: JobSpec, view: any ModelView, linears: any QuantizedLinearSource, to url: URL
    )
        throws
    {
        let quantized = try linears.summaries()
        let folded = try quantized.foldedTensors()
        let migrated = try quantized.migrations()
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kiln-tok-\(getpid())-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let (modelConfig, tokenizerFiles) = try GPTQOutput.configAndTokenizer(view: view, tmp: tmp)
        let (items, source) = try GPTQOutput.compressedTensorsItems(view: view, quantized: quantized) {
            dst, q, bias in .linear(prefix: dst, outFeatures: q.rows, inFeatures: q.columns, bias: bias)
        }
        try CompressedTensorsWriter.write(
            to: url, items: items, scaleDType: .f16, modelConfig: modelConfig, tokenizerFiles: tokenizerFiles,
            replace: spec.overwrite
        ) { item in
            switch item {
            case let .tensor(name, _, _):
                let src = source[name]!
                // SmoothQuant's folded norm, else the input's tensor.
                return .floats(try folded[src] ?? view.load(src).data)
            case let .linear(prefix, _, _, _), let .packedLinear(prefix, _, _, _, _, _):
                let src = source[prefix]!
                var q = try linears.linear(src)
                // SmoothQuant's scales migrated from down: up's rows divided by them.
                if let s = migrated[src] { q = try q.dividingOutputRows(by: s) }
                var rows = try int8Rows(q)
                var bias = view.has(GPTQOutput.biasName(src)) ? try view.load(GPTQOutput.biasName(src)).data : nil
                if let order = halvesOrder(q, view: view) {
                    rows = Int8Rows(
                        rows: rows.rows, cols: rows.cols,
                        codes: GPTQOutput.permuteRows(rows.codes, width: rows.cols, order: order),
                        scales: GPTQOutput.permuteRows(rows.scales, width: 1, order: order))
                    bias = bias.map { GPTQOutput.permuteRows($0, width: 1, order: order) }
                }
                return .linear(codes: rows.codes, scales: rows.scales, bias: bias)
            }
        }
    }

    /// q/k rows from GGUF's interleaved RoPE layout to HF's halves; nil when none move.
    static func halvesOrder(_ q: QuantizedLinear, view: any ModelView) -> [Int]? {
        let c = view.config
        let interleaved = fileRopeLayout(architecture: c.architecture.lowercased(), naming: view.naming) == .interleaved
        guard interleaved, let l = Linear(rawValue: q.linear), l == .attnQ || l == .attnK else { return nil }
        return RopePermutation.halvesOrder(rows: q.weight.rows, heads: l == .attnQ ? c.headCount : c.kvHeadCount)
    }
}
