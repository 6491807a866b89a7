import Foundation

// compressed-tensors W8A8 checkpoint ("int-quantized" format, as llm-compressor's W8A8 scheme
// saves it and vLLM / transformers load it), per quantized linear `<prefix>`:
//   <prefix>.weight        I8 [out, in]  symmetric codes
//   <prefix>.weight_scale  [out, 1]  one scale per output channel, in the model's float dtype
//   <prefix>.bias          [out]  (optional, float)
// Dequantization: w[o, i] = weight_scale[o] * weight[o, i]. Activations are quantized per
// token at run time (dynamic, symmetric), so the file holds no input scales. Every other
// tensor (embeddings, norms, lm_head, listed in `ignore`) is stored as float.
// config.json gets `quantization_config` in the layout compressed-tensors' ModelCompressor
// writes (`update_config`): the QuantizationConfig fields plus version, quant_method,
// sparsity_config and transform_config.

/// The `quantization_config` of a W8A8 int8 checkpoint.
public struct CompressedTensorsW8A8Config: Sendable, Equatable {
    /// compressed-tensors' version written as `version` (the one whose layout this follows).
    public var version: String
    /// Module names or `re:` patterns left unquantized.
    public var ignore: [String]

    public init(version: String = "0.19.0", ignore: [String] = ["lm_head"]) {
        self.version = version
        self.ignore = ignore
    }

    public var jsonObject: [String: Any] {
        let null = NSNull()
        func args(strategy: String, dynamic: Bool, observer: Any) -> [String: Any] {
            [
                "actorder": null, "block_structure": null, "dynamic": dynamic, "group_size": null, "num_bits": 8,
                "observer": observer, "observer_kwargs": [String: Any](), "scale_dtype": null, "strategy": strategy,
                "symmetric": true, "type": "int", "zp_dtype": null,
            ]
        }
        let group: [String: Any] = [
            "format": "int-quantized", "targets": ["Linear"], "output_activations": null,
            "weights": args(strategy: "channel", dynamic: false, observer: "memoryless_minmax"),
            "input_activations": args(strategy: "token", dynamic: true, observer: null),
        ]
        return [
            "config_groups": ["group_0": group], "format": "int-quantized", "global_compression_ratio": null,
            "ignore": ignore, "kv_cache_scheme": null, "quant_method": "compressed-tensors",
            "quantization_status": "compressed", "sparsity_config": [String: Any](),
            "transform_config": [String: Any](), "version": version,
        ]
    }
}

/// The `quantization_config` of a W4A16 checkpoint ("pack-quantized", llm-compressor's W4A16
/// scheme): symmetric int weights in groups of `groupSize` input columns (-1: one per output
/// channel), activations left in the model's float type.
public struct CompressedTensorsW4A16Config: Sendable, Equatable {
    public var version: String
    public var bits: Int
    public var groupSize: Int
    public var ignore: [String]

    public init(version: String = "0.19.0", bits: Int = 4, groupSize: Int = 128, ignore: [String] = ["lm_head"]) {
        self.version = version
        self.bits = bits
        self.groupSize = groupSize
        self.ignore = ignore
    }

    public var jsonObject: [String: Any] {
        let null = NSNull()
        let weights: [String: Any] = [
            "actorder": null, "block_structure": null, "dynamic": false,
            "group_size": groupSize == -1 ? null : groupSize as Any, "num_bits": bits, "observer": "minmax",
            "observer_kwargs": [String: Any](), "scale_dtype": null, "strategy": groupSize == -1 ? "channel" : "group",
            "symmetric": true, "type": "int", "zp_dtype": null,
        ]
        let group: [String: Any] = [
            "format": "pack-quantized", "targets": ["Linear"], "weights": weights, "input_activations": null,
            "output_activations": null,
        ]
        return [
            "config_groups": ["group_0": group], "format": "pack-quantized", "global_compression_ratio": null,
            "ignore": ignore, "kv_cache_scheme": null, "quant_method": "compressed-tensors",
            "quantization_status": "compressed", "sparsity_config": [String: Any](),
            "transform_config": [String: Any](), "version": version,
        ]
    }
}

/// Writes a compressed-tensors W8A8 directory: model.safetensors, config.json with
/// `quantization_config`, the tokenizer files, and Kiln's manifest; all of it appears only
/// when every tensor was written (see `OutputPlacement`).
///
/// The items are declared up front (the safetensors header needs every shape) and their
/// contents asked for one at a time, in order, from `contents`, so only one tensor is held.
public enum CompressedTensorsWriter {
    public enum Item: Sendable, Equatable {
        /// A quantized linear `<prefix>` with weight [outFeatures, inFeatures].
        case linear(prefix: String, outFeatures: Int, inFeatures: Int, bias: Bool)
        /// A pack-quantized linear `<prefix>` (W4A16): weight_packed, weight_scale [out, groups],
        /// weight_shape.
        case packedLinear(prefix: String, outFeatures: Int, inFeatures: Int, groups: Int, bits: Int, bias: Bool)
        /// A tensor stored as is, from Float32 values converted to `dtype` (F32, F16, BF16).
        case tensor(name: String, dtype: DType, shape: [Int])

        var name: String {
            switch self {
            case let .linear(prefix, _, _, _): return prefix
            case let .packedLinear(prefix, _, _, _, _, _): return prefix
            case let .tensor(name, _, _): return name
            }
        }
    }

    public enum Contents {
        /// Codes [out, in] row-major in [-127, 127] (or -128), scales [out], optional bias [out].
        case linear(codes: [Int8], scales: [Float], bias: [Float]?)
        /// Codes [out, in] row-major, each q + 2^(bits-1) for the signed value q; scales [out, groups].
        case packed(codes: [UInt8], scales: [Float], bias: [Float]?)
        case floats([Float])
    }

    /// - scaleDType: dtype of `weight_scale` and of biases; compressed-tensors dequantizes in
    ///   the scale's dtype, so it should be the model's (llm-compressor writes the model's).
    /// - modelConfig: the source config.json; `quantization_config` is added, and `torch_dtype`
    ///   set to the scales' dtype when the config names none.
    public static func write(
        to directory: URL, items: [Item], config: [String: Any] = CompressedTensorsW8A8Config().jsonObject,
        scaleDType: DType = .bf16,
        modelConfig: Data, tokenizerFiles: [URL] = [], replace: Bool = false,
        contents: (Item) throws -> Contents
    ) throws {
        guard [.f32, .f16, .bf16].contains(scaleDType) else {
            throw ModelIOError(file: directory.path, "scale dtype \(scaleDType.rawValue) (F32, F16 or BF16)")
        }
        guard var cfg = (try? JSONSerialization.jsonObject(with: modelConfig)) as? [String: Any] else {
            throw ModelIOError(file: directory.path, "model config.json is not a JSON object")
        }
        cfg["quantization_config"] = config
        if cfg["torch_dtype"] == nil, cfg["dtype"] == nil { cfg["torch_dtype"] = torchName(scaleDType) }

        let tmp = try OutputPlacement.createTemporaryDirectory(for: directory)
        var placed = false
        defer { if !placed { try? FileManager.default.removeItem(at: tmp) } }
        let st = SafetensorsWriter(url: tmp.appendingPathComponent("model.safetensors"))
        for item in items {
            switch item {
            case let .linear(p, o, i, bias):
                guard o > 0, i > 0 else { throw ModelIOError(file: directory.path, "\(p): shape [\(o), \(i)]") }
                try st.declare(p + ".weight", dtype: .i8, shape: [o, i])
                try st.declare(p + ".weight_scale", dtype: scaleDType, shape: [o, 1])
                if bias { try st.declare(p + ".bias", dtype: scaleDType, shape: [o]) }
            case let .packedLinear(p, o, i, g, bits, bias):
                guard o > 0, i > 0, g > 0, (i * bits) % 32 == 0 else {
                    throw ModelIOError(
                        file: directory.path, "\(p): [\(o), \(i)] in \(g) groups cannot be packed at \(bits) bits")
                }
                try st.declare(p + ".weight_packed", dtype: .i32, shape: [o, i * bits / 32])
                try st.declare(p + ".weight_scale", dtype: scaleDType, shape: [o, g])
                try st.declare(p + ".weight_shape", dtype: .i64, shape: [2])
                if bias { try st.declare(p + ".bias", dtype: scaleDType, shape: [o]) }
            case let .tensor(name, dtype, shape):
                try st.declare(name, dtype: dtype, shape: shape)
            }
        }
        do {
            for item in items { try write(item, try contents(item), into: st) }
            try st.finish()
        } catch let e as ModelIOError {
            st.abandon()
            throw ModelIOError(file: directory.path, "\(e.file == st.url.path ? "" : e.file + ": ")\(e.what)")
        } catch {
            st.abandon()
            throw error
        }
        try writeJSON(cfg, to: tmp.appendingPathComponent("config.json"))
        let fm = FileManager.default
        for t in tokenizerFiles {
            guard fm.fileExists(atPath: t.path) else { throw ModelIOError(file: t.path, "tokenizer file not found") }
            try fm.copyItem(at: t, to: tmp.appendingPathComponent(t.lastPathComponent))
        }
        let files = try fm.contentsOfDirectory(atPath: tmp.path) + [OutputManifest.fileName]
        let manifest = try WriterOutputFile(url: tmp.appendingPathComponent(OutputManifest.fileName))
        try manifest.write(try OutputManifest.data(files: files))
        try manifest.write([0x0A])
        try manifest.commit()
        try OutputPlacement.placeDirectory(tmp, at: directory, replace: replace)
        placed = true
    }

    private static func write(_ item: Item, _ contents: Contents, into st: SafetensorsWriter) throws {
        switch (item, contents) {
        case let (.linear(p, o, i, hasBias), .linear(codes, scales, bias)):
            guard codes.count == o * i, scales.count == o, (bias != nil) == hasBias, bias.map({ $0.count == o }) ?? true
            else {
                throw ModelIOError(
                    file: p,
                    "\(codes.count) codes, \(scales.count) scales, bias \(bias?.count ?? 0) for the declared [\(o), \(i)] bias \(hasBias)"
                )
            }
            guard scales.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw ModelIOError(file: p, "weight_scale holds a negative or non-finite value")
            }
            try codes.withUnsafeBytes { try st.write(p + ".weight", bytes: $0) }
            try st.write(p + ".weight_scale", floats: scales)
            if let b = bias { try st.write(p + ".bias", floats: b) }
        case let (.packedLinear(p, o, i, g, bits, hasBias), .packed(codes, scales, bias)):
            guard codes.count == o * i, scales.count == o * g, (bias != nil) == hasBias,
                bias.map({ $0.count == o }) ?? true
            else {
                throw ModelIOError(
                    file: p,
                    "\(codes.count) codes, \(scales.count) scales, bias \(bias?.count ?? 0) for the declared [\(o), \(i)] in \(g) groups"
                )
            }
            guard codes.allSatisfy({ Int($0) < 1 << bits }), scales.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw ModelIOError(file: p, "a code exceeds \(bits) bits or a scale is negative or not finite")
            }
            var words = [Int32](repeating: 0, count: o * i * bits / 32)
            let perRow = i * bits / 32
            for r in 0..<o {
                GPTQPacking.packBits(bits: bits, count: i, value: { UInt32(codes[r * i + $0]) }) { w, v in
                    words[r * perRow + w] = Int32(bitPattern: v.littleEndian)
                }
            }
            try words.withUnsafeBytes { try st.write(p + ".weight_packed", bytes: $0) }
            try st.write(p + ".weight_scale", floats: scales)
            try [Int64(o).littleEndian, Int64(i).littleEndian].withUnsafeBytes {
                try st.write(p + ".weight_shape", bytes: $0)
            }
            if let b = bias { try st.write(p + ".bias", floats: b) }
        case let (.tensor(name, _, shape), .floats(values)):
            guard values.count == shape.reduce(1, *) else {
                throw ModelIOError(file: name, "\(values.count) values for shape \(shape)")
            }
            try st.write(name, floats: values)
        default:
            throw ModelIOError(file: item.name, "contents do not match the declared kind")
        }
    }

    /// The torch dtype name of a float DType (config.json's `torch_dtype`).
    public static func torchName(_ t: DType) -> String {
        switch t {
        case .f32: return "float32"
        case .f16: return "float16"
        default: return "bfloat16"
        }
    }

    private static func writeJSON(_ obj: Any, to url: URL) throws {
        let d = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
        let o = try WriterOutputFile(url: url)
        try o.write(d)
        try o.write([0x0A])
        try o.commit()
    }
}
