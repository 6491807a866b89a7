/// llama.cpp's pre-tokenizer names (GGUF tokenizer.ggml.pre) and the Hugging Face Split
/// regexes each one stands for: the one table behind `PreTokenizer(ggufName:)` and the
/// tokenizer.json built for a GGUF input, so the two cannot drift apart.
public enum PreTokenizerNames {
    /// GPT-2's regex (llama.cpp's copy lacks the final `|\s+`; both split alike).
    public static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    public static let individualDigitsRegex = #"\p{N}"#

    /// Llama 3's regex with numbers in runs of 1...`digits` (Qwen2: 1).
    public static func llama3Regex(digits: Int) -> String {
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"# + (digits == 1 ? "" : "{1,\(digits)}")
            + #"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    }

    /// Names of each family, as llama.cpp groups them (llama-vocab.cpp).
    static let gpt2 = ["gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de"]
    static let digitsThenGPT2 = ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"]
    static let llama3 = ["llama3", "llama-v3", "llama-bpe", "falcon3"]
    static let qwen2 = ["qwen2", "stablelm2", "deepseek-r1-qwen"]

    /// Every name the table knows.
    public static var all: [String] { gpt2 + digitsThenGPT2 + llama3 + qwen2 }

    /// The Split regexes, applied in order, for a GGUF pre name; nil when unknown.
    public static func splitRegexes(ggufName name: String) -> [String]? {
        if gpt2.contains(name) { return [gpt2Regex] }
        if digitsThenGPT2.contains(name) { return [individualDigitsRegex, gpt2Regex] }
        if llama3.contains(name) { return [llama3Regex(digits: 3)] }
        if qwen2.contains(name) { return [llama3Regex(digits: 1)] }
        return nil
    }

    /// llama.cpp sets ignore_merges for the Llama 3 names only.
    public static func ignoresMerges(ggufName name: String) -> Bool { llama3.contains(name) }
}
