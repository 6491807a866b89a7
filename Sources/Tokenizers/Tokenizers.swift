// Tokenizers layer: text <-> token ids. No package dependencies; every
// constructor takes plain Swift values (strings, arrays, JSON bytes) so that
// the ModelIO glue (Models/TokenizerLoading.swift) stays thin.

/// Ids of the tokens a model treats specially; nil when the vocabulary has none.
public struct SpecialTokenIDs: Sendable, Equatable {
    public var bos: Int?, eos: Int?, unk: Int?, pad: Int?
    public var cls: Int?, sep: Int?, mask: Int?

    public init(
        bos: Int? = nil, eos: Int? = nil, unk: Int? = nil, pad: Int? = nil,
        cls: Int? = nil, sep: Int? = nil, mask: Int? = nil
    ) {
        self.bos = bos
        self.eos = eos
        self.unk = unk
        self.pad = pad
        self.cls = cls
        self.sep = sep
        self.mask = mask
    }
}

public protocol Tokenizer: Sendable {
    /// Number of ids (largest id + 1).
    var vocabularySize: Int { get }
    var specialTokens: SpecialTokenIDs { get }
    /// Ids of `text` without adding any special token. Special / control tokens
    /// written in the text (e.g. "<|im_start|>", "[SEP]") become their single id.
    func encode(_ text: String) -> [Int]
    /// Ids as the model consumes them: `encode` plus the tokens the model's
    /// template adds ([CLS] ... [SEP] for BERT; BOS when the GGUF asks for it).
    func encodeForModel(_ text: String) -> [Int]
    /// Text of `ids`; special tokens are rendered as their text.
    func decode(_ ids: [Int]) -> String
    /// The vocabulary entry of one id, as stored (byte-level BPE: the mapped form).
    func token(_ id: Int) -> String?
    /// Id of a vocabulary entry, as stored.
    func id(of token: String) -> Int?
}

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// A required key is absent.
    case missing(key: String)
    /// A key holds a value this implementation does not handle.
    case unsupported(key: String, value: String)
    /// A key holds a malformed value.
    case invalid(key: String, reason: String)

    public var description: String {
        switch self {
        case let .missing(key): return "tokenizer: missing \(key)"
        case let .unsupported(key, value): return "tokenizer: unsupported \(key) = \(value)"
        case let .invalid(key, reason): return "tokenizer: invalid \(key): \(reason)"
        }
    }
}
