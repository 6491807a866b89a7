import Foundation
import Tensor

/// A model opened from a GGUF file: hyper-parameters from `<arch>.*` metadata,
/// llama.cpp tensor names, tokenizer from `tokenizer.ggml.*`.
public final class GGUFModel: ModelView, Sendable {
    public let file: GGUFFile
    public let config: ModelConfig
    public var url: URL { file.url }
    public var format: String { "gguf" }
    public var naming: TensorNaming { .gguf }
    public var tensors: [TensorInfo] { file.tensors }
    public var metadata: [String: GGUFValue] { file.metadata }
    public let tokenizer: TokenizerSource?

    public convenience init(_ url: URL) throws { try self.init(file: GGUFFile(url)) }

    public init(file: GGUFFile) throws {
        self.file = file
        config = try Self.config(of: file)
        tokenizer =
            file.metadataKeys.contains { $0.hasPrefix("tokenizer.ggml.") }
            ? .ggufMetadata(file.metadata.filter { $0.key.hasPrefix("tokenizer.") }) : nil
    }

    public func load(_ name: String) throws -> Matrix { try file.load(name) }
    public func info(_ name: String) -> TensorInfo? { file.tensor(name)?.info }
    public func rawBytes(_ name: String) throws -> Data { try file.rawBytes(name) }

    static func config(of f: GGUFFile) throws -> ModelConfig {
        let name = f.url.lastPathComponent
        guard let arch = f.metadata["general.architecture"]?.string else {
            throw ModelIOError(file: name, "key 'general.architecture': missing")
        }
        func value(_ suffix: String) -> GGUFValue? { f.metadata["\(arch).\(suffix)"] }
        func int(_ suffix: String, default d: Int? = nil) throws -> Int {
            let key = "\(arch).\(suffix)"
            guard let v = f.metadata[key] else {
                if let d { return d }
                throw ModelIOError(file: name, "key '\(key)': missing")
            }
            guard let i = v.int, i >= 0 else {
                throw ModelIOError(file: name, "key '\(key)': \(v) is not a non-negative integer")
            }
            return i
        }
        func float(_ suffixes: [String], default d: Float) throws -> Float {
            for s in suffixes {
                guard let v = value(s) else { continue }
                guard let x = v.double, x.isFinite else {
                    throw ModelIOError(file: name, "key '\(arch).\(s)': \(v) is not a finite number")
                }
                return Float(x)
            }
            return d
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        guard heads > 0 else { throw ModelIOError(file: name, "key '\(arch).attention.head_count': must be positive") }
        let vocab: Int
        if let tokens = f.metadata["tokenizer.ggml.tokens"]?.array {
            vocab = tokens.count
        } else if value("vocab_size") != nil {
            vocab = try int("vocab_size")
        } else {
            vocab = f.tensor("token_embd.weight")?.info.shape.first ?? 0
        }
        return ModelConfig(
            architecture: Architecture(name: arch)?.rawValue ?? arch,
            vocabSize: vocab,
            hiddenSize: hidden,
            intermediateSize: try int("feed_forward_length"),
            layerCount: try int("block_count"),
            headCount: heads,
            kvHeadCount: try int("attention.head_count_kv", default: heads),
            contextLength: try int("context_length", default: 0),
            normEps: try float(["attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon"], default: 1e-5),
            ropeTheta: try float(["rope.freq_base"], default: 10000),
            tiedEmbeddings: f.tensor("output.weight") == nil,
            typeVocabSize: f.tensor("token_types.weight")?.info.shape.first ?? 0,
            attentionBias: f.tensor("blk.0.attn_q.bias") != nil)
    }
}
