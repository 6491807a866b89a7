import Foundation
import Tensor

// A Hugging Face checkpoint whose linears are stored quantized, as config.json's
// `quantization_config` says, read back as the plain model a runtime reconstructs: each
// linear's parts become one `<prefix>.weight` tensor, dequantized to Float32 when loaded.
// Three layouts, each the one Kiln writes and its runtimes read:
//   GPTQ (quant_method "gptq"; GPTQSafetensorsWriter.swift has the layout):
//     w[o, i] = scales[g, o] * (q[i, o] - zero[g, o]), g = g_idx[i]; zero = stored + 1 in the
//     "gptq" (v1) checkpoint format, stored as is in "gptq_v2".
//   compressed-tensors "pack-quantized" (W4A16, CompressedTensorsWriter.swift):
//     weight_packed I32 [out, in * bits / 32] holds q + 2^(bits-1) packed along the input
//     dimension (lowest bits first), weight_scale [out, ngroups], weight_shape [out, in];
//     w[o, i] = weight_scale[o, i / group_size] * q.
//   compressed-tensors "int-quantized" (W8A8): weight I8 [out, in], weight_scale [out, 1];
//     w[o, i] = weight_scale[o] * weight[o, i] (the activations' run-time rounding aside).
// Every shape is checked against the others when the checkpoint is opened, and every stored
// index (g_idx) when a linear is loaded; errors name the file and the tensor.

/// How the linears of a checkpoint are stored.
enum PackedScheme: Sendable, Equatable {
    case gptq(bits: Int, groupSize: Int, zeroOffset: Int)
    case packQuantized(bits: Int, groupSize: Int)
    case intQuantized

    /// The scheme `quantization_config` names; nil for a plain checkpoint.
    static func parse(_ qc: JSONValue?) throws -> PackedScheme? {
        guard let qc, qc != .null else { return nil }
        let file = "config.json"
        guard let o = qc.object else { throw ModelIOError(file: file, "key 'quantization_config': not an object") }
        func int(_ obj: [String: JSONValue], _ key: String, _ path: String) throws -> Int {
            guard let v = obj[key]?.int else {
                throw ModelIOError(file: file, "key '\(path).\(key)': missing or not an integer")
            }
            return v
        }
        switch o["quant_method"]?.string {
        case "gptq":
            let bits = try int(o, "bits", "quantization_config")
            let group = try int(o, "group_size", "quantization_config")
            guard [2, 3, 4, 8].contains(bits) else {
                throw ModelIOError(file: file, "key 'quantization_config.bits': \(bits) (GPTQ packs 2, 3, 4 or 8)")
            }
            guard group == -1 || group > 0 else {
                throw ModelIOError(file: file, "key 'quantization_config.group_size': \(group) (-1 or positive)")
            }
            let v2 = (o["checkpoint_format"]?.string ?? "gptq") == "gptq_v2"
            return .gptq(bits: bits, groupSize: group, zeroOffset: v2 ? 0 : 1)
        case "compressed-tensors":
            let format = o["format"]?.string ?? ""
            if format == "int-quantized" { return .intQuantized }
            guard format == "pack-quantized" else {
                throw ModelIOError(
                    file: file,
                    "key 'quantization_config.format': '\(format)' (Kiln reads pack-quantized and int-quantized)")
            }
            guard let groups = o["config_groups"]?.object, groups.count == 1, let (name, g) = groups.first,
                let w = g.object?["weights"]?.object
            else {
                throw ModelIOError(
                    file: file, "key 'quantization_config.config_groups': not one group with a 'weights' scheme")
            }
            let path = "quantization_config.config_groups.\(name).weights"
            let bits = try int(w, "num_bits", path)
            guard [4, 8].contains(bits) else {
                throw ModelIOError(file: file, "key '\(path).num_bits': \(bits) (4 or 8)")
            }
            guard w["symmetric"]?.bool != false else {
                throw ModelIOError(file: file, "key '\(path).symmetric': false (Kiln reads symmetric pack-quantized)")
            }
            switch w["strategy"]?.string {
            case "group":
                let group = try int(w, "group_size", path)
                guard group > 0 else { throw ModelIOError(file: file, "key '\(path).group_size': \(group)") }
                return .packQuantized(bits: bits, groupSize: group)
            case "channel": return .packQuantized(bits: bits, groupSize: -1)
            case let s:
                throw ModelIOError(file: file, "key '\(path).strategy': \(s ?? "missing") (group or channel)")
            }
        case let m:
            throw ModelIOError(
                file: file,
                "key 'quantization_config.quant_method': \(m.map { "'\($0)'" } ?? "missing") "
                    + "(Kiln reads gptq and compressed-tensors)")
        }
    }

    /// The tensors that make up linear `prefix`'s weight, besides the `.weight` it presents.
    var partSuffixes: [String] {
        switch self {
        case .gptq: return [".qweight", ".qzeros", ".scales", ".g_idx"]
        case .packQuantized: return [".weight_packed", ".weight_scale", ".weight_shape", ".weight_g_idx"]
        case .intQuantized: return [".weight", ".weight_scale"]
        }
    }

    /// The part whose presence marks a quantized linear.
    var marker: String {
        switch self {
        case .gptq: return ".qweight"
        case .packQuantized: return ".weight_packed"
        case .intQuantized: return ".weight_scale"
        }
    }
}

/// One quantized linear: its parts' names and its dequantized shape.
struct PackedLinear: Sendable {
    var prefix: String
    var outFeatures: Int
    var inFeatures: Int
    var groupCount: Int
}

/// A safetensors checkpoint with packed linears, presented with their dequantized weights.
public final class PackedCheckpointModel: ModelView, Sendable {
    public let base: SafeTensorsModel
    let scheme: PackedScheme
    let linears: [String: PackedLinear]  // by the weight name presented
    public let tensors: [TensorInfo]
    public var url: URL { base.url }
    public var format: String { base.format }
    public var naming: TensorNaming { base.naming }
    public var config: ModelConfig { base.config }
    public var tokenizer: TokenizerSource? { base.tokenizer }
    public var metadata: [String: GGUFValue] { base.metadata }

    /// `base` itself when its config.json has no `quantization_config`.
    static func open(_ base: SafeTensorsModel) throws -> any ModelView {
        guard let scheme = try PackedScheme.parse(base.quantizationConfig) else { return base }
        return try PackedCheckpointModel(base, scheme: scheme)
    }

    init(_ base: SafeTensorsModel, scheme: PackedScheme) throws {
        self.base = base
        self.scheme = scheme
        var linears: [String: PackedLinear] = [:]
        var parts: Set<String> = []
        var tensors: [TensorInfo] = []
        let marker = scheme.marker
        for t in base.tensors where t.name.hasSuffix(marker) {
            let prefix = String(t.name.dropLast(marker.count))
            if scheme == .intQuantized, base.info(prefix + ".weight")?.dtype != .i8 { continue }
            let l = try Self.shape(prefix, scheme: scheme, base: base)
            linears[prefix + ".weight"] = l
            for s in scheme.partSuffixes { parts.insert(prefix + s) }
        }
        guard !linears.isEmpty else {
            throw ModelIOError(
                file: base.url.lastPathComponent,
                "config.json has a quantization_config but no tensor ends in \(marker)")
        }
        for t in base.tensors {
            guard parts.contains(t.name) else {
                tensors.append(t)
                continue
            }
            guard t.name.hasSuffix(marker) else { continue }
            let name = String(t.name.dropLast(marker.count)) + ".weight"
            let l = linears[name]!
            let bytes = scheme.partSuffixes.compactMap { base.info(l.prefix + $0)?.byteCount }.reduce(0, +)
            tensors.append(
                TensorInfo(
                    name: name, dtype: .f32, shape: [l.outFeatures, l.inFeatures], byteCount: bytes, file: t.file))
        }
        self.linears = linears
        self.tensors = tensors
    }

    public func info(_ name: String) -> TensorInfo? {
        if linears[name] != nil { return tensors.first { $0.name == name } }
        return base.info(name)
    }

    public func load(_ name: String) throws -> Matrix {
        guard let l = linears[name] else { return try base.load(name) }
        let w = try Self.dequantize(l, scheme: scheme, base: base)
        return Matrix(rows: l.outFeatures, cols: l.inFeatures, data: w)
    }

    public func rawBytes(_ name: String) throws -> Data {
        guard linears[name] == nil else {
            throw ModelIOError(file: url.lastPathComponent, "tensor '\(name)': stored packed, no bytes as a tensor")
        }
        return try base.rawBytes(name)
    }
}
