/// The model architectures Kiln runs: the one list the readers, the model loaders, job
/// validation and their error messages share. A config's `architecture` is one of these
/// raw values when the reader recognised the model.
public enum Architecture: String, Sendable, CaseIterable {
    case llama, mistral, qwen2, bert

    /// Causal language models sharing llama's tensor layout (Qwen2 adds q/k/v biases and
    /// keeps NeoX RoPE order in GGUF); the only ones `kiln run` quantizes.
    public var isCausal: Bool { self != .bert }

    public static var causal: [Architecture] { allCases.filter(\.isCausal) }

    /// Other names files give a supported architecture (llama.cpp's SmolLM converter).
    static let aliases: [String: Architecture] = ["smollm": .llama]

    /// From a file's architecture / model_type name, case-insensitively; nil when unsupported.
    public init?(name: String) {
        let n = name.lowercased()
        guard let a = Architecture(rawValue: n) ?? Self.aliases[n] else { return nil }
        self = a
    }

    /// "llama, mistral, qwen2", for error messages.
    public static func list(_ archs: [Architecture] = allCases) -> String {
        archs.map(\.rawValue).joined(separator: ", ")
    }
}
