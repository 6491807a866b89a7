import Foundation
import Tensor

// The contract every reader (GGUF, safetensors) fulfils: a model's header,
// hyper-parameters and tensor table are available without reading any weight;
// each tensor is read (and dequantized to Float32) only when asked for.

/// Storage type of a tensor in a file.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    case q8_0 = "Q8_0", q4_0 = "Q4_0", q4_1 = "Q4_1", q5_0 = "Q5_0", q5_1 = "Q5_1"
    case q2_K = "Q2_K", q3_K = "Q3_K", q4_K = "Q4_K", q5_K = "Q5_K", q6_K = "Q6_K"
    case i32 = "I32", i64 = "I64", i8 = "I8", i16 = "I16", u8 = "U8", f64 = "F64"
}

/// One entry of a file's tensor table.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    /// Outermost dimension first (PyTorch order): a linear weight is [out, in].
    /// GGUF stores ne[] innermost first; readers reverse it.
    public var shape: [Int]
    /// Bytes the tensor occupies in its file.
    public var byteCount: Int
    /// Which file holds it (shards).
    public var file: URL

    public init(name: String, dtype: DType, shape: [Int], byteCount: Int, file: URL) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteCount = byteCount
        self.file = file
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The Matrix a load gives: [r, c] -> r x c; [n] -> 1 x n; [] -> 1 x 1; higher ranks ->
    /// (product of outer dims) x innermost. Readers check on open that the product fits.
    public var matrixShape: (rows: Int, cols: Int) { (checkedProduct(Array(shape.dropLast())) ?? 0, shape.last ?? 1) }
}

/// How tensor names and the q/k row order are laid out.
public enum TensorNaming: String, Sendable {
    /// llama.cpp names (blk.N.attn_q.weight); q/k rows permuted for GGUF's RoPE.
    case gguf
    /// Hugging Face names (model.layers.N.self_attn.q_proj.weight).
    case huggingFace
}

/// Hyper-parameters of a transformer, read from GGUF metadata or config.json.
public struct ModelConfig: Sendable, Equatable, Codable {
    /// An `Architecture` raw value ("llama", "qwen2", "bert"...) when the reader recognised
    /// the model, else the file's own name for it.
    public var architecture: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var contextLength: Int
    public var normEps: Float
    public var ropeTheta: Float
    /// true when the output head reuses the token embedding.
    public var tiedEmbeddings: Bool
    /// BERT: token type vocabulary (0 for decoder models).
    public var typeVocabSize: Int
    /// Whether q/k/v/o projections carry a bias (Qwen2: q/k/v do).
    public var attentionBias: Bool

    public init(
        architecture: String, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, layerCount: Int,
        headCount: Int, kvHeadCount: Int, contextLength: Int, normEps: Float, ropeTheta: Float,
        tiedEmbeddings: Bool, typeVocabSize: Int = 0, attentionBias: Bool = false
    ) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.contextLength = contextLength
        self.normEps = normEps
        self.ropeTheta = ropeTheta
        self.tiedEmbeddings = tiedEmbeddings
        self.typeVocabSize = typeVocabSize
        self.attentionBias = attentionBias
    }

    public var headDim: Int { hiddenSize / headCount }
}

/// Where a tokenizer's definition lives.
public enum TokenizerSource: Sendable {
    /// GGUF metadata: tokenizer.ggml.model / tokens / merges / pre / token_type and special ids.
    case ggufMetadata([String: GGUFValue])
    /// A Hugging Face tokenizer.json file.
    case tokenizerJSON(URL)
    /// A BERT vocab.txt (one token per line).
    case vocabTxt(URL)
}

/// A value of GGUF metadata (every GGUF value type).
public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    public var int: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return v <= UInt64(Int.max) ? Int(v) : nil
        case let .int64(v): return Int(v)
        case let .bool(v): return v ? 1 : 0
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return int.map(Double.init)
        }
    }
    public var string: String? {
        if case let .string(s) = self { return s }
        return nil
    }
    public var array: [GGUFValue]? {
        if case let .array(a) = self { return a }
        return nil
    }
    public var bool: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }
}

/// Errors from reading model files. Each names the file and the tensor or key.
public struct ModelIOError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var what: String
    public init(file: String, _ what: String) {
        self.file = file
        self.what = what
    }
    public var description: String { "\(file): \(what)" }
}

/// One model, whatever its file format: opened from a .gguf file, a .safetensors
/// file, or a Hugging Face directory (config.json + shards + index.json).
public protocol ModelView: AnyObject, Sendable {
    /// The path the user gave.
    var url: URL { get }
    var format: String { get }  // "gguf" or "safetensors"
    var naming: TensorNaming { get }
    var config: ModelConfig { get }
    /// Tensor table, in file order.
    var tensors: [TensorInfo] { get }
    var tokenizer: TokenizerSource? { get }
    /// Raw metadata (GGUF key-values, or config.json flattened to GGUF-like values).
    var metadata: [String: GGUFValue] { get }
    /// Reads one tensor and dequantizes it to Float32, in shape order: a 2-D
    /// tensor [r, c] becomes Matrix(rows: r, cols: c); a 1-D tensor [n] becomes 1 x n.
    func load(_ name: String) throws -> Matrix
    /// Raw bytes of one tensor as stored (for copying unchanged tensors to output).
    func rawBytes(_ name: String) throws -> Data
    /// The table entry of one tensor; readers with a name index answer without a scan.
    func info(_ name: String) -> TensorInfo?
}

extension ModelView {
    public func info(_ name: String) -> TensorInfo? { tensors.first { $0.name == name } }  // default: scan
    public func has(_ name: String) -> Bool { info(name) != nil }
}
