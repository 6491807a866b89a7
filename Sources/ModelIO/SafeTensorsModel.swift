import Foundation
import Tensor

/// A Hugging Face checkpoint: config.json plus one safetensors file or shards
/// listed in model.safetensors.index.json. Only headers are read on open.
public final class SafeTensorsModel: ModelView, Sendable {
    public let url: URL
    public var format: String { "safetensors" }
    public var naming: TensorNaming { .huggingFace }
    public let config: ModelConfig
    public let tensors: [TensorInfo]
    public let tokenizer: TokenizerSource?
    /// config.json flattened to dotted keys, plus each shard's "__metadata__"
    /// strings as "safetensors.<key>".
    public let metadata: [String: GGUFValue]
    public let shards: [SafeTensorsFile]
    /// config.json's `quantization_config` (nil when absent): see PackedCheckpointModel.
    let quantizationConfig: JSONValue?
    private let owner: [String: Int]  // tensor name -> shard index

    /// Opens the given safetensors files (in order) with config.json from `directory`.
    public init(directory: URL, files: [URL], given: URL) throws {
        url = given
        shards = try files.map { try SafeTensorsFile($0) }
        var owner: [String: Int] = [:]
        var all: [TensorInfo] = []
        for (i, s) in shards.enumerated() {
            for t in s.tensors {
                if let j = owner[t.name] {
                    throw ModelIOError(
                        file: s.url.lastPathComponent, "tensor '\(t.name)': also in \(shards[j].url.lastPathComponent)")
                }
                owner[t.name] = i
                all.append(t)
            }
        }
        self.owner = owner
        tensors = all

        let configURL = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw ModelIOError(
                file: "config.json",
                "missing beside \(files.first?.lastPathComponent ?? directory.lastPathComponent) (in \(directory.path))"
            )
        }
        let json = try Self.readJSON(configURL)
        guard let object = json.object else { throw ModelIOError(file: "config.json", "not a JSON object") }
        var meta: [String: GGUFValue] = [:]
        json.flatten(prefix: "", into: &meta)
        for s in shards { for (k, v) in s.metadata { meta["safetensors.\(k)"] = .string(v) } }
        metadata = meta
        quantizationConfig = object["quantization_config"]
        // A packed linear (GPTQ qweight, compressed-tensors weight_packed) counts as its weight.
        let names = Set(all.map(\.name))
        config = try Self.config(
            object,
            has: { n in
                guard n.hasSuffix(".weight") else { return names.contains(n) }
                let stem = n.dropLast(".weight".count)
                return names.contains(n) || names.contains(stem + ".qweight") || names.contains(stem + ".weight_packed")
            })

        let tokJSON = directory.appendingPathComponent("tokenizer.json")
        let vocab = directory.appendingPathComponent("vocab.txt")
        if FileManager.default.fileExists(atPath: tokJSON.path) {
            tokenizer = .tokenizerJSON(tokJSON)
        } else if FileManager.default.fileExists(atPath: vocab.path) {
            tokenizer = .vocabTxt(vocab)
        } else {
            tokenizer = nil
        }
    }

    /// Opens a sharded checkpoint through its index ({"weight_map": {tensor: shard file}}),
    /// checking that every tensor of the map is in the shard it names.
    public convenience init(index: URL, given: URL) throws {
        let name = index.lastPathComponent
        guard let map = try Self.readJSON(index).object?["weight_map"]?.object else {
            throw ModelIOError(file: name, "key 'weight_map': missing or not an object")
        }
        var files: [String] = []
        for (tensor, v) in map.sorted(by: { $0.key < $1.key }) {
            guard let f = v.string else {
                throw ModelIOError(file: name, "tensor '\(tensor)': shard name is not a string")
            }
            // Shards live beside the index; a path could point anywhere.
            guard !f.isEmpty, !f.contains("/"), !f.contains("\\"), f != "..", f != "." else {
                throw ModelIOError(file: name, "tensor '\(tensor)': shard name '\(f)' is not a plain file name")
            }
            if !files.contains(f) { files.append(f) }
        }
        guard !files.isEmpty else { throw ModelIOError(file: name, "key 'weight_map': empty") }
        let dir = index.deletingLastPathComponent()
        try self.init(directory: dir, files: files.sorted().map { dir.appendingPathComponent($0) }, given: given)
        for (tensor, v) in map {
            let f = v.string ?? ""
            guard let i = owner[tensor], shards[i].url.lastPathComponent == f else {
                throw ModelIOError(file: name, "tensor '\(tensor)': not found in shard \(f)")
            }
        }
    }

    /// A JSON file beside the weights is a few KiB to a few MiB (an index of every tensor).
    static let maxJSONBytes = 256 << 20

    static func readJSON(_ url: URL) throws -> JSONValue {
        var data = Data()
        do {
            let size = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
            guard size <= maxJSONBytes else {
                throw ModelIOError(file: url.lastPathComponent, "\(size) bytes, more than a JSON file here may hold")
            }
            // An empty file is not read: Foundation's reader of a zero-length file leaks its
            // buffer (LeakSanitizer, Ops/fuzz.sh safetensors), and its content is known.
            if size > 0 { data = try Data(contentsOf: url) }
        } catch let e as ModelIOError {
            throw e
        } catch {
            throw ModelIOError(file: url.lastPathComponent, "cannot read: \(error.localizedDescription)")
        }
        return try JSONValue.parse(data, file: url.lastPathComponent, what: "content")
    }

    func shard(_ name: String) throws -> SafeTensorsFile {
        guard let i = owner[name] else {
            throw ModelIOError(file: url.lastPathComponent, "tensor '\(name)': not found")
        }
        return shards[i]
    }

    public func info(_ name: String) -> TensorInfo? { owner[name].flatMap { shards[$0].tensor(name)?.info } }
    public func load(_ name: String) throws -> Matrix { try shard(name).load(name) }
    public func rawBytes(_ name: String) throws -> Data { try shard(name).rawBytes(name) }

    /// Where a tensor's stored bytes are: its shard file and their absolute range there.
    public func stored(_ name: String) throws -> (url: URL, range: Range<Int>) {
        let f = try shard(name)
        guard let t = f.tensor(name) else {
            throw ModelIOError(file: f.url.lastPathComponent, "tensor '\(name)': not found")
        }
        return (f.url, t.range)
    }

    /// ModelConfig from a Hugging Face config.json (llama/mistral/qwen2, bert).
    static func config(_ c: [String: JSONValue], has: (String) -> Bool) throws -> ModelConfig {
        let file = "config.json"
        func int(_ key: String, default d: Int? = nil) throws -> Int {
            guard let v = c[key], v != .null else {
                if let d { return d }
                throw ModelIOError(file: file, "key '\(key)': missing")
            }
            guard let i = v.int, i >= 0 else {
                throw ModelIOError(file: file, "key '\(key)': \(v) is not a non-negative integer")
            }
            return i
        }
        func float(_ key: String, default d: Float) throws -> Float {
            guard let v = c[key], v != .null else { return d }
            guard let x = v.double else { throw ModelIOError(file: file, "key '\(key)': \(v) is not a finite number") }
            return Float(x)
        }
        guard let type = c["model_type"]?.string?.lowercased() else {
            throw ModelIOError(file: file, "key 'model_type': missing")
        }
        let heads = try int("num_attention_heads")
        guard heads > 0 else { throw ModelIOError(file: file, "key 'num_attention_heads': must be positive") }
        if Architecture(name: type) == .bert {
            return ModelConfig(
                architecture: Architecture.bert.rawValue, vocabSize: try int("vocab_size"),
                hiddenSize: try int("hidden_size"),
                intermediateSize: try int("intermediate_size"), layerCount: try int("num_hidden_layers"),
                headCount: heads, kvHeadCount: heads, contextLength: try int("max_position_embeddings", default: 512),
                normEps: try float("layer_norm_eps", default: 1e-12), ropeTheta: 0, tiedEmbeddings: false,
                typeVocabSize: try int("type_vocab_size", default: 2), attentionBias: true)
        }
        guard let arch = Architecture(name: type), arch.isCausal else {
            throw ModelIOError(
                file: file, "key 'model_type': unsupported '\(type)' (supported: \(Architecture.list()))")
        }
        return ModelConfig(
            architecture: arch.rawValue, vocabSize: try int("vocab_size"), hiddenSize: try int("hidden_size"),
            intermediateSize: try int("intermediate_size"), layerCount: try int("num_hidden_layers"),
            headCount: heads, kvHeadCount: try int("num_key_value_heads", default: heads),
            contextLength: try int("max_position_embeddings", default: 0),
            normEps: try float("rms_norm_eps", default: 1e-6), ropeTheta: try float("rope_theta", default: 10000),
            tiedEmbeddings: !has("lm_head.weight"),
            attentionBias: has("model.layers.0.self_attn.q_proj.bias") || c["attention_bias"]?.bool == true)
    }
}
