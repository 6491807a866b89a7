import Foundation
import ModelIO
import Quantization

/// Writes the quantized model as GGUF: the input's metadata (every key, in file order,
/// tokenizer included) with general.file_type set and kiln.* provenance keys added (no
/// timestamps: the same job gives the same bytes); quantized linears as Q4_0 / Q4_1 /
/// Q8_0 blocks packed from the quantizer's own codes and fp16 scales; every other
/// tensor copied raw in its original type. Streams tensor by tensor to a temporary
/// name, renamed into place only when complete.
public enum GGUFOutput {
    /// ggml's LLAMA_FTYPE_MOSTLY_* of each format.
    static func fileType(_ f: OutputFormat) -> UInt32 {
        switch f {
        case .ggufQ4_0: return 2
        case .ggufQ4_1: return 3
        case .ggufQ8_0: return 7
        case .gptqSafetensors, .compressedTensorsW8A8, .compressedTensorsW4A16: return 0
        case .ggufQ2_K: return 10
        case .ggufQ3_K: return 11  // one type throughout: llama.cpp's *_S ids (no plain id exists)
        case .ggufQ4_K: return 14
        case .ggufQ5_K: return 16
        case .ggufQ6_K: return 18
        case .ggufQ3_K_M: return 12
        case .ggufQ4_K_M: return 15
        }
    }

    /// The GGUF block type of a quantizer format.
    static func dtype(_ f: WeightFormat) -> DType {
        switch f {
        case .ggufQ4_0: return .q4_0
        case .ggufQ4_1: return .q4_1
        case .ggufQ5_0: return .q5_0
        case .ggufQ5_1: return .q5_1
        case .ggufQ2_K, .ggufQ3_K, .ggufQ4_K, .ggufQ5_K, .ggufQ6_K: return f.kQuantType!.dtype
        default: return .q8_0
        }
    }

    /// The provenance keys (values fixed by the job; file names, not paths).
    public static func provenance(_ spec: JobSpec) -> [(String, GGUFValue)] {
        [
            ("kiln.method", .string(spec.method.rawValue)),
            ("kiln.format", .string(spec.format.rawValue)),
            ("kiln.bits", .uint32(UInt32(spec.resolvedBits))),
            ("kiln.group_size", .int32(Int32(spec.resolvedGroupSize))),
            ("kiln.symmetric", .bool(spec.resolvedSymmetric)),
            ("kiln.act_order", .bool(spec.actOrder)),
            ("kiln.mode", .string(spec.mode.rawValue)),
            ("kiln.damp", .float32(Float(spec.percentDamp))),
            ("kiln.samples", .uint32(UInt32(spec.samples))),
            ("kiln.seqlen", .uint32(UInt32(spec.seqlen))),
            ("kiln.seed", .uint64(spec.seed)),
            ("kiln.sampler", .string(spec.sampler.rawValue)),
            ("kiln.calibration", .string(URL(fileURLWithPath: spec.calibration).lastPathComponent)),
        ]
    }

    /// The GGUF blocks of one quantized linear.
    public static func blocks(_ q: QuantizedLinear, format: OutputFormat) throws -> GGUFQuantizedTensor {
        let w = q.weight
        let size = w.recipe.format.fixedGroupSize ?? 32
        guard format.isGGUF, w.groupSize == size, w.columns % (w.recipe.format.rowMultiple ?? size) == 0,
            w.groupIndex.enumerated().allSatisfy({ Int($0.element) == $0.offset / size })
        else {
            throw JobError("\(q.tensor): groups are not GGUF's consecutive blocks of \(size) columns")
        }
        if w.recipe.format.kQuantType != nil {
            guard let k = w.kScales else {
                throw JobError("\(q.tensor): K-quant result without its super-block fields")
            }
            return GGUFQuantizedTensor(shape: [w.rows, w.columns], codes: w.codes, kScales: k)
        }
        return GGUFQuantizedTensor(
            type: dtype(w.recipe.format), shape: [w.rows, w.columns], codes: w.codes, parameters: w.parameters)
    }

    /// `linears` is read one tensor at a time, in the file's tensor order.
    public static func write(spec: JobSpec, view: any ModelView, linears: any QuantizedLinearSource, to url: URL) throws
    {
        let quantized = try linears.summaries()
        let folded = try quantized.foldedTensors()
        guard try quantized.migrations().isEmpty else {
            throw JobError("migrated scales (SmoothQuant of ffn_down) are written only to compressed-tensors-w8a8")
        }
        let keys: [String]
        if let g = view as? GGUFModel { keys = g.file.metadataKeys } else { keys = view.metadata.keys.sorted() }
        let w = try GGUFWriter(url: url, replace: spec.overwrite)
        do {
            let kiln = provenance(spec)
            let replaced = Set(kiln.map(\.0) + ["general.alignment", "general.file_type"])
            for k in keys where !replaced.contains(k) {
                try w.addMetadata(k, view.metadata[k]!)
                if k == "general.name" || (k == "general.architecture" && !keys.contains("general.name")) {
                    try w.addMetadata("general.file_type", .uint32(fileType(spec.format)))
                }
            }
            if !w.metadata.contains(where: { $0.key == "general.file_type" }) {
                try w.addMetadata("general.file_type", .uint32(fileType(spec.format)))
            }
            try w.addMetadata(kiln)
            for t in view.tensors {
                if let q = quantized[t.name] {
                    try w.declareTensor(t.name, type: dtype(q.format), shape: [q.rows, q.columns])
                } else {
                    try w.declareTensor(t.name, type: t.dtype, shape: t.shape)
                }
            }
            for t in view.tensors {
                if quantized[t.name] != nil {
                    try w.writeTensor(t.name, quantized: blocks(try linears.linear(t.name), format: spec.format))
                } else if let values = folded[t.name] {
                    // AWQ's folded norm, in the tensor's own type.
                    try w.writeTensor(t.name, floats: values)
                } else if let g = view as? GGUFModel, let stored = g.file.tensor(t.name) {
                    // Read from the file a piece at a time: not held, not mapped.
                    try w.writeTensor(t.name, copying: stored.range, of: g.file.url)
                } else {
                    try w.writeTensor(t.name, bytes: view.rawBytes(t.name))
                }
            }
            try w.finish()
        } catch {
            w.abandon()
            throw error
        }
    }
}
