import Foundation
import ModelIO
import Tensor
import TestSupport
import XCTest

final class GPTQWriterTests: XCTestCase {
    var dir: URL!
    override func setUp() { dir = Paths.tempDir("gptq-writer") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// A random quantized linear as a GPTQ quantizer would produce it.
    func makeLinear(
        _ prefix: String, out: Int, in n: Int, bits: Int, group: Int, actOrder: Bool, bias: Bool,
        rng: inout TestRNG, minZero: Int = 1
    ) -> GPTQLinear {
        let maxq = (1 << bits) - 1
        let ng = GPTQPacking.groupCount(inFeatures: n, groupSize: group)
        var gIdx = GPTQPacking.sequentialGIdx(inFeatures: n, groupSize: group)
        if actOrder && group != -1 {
            // perm: the order columns were quantized in; group = position in that order / group.
            var perm = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) { perm.swapAt(i, rng.int(i + 1)) }
            for (k, col) in perm.enumerated() { gIdx[col] = k / group }
        }
        return GPTQLinear(
            prefix: prefix, outFeatures: out, inFeatures: n, bits: bits, groupSize: group,
            codes: (0..<(out * n)).map { _ in UInt8(rng.int(maxq + 1)) },
            scales: (0..<(out * ng)).map { _ in 0.001 + abs(rng.float()) * 0.05 },
            zeros: (0..<(out * ng)).map { _ in minZero + rng.int(maxq + 1 - minZero) },
            gIdx: gIdx,
            bias: bias ? rng.floats(out) : nil)
    }

    // MARK: Packing

    func testPackingMatchesAutoGPTQLayout() throws {
        // AutoGPTQ's loop, restated: 2/4/8 bits: value j of a word at bit bits*j.
        // 3 bits: 32 values in 3 words; value 10 = word0 bits 30-31 + word1 bit 0,
        // value 21 = word1 bit 31 + word2 bits 0-1.
        var rng = TestRNG(1)
        for bits in [2, 3, 4, 8] {
            let n = 64
            let v = (0..<n).map { _ in UInt32(rng.int(1 << bits)) }
            var expected = [UInt32](repeating: 0, count: n * bits / 32)
            var i = 0
            var row = 0
            while row < expected.count {
                if bits != 3 {
                    for j in i..<(i + 32 / bits) { expected[row] |= v[j] << UInt32(bits * (j - i)) }
                    i += 32 / bits
                    row += 1
                } else {
                    for j in i..<(i + 10) { expected[row] |= v[j] << UInt32(3 * (j - i)) }
                    i += 10
                    expected[row] |= v[i] << 30
                    row += 1
                    expected[row] |= (v[i] >> 2) & 1
                    i += 1
                    for j in i..<(i + 10) { expected[row] |= v[j] << UInt32(3 * (j - i) + 1) }
                    i += 10
                    expected[row] |= v[i] << 31
                    row += 1
                    expected[row] |= (v[i] >> 1) & 3
                    i += 1
                    for j in i..<(i + 10) { expected[row] |= v[j] << UInt32(3 * (j - i) + 2) }
                    i += 10
                    row += 1
                }
            }
            // One output column: qweight [n*bits/32, 1].
            let q = GPTQPacking.packQWeight(codes: v.map { UInt8($0) }, outFeatures: 1, inFeatures: n, bits: bits)
            XCTAssertEqual(q.map { UInt32(bitPattern: $0) }, expected, "bits \(bits)")
            // qzeros packs along the output dimension the same way, storing zero - 1.
            let z = GPTQPacking.packQZeros(zeros: v.map { Int($0) + 1 }, outFeatures: n, groupCount: 1, bits: bits)
            XCTAssertEqual(z.map { UInt32(bitPattern: $0) }, expected, "bits \(bits)")
            XCTAssertEqual(GPTQPacking.unpackQWeight(q, outFeatures: 1, inFeatures: n, bits: bits), v.map { UInt8($0) })
        }
        // 4 bits by hand: values 1..8 -> 0x87654321.
        XCTAssertEqual(
            GPTQPacking.packQWeight(codes: [1, 2, 3, 4, 5, 6, 7, 8], outFeatures: 1, inFeatures: 8, bits: 4),
            [Int32(bitPattern: 0x8765_4321)])
    }

    func testPackUnpackRoundTrip() throws {
        var rng = TestRNG(2)
        for (bits, group, out, n) in [(2, -1, 16, 64), (3, 40, 32, 96), (4, 64, 24, 96), (8, 32, 12, 64)] {
            let l = makeLinear("l", out: out, in: n, bits: bits, group: group, actOrder: true, bias: false, rng: &rng)
            try l.validate()
            let q = GPTQPacking.packQWeight(codes: l.codes, outFeatures: out, inFeatures: n, bits: bits)
            XCTAssertEqual(q.count, n * bits / 32 * out)
            XCTAssertEqual(GPTQPacking.unpackQWeight(q, outFeatures: out, inFeatures: n, bits: bits), l.codes)
            let z = GPTQPacking.packQZeros(zeros: l.zeros, outFeatures: out, groupCount: l.groupCount, bits: bits)
            XCTAssertEqual(GPTQPacking.unpackQZeros(z, outFeatures: out, groupCount: l.groupCount, bits: bits), l.zeros)
        }
    }

    // MARK: Writer + independent numpy check

    struct Case {
        var bits: Int
        var group: Int
        var format: GPTQConfig.CheckpointFormat = .gptq
        var linears: [(String, Int, Int, Bool, Bool)]  // prefix, out, in, actOrder, bias
        var shardBytes: Int? = nil
    }

    func writeModel(
        _ c: Case, to out: URL, rng: inout TestRNG, tokenizer: [URL] = []
    ) throws -> ([GPTQLinear], [(String, DType, [Int], [Float])]) {
        let cfg = GPTQConfig(
            bits: c.bits, groupSize: c.group, descAct: c.linears.contains { $0.3 }, sym: false,
            checkpointFormat: c.format)
        let modelConfig = Data(
            #"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"model_type":"llama","torch_dtype":"bfloat16"}"#
                .utf8)
        let w = try GPTQSafetensorsWriter(
            directory: out, config: cfg, modelConfig: modelConfig, tokenizerFiles: tokenizer,
            maxShardBytes: c.shardBytes)
        let dense: [(String, DType, [Int], [Float])] = [
            ("model.embed_tokens.weight", .f16, [10, 64], rng.floats(640)),
            ("model.norm.weight", .f32, [64], rng.floats(64)),
            ("lm_head.weight", .bf16, [10, 64], rng.floats(640)),
        ]
        try w.declareTensor(dense[0].0, dtype: dense[0].1, shape: dense[0].2)
        var lins: [GPTQLinear] = []
        for (p, o, i, act, b) in c.linears {
            try w.declareLinear(p, outFeatures: o, inFeatures: i, bias: b)
            lins.append(
                makeLinear(
                    p, out: o, in: i, bits: c.bits, group: c.group, actOrder: act, bias: b, rng: &rng,
                    minZero: c.format == .gptq ? 1 : 0))
        }
        for d in dense.dropFirst() { try w.declareTensor(d.0, dtype: d.1, shape: d.2) }
        try w.writeTensor(dense[0].0, floats: dense[0].3)
        for l in lins { try w.writeLinear(l) }
        for d in dense.dropFirst() { try w.writeTensor(d.0, floats: d.3) }
        try w.finish()
        return (lins, dense)
    }

    func rounded(_ x: [Float], _ t: DType) -> [Float] {
        switch t {
        case .f16: return x.map { HalfConversion.f16ToF32(HalfConversion.f32ToF16($0)) }
        case .bf16: return x.map { HalfConversion.bf16ToF32(HalfConversion.f32ToBF16($0)) }
        default: return x
        }
    }

    func testNumpyDequantizationMatches() throws {
        var rng = TestRNG(5)
        let tok = dir.appendingPathComponent("tokenizer.json")
        try Data(#"{"model":{}}"#.utf8).write(to: tok)
        let cases = [
            Case(
                bits: 2, group: -1,
                linears: [
                    ("model.layers.0.self_attn.q_proj", 32, 64, false, false),
                    ("model.layers.0.mlp.down_proj", 16, 128, false, true),
                ]),
            Case(
                bits: 3, group: 40,
                linears: [
                    ("model.layers.0.self_attn.q_proj", 32, 96, true, true),
                    ("model.layers.0.self_attn.o_proj", 64, 64, false, false),
                ]),
            Case(
                bits: 4, group: 64,
                linears: [
                    ("model.layers.0.self_attn.q_proj", 16, 96, false, false),
                    ("model.layers.0.self_attn.k_proj", 24, 96, true, true),
                    ("model.layers.1.mlp.up_proj", 8, 160, true, false),
                ], shardBytes: 2048),
            Case(
                bits: 8, group: 32,
                linears: [
                    ("model.layers.0.mlp.gate_proj", 12, 64, true, true),
                    ("model.layers.0.mlp.up_proj", 4, 80, false, false),
                ]),
            Case(
                bits: 4, group: 32, format: .gptqV2, linears: [("model.layers.0.self_attn.v_proj", 8, 64, true, false)]),
        ]
        for (k, c) in cases.enumerated() {
            let out = dir.appendingPathComponent("model-\(k)")
            let (lins, dense) = try writeModel(c, to: out, rng: &rng, tokenizer: [tok])
            XCTAssertEqual(partials(of: out.lastPathComponent, in: dir), [])
            let files = fileNames(in: out)
            XCTAssertTrue(
                files.contains("config.json") && files.contains("quantize_config.json")
                    && files.contains("tokenizer.json"), "\(files)")
            if c.shardBytes != nil {
                XCTAssertTrue(files.contains("model.safetensors.index.json"), "\(files)")
                XCTAssertGreaterThan(files.filter { $0.hasSuffix(".safetensors") }.count, 1)
            } else {
                XCTAssertTrue(files.contains("model.safetensors"))
            }
            let j = try PythonCheck.run("Ops/check_gptq_safetensors.py", [out.path], modules: ["numpy"])
            let qc = j["quantization_config"] as! [String: Any]
            XCTAssertEqual(qc["quant_method"] as? String, "gptq")
            XCTAssertEqual(qc["bits"] as? Int, c.bits)
            XCTAssertEqual(qc["group_size"] as? Int, c.group)
            XCTAssertEqual(qc["desc_act"] as? Bool, c.linears.contains { $0.3 })
            XCTAssertEqual(qc["sym"] as? Bool, false)
            XCTAssertEqual(qc["true_sequential"] as? Bool, true)
            XCTAssertEqual((qc["damp_percent"] as? NSNumber)?.doubleValue, 0.01)
            XCTAssertEqual(qc["checkpoint_format"] as? String, c.format.rawValue)
            XCTAssertEqual((j["quantize_config"] as! [String: Any])["bits"] as? Int, c.bits)
            let modelCfg = j["config"] as! [String: Any]
            XCTAssertEqual(modelCfg["model_type"] as? String, "llama")
            XCTAssertEqual(modelCfg["hidden_size"] as? Int, 64)
            let tinfo = j["tensors"] as! [String: [String: Any]]
            let linJSON = j["linears"] as! [String: [String: Any]]
            XCTAssertEqual(Set(linJSON.keys), Set(lins.map(\.prefix)))
            for l in lins {
                let p = l.prefix
                let ng = l.groupCount
                XCTAssertEqual(
                    tinfo[p + ".qweight"]?["shape"] as? [Int], [l.inFeatures * c.bits / 32, l.outFeatures], p)
                XCTAssertEqual(tinfo[p + ".qweight"]?["dtype"] as? String, "I32")
                XCTAssertEqual(tinfo[p + ".qzeros"]?["shape"] as? [Int], [ng, l.outFeatures * c.bits / 32], p)
                XCTAssertEqual(tinfo[p + ".scales"]?["shape"] as? [Int], [ng, l.outFeatures], p)
                XCTAssertEqual(tinfo[p + ".scales"]?["dtype"] as? String, "F16")
                XCTAssertEqual(tinfo[p + ".g_idx"]?["shape"] as? [Int], [l.inFeatures], p)
                let e = linJSON[p]!
                XCTAssertEqual(e["shape"] as? [Int], [l.outFeatures, l.inFeatures])
                XCTAssertEqual(
                    jsonBits(e["w_bits"]), l.dequantized().data.map(\.bitPattern),
                    "\(p) bits \(c.bits): numpy dequantization differs")
                if let b = l.bias {
                    XCTAssertEqual(jsonBits(e["bias_bits"]), rounded(b, .f16).map(\.bitPattern), p)
                } else {
                    XCTAssertNil(e["bias_bits"])
                }
            }
            let dj = j["dense"] as! [String: [String: Any]]
            for (n, t, s, v) in dense {
                XCTAssertEqual(dj[n]?["shape"] as? [Int], s, n)
                XCTAssertEqual(tinfo[n]?["dtype"] as? String, t.rawValue, n)
                XCTAssertEqual(jsonBits(dj[n]?["f32_bits"]), rounded(v, t).map(\.bitPattern), n)
            }
        }
    }

    /// Round trip through ModelIO's safetensors reader: openModel on the
    /// output directory (sharded, with index.json), raw tensors and dense values.
    func testRoundTripThroughModelIOReader() throws {
        var rng = TestRNG(8)
        let out = dir.appendingPathComponent("rt")
        let cfg = GPTQConfig(bits: 4, groupSize: 32, descAct: true, sym: false)
        let modelConfig = Data(
            #"{"model_type":"llama","vocab_size":10,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"rms_norm_eps":1e-5}"#
                .utf8)
        let w = try GPTQSafetensorsWriter(directory: out, config: cfg, modelConfig: modelConfig, maxShardBytes: 1500)
        let emb = rng.floats(640)
        let norm = rng.floats(64)
        try w.declareTensor("model.embed_tokens.weight", dtype: .f16, shape: [10, 64])
        let lins = [
            makeLinear(
                "model.layers.0.self_attn.q_proj", out: 64, in: 64, bits: 4, group: 32, actOrder: true, bias: true,
                rng: &rng),
            makeLinear(
                "model.layers.0.mlp.down_proj", out: 64, in: 128, bits: 4, group: 32, actOrder: true, bias: false,
                rng: &rng),
        ]
        for l in lins {
            try w.declareLinear(l.prefix, outFeatures: l.outFeatures, inFeatures: l.inFeatures, bias: l.bias != nil)
        }
        try w.declareTensor("model.norm.weight", dtype: .f32, shape: [64])
        try w.writeTensor("model.embed_tokens.weight", floats: emb)
        for l in lins { try w.writeLinear(l) }
        try w.writeTensor("model.norm.weight", floats: norm)
        try w.finish()
        XCTAssertTrue(fileNames(in: out).contains("model.safetensors.index.json"), "\(fileNames(in: out))")

        // openModel presents each linear as its dequantized weight; the stored parts are the base's.
        let packed = try XCTUnwrap(try openModel(out) as? PackedCheckpointModel)
        XCTAssertEqual(Set(packed.tensors.map(\.name)).count, 2 + 2 + 1)
        for l in lins { XCTAssertEqual(try packed.load(l.prefix + ".weight").data, l.dequantized().data, l.prefix) }
        let m = packed.base
        XCTAssertEqual(m.format, "safetensors")
        XCTAssertEqual(m.config.hiddenSize, 64)
        XCTAssertEqual(Set(m.tensors.map(\.name)).count, 2 + 4 * 2 + 1)
        XCTAssertEqual(m.metadata["quantization_config.bits"]?.int, 4, "\(m.metadata.keys.sorted())")
        XCTAssertEqual(try m.load("model.embed_tokens.weight").data, rounded(emb, .f16))
        XCTAssertEqual(try m.load("model.norm.weight").data, norm)
        for l in lins {
            let ng = l.groupCount
            let qw = try m.rawBytes(l.prefix + ".qweight")
            let expected = GPTQPacking.packQWeight(
                codes: l.codes, outFeatures: l.outFeatures, inFeatures: l.inFeatures, bits: 4)
            XCTAssertEqual(qw, expected.withUnsafeBytes { Data($0) }, l.prefix)
            XCTAssertEqual(m.info(l.prefix + ".qweight")?.shape, [l.inFeatures / 8, l.outFeatures])
            XCTAssertEqual(m.info(l.prefix + ".qzeros")?.dtype, .i32)
            let sc = try m.load(l.prefix + ".scales")
            XCTAssertEqual(sc.rows, ng)
            for o in 0..<l.outFeatures {
                for g in 0..<ng { XCTAssertEqual(sc[g, o], Float(Float16(l.scales[o * ng + g]))) }
            }
            let zeros = try m.rawBytes(l.prefix + ".qzeros").withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
            XCTAssertEqual(
                GPTQPacking.unpackQZeros(zeros, outFeatures: l.outFeatures, groupCount: ng, bits: 4), l.zeros)
            XCTAssertEqual(try m.load(l.prefix + ".g_idx").data, l.gIdx.map(Float.init))
            if let b = l.bias { XCTAssertEqual(try m.load(l.prefix + ".bias").data, rounded(b, .f16)) }
        }
    }

    /// A plain tensor copied as stored from a safetensors shard (a piece at a time) gives
    /// the files writing it from its values gives.
    func testACopiedPlainTensorIsWrittenAsFromMemory() throws {
        var rng = TestRNG(9)
        let cfg = GPTQConfig(bits: 4, groupSize: 32, descAct: false, sym: true)
        let emb = rng.floats(64 * 300)
        let lin = makeLinear(
            "model.layers.0.self_attn.q_proj", out: 64, in: 64, bits: 4, group: 32, actOrder: false, bias: false,
            rng: &rng)
        func write(_ name: String, embedding: (GPTQSafetensorsWriter) throws -> Void) throws -> URL {
            let out = dir.appendingPathComponent(name)
            let modelConfig = Data(
                #"{"model_type":"llama","vocab_size":300,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"rms_norm_eps":1e-5}"#
                    .utf8)
            let w = try GPTQSafetensorsWriter(
                directory: out, config: cfg, modelConfig: modelConfig, maxShardBytes: 30_000)
            try w.declareTensor("model.embed_tokens.weight", dtype: .f16, shape: [300, 64])
            try w.declareLinear(lin.prefix, outFeatures: 64, inFeatures: 64)
            try embedding(w)
            try w.writeLinear(lin)
            try w.finish()
            return out
        }
        let fromMemory = try write("plain-memory") { try $0.writeTensor("model.embed_tokens.weight", floats: emb) }
        let source = try XCTUnwrap(try openModel(fromMemory) as? PackedCheckpointModel).base
        let (file, range) = try source.stored("model.embed_tokens.weight")
        let copied = try write("plain-copied") {
            try $0.writeTensor("model.embed_tokens.weight", copying: range, of: file)
        }
        let names = fileNames(in: fromMemory).filter { $0.hasSuffix(".safetensors") }
        XCTAssertEqual(names.count, 2, "the embedding and the linear in two shards: \(names)")
        for n in names {
            XCTAssertEqual(
                try Data(contentsOf: copied.appendingPathComponent(n)),
                try Data(contentsOf: fromMemory.appendingPathComponent(n)), n)
        }
        // A range shorter than declared fails the write and leaves no output.
        let short = dir.appendingPathComponent("plain-short")
        let w = try GPTQSafetensorsWriter(directory: short, config: cfg)
        try w.declareTensor("model.embed_tokens.weight", dtype: .f16, shape: [300, 64])
        XCTAssertThrowsError(
            try w.writeTensor("model.embed_tokens.weight", copying: range.lowerBound..<(range.upperBound - 2), of: file)
        ) { XCTAssertTrue("\($0)".contains("model.embed_tokens.weight"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: short.path))
    }

    func testDequantizedMatchesFormula() throws {
        // w = fp16(scale[o, g_idx[i]]) * (q - zero[o, g_idx[i]]), partial last group, act-order.
        var rng = TestRNG(9)
        let l = makeLinear("x", out: 32, in: 96, bits: 3, group: 40, actOrder: true, bias: false, rng: &rng)
        XCTAssertEqual(l.groupCount, 3)
        let m = l.dequantized()
        for (o, i) in [(0, 0), (5, 95), (31, 50)] {
            let g = l.gIdx[i]
            let s = Float(Float16(l.scales[o * 3 + g]))
            XCTAssertEqual(m[o, i], s * Float(Int(l.codes[o * 96 + i]) - l.zeros[o * 3 + g]))
        }
    }

    // MARK: Atomicity and errors

    func testFailureLeavesNoOutputAndNamesTensor() throws {
        var rng = TestRNG(4)
        let out = dir.appendingPathComponent("q")
        let cfg = GPTQConfig(bits: 4, groupSize: 32)
        // A previous model in place stays untouched when writing fails midway.
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: out.appendingPathComponent("marker"))
        do {
            let w = try GPTQSafetensorsWriter(directory: out, config: cfg)
            try w.declareLinear("a.q_proj", outFeatures: 8, inFeatures: 64)
            try w.declareLinear("a.k_proj", outFeatures: 8, inFeatures: 64)
            try w.writeLinear(
                makeLinear("a.q_proj", out: 8, in: 64, bits: 4, group: 32, actOrder: false, bias: false, rng: &rng))
            XCTAssertEqual(partials(of: "q", in: dir).count, 1)
            var bad = makeLinear(
                "a.k_proj", out: 8, in: 64, bits: 4, group: 32, actOrder: false, bias: false, rng: &rng)
            bad.zeros[3] = 0  // not storable in the v1 format (zero - 1)
            XCTAssertThrowsError(try w.writeLinear(bad)) {
                XCTAssertTrue("\($0)".contains("a.k_proj"), "\($0)")
                XCTAssertTrue("\($0)".contains("zero"), "\($0)")
            }
            XCTAssertThrowsError(try w.finish())
        }
        XCTAssertEqual(fileNames(in: dir), ["q"])
        XCTAssertEqual(fileNames(in: out), ["marker"])
        // Dropped midway: temporary directory removed.
        do {
            let w = try GPTQSafetensorsWriter(directory: out, config: cfg)
            try w.declareLinear("a.q_proj", outFeatures: 8, inFeatures: 64)
            try w.declareTensor("n.weight", dtype: .f16, shape: [4])
            try w.writeLinear(
                makeLinear("a.q_proj", out: 8, in: 64, bits: 4, group: 32, actOrder: false, bias: false, rng: &rng))
        }
        XCTAssertEqual(fileNames(in: dir), ["q"])
        // Errors name the tensor: order, size, shape mismatch, undeclared.
        do {
            let w = try GPTQSafetensorsWriter(directory: out, config: cfg)
            try w.declareLinear("a.q_proj", outFeatures: 8, inFeatures: 64)
            try w.declareTensor("n.weight", dtype: .f16, shape: [4])
            XCTAssertThrowsError(try w.writeTensor("n.weight", floats: [1, 2, 3, 4])) {
                XCTAssertTrue("\($0)".contains("n.weight") && "\($0)".contains("a.q_proj"), "\($0)")
            }
        }
        do {
            let w = try GPTQSafetensorsWriter(directory: out, config: cfg)
            try w.declareTensor("n.weight", dtype: .f16, shape: [4])
            XCTAssertThrowsError(try w.writeTensor("n.weight", bytes: Data(count: 6))) {
                XCTAssertTrue("\($0)".contains("n.weight"), "\($0)")
            }
        }
        do {
            let w = try GPTQSafetensorsWriter(directory: out, config: cfg)
            try w.declareLinear("a.q_proj", outFeatures: 8, inFeatures: 64)
            let l = makeLinear("a.q_proj", out: 8, in: 96, bits: 4, group: 32, actOrder: false, bias: false, rng: &rng)
            XCTAssertThrowsError(try w.writeLinear(l)) { XCTAssertTrue("\($0)".contains("a.q_proj"), "\($0)") }
            XCTAssertThrowsError(try w.declareLinear("odd", outFeatures: 3, inFeatures: 64)) {
                XCTAssertTrue("\($0)".contains("odd"))
            }
        }
        do {
            let w = try GPTQSafetensorsWriter(directory: out, config: GPTQConfig(bits: 3, groupSize: 32))
            XCTAssertThrowsError(try w.declareLinear("three", outFeatures: 32, inFeatures: 48)) {
                XCTAssertTrue("\($0)".contains("three"))
            }
            try w.declareLinear("x", outFeatures: 32, inFeatures: 64)
            XCTAssertThrowsError(try w.declareTensor("x.qweight", dtype: .i32, shape: [1])) {
                XCTAssertTrue("\($0)".contains("x.qweight"))
            }
            var l = makeLinear("x", out: 32, in: 64, bits: 3, group: 32, actOrder: false, bias: false, rng: &rng)
            l.gIdx[7] = 2
            XCTAssertThrowsError(try w.writeLinear(l)) {
                XCTAssertTrue("\($0)".contains("x") && "\($0)".contains("g_idx"), "\($0)")
            }
        }
        XCTAssertEqual(fileNames(in: dir), ["q"])
        XCTAssertEqual(fileNames(in: out), ["marker"])
        // Missing tokenizer file fails the whole write.
        do {
            let w = try GPTQSafetensorsWriter(
                directory: out, config: cfg, tokenizerFiles: [dir.appendingPathComponent("nope.json")])
            try w.declareTensor("n.weight", dtype: .f32, shape: [2])
            try w.writeTensor("n.weight", floats: [1, 2])
            XCTAssertThrowsError(try w.finish()) { XCTAssertTrue("\($0)".contains("nope.json"), "\($0)") }
        }
        XCTAssertEqual(fileNames(in: dir), ["q"])
        XCTAssertEqual(fileNames(in: out), ["marker"])
        // A directory holding a file Kiln did not write is never replaced, even when asked.
        do {
            let w = try GPTQSafetensorsWriter(directory: out, config: cfg, replace: true)
            try w.declareTensor("n.weight", dtype: .f32, shape: [2])
            try w.writeTensor("n.weight", floats: [1, 2])
            XCTAssertThrowsError(try w.finish()) { XCTAssertTrue("\($0)".contains("marker"), "\($0)") }
        }
        XCTAssertEqual(fileNames(in: dir), ["q"])
        XCTAssertEqual(fileNames(in: out), ["marker"])
        // Once it is empty, success fills it.
        try FileManager.default.removeItem(at: out.appendingPathComponent("marker"))
        let w = try GPTQSafetensorsWriter(directory: out, config: cfg)
        try w.declareTensor("n.weight", dtype: .f32, shape: [2])
        try w.writeTensor("n.weight", floats: [1, 2])
        try w.finish()
        XCTAssertEqual(fileNames(in: dir), ["q"])
        XCTAssertEqual(
            fileNames(in: out), ["config.json", OutputManifest.fileName, "model.safetensors", "quantize_config.json"])
        XCTAssertEqual(try FixtureTensors(out.appendingPathComponent("model.safetensors")).floats("n.weight"), [1, 2])
    }

    // MARK: Plain safetensors

    func testSafetensorsWriterLayout() throws {
        let url = dir.appendingPathComponent("t.safetensors")
        let w = SafetensorsWriter(url: url)
        try w.declare("a", dtype: .f32, shape: [2, 3])
        try w.declare("b \"quoted\"", dtype: .i32, shape: [3])
        try w.declare("empty", dtype: .f32, shape: [0])
        try w.write("a", floats: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(partials(of: "t.safetensors", in: dir).count, 1)
        XCTAssertEqual(fileNames(in: dir).count, 1)
        try w.write("b \"quoted\"", int32s: [-1, 0, 7])
        try w.write("empty", floats: [])
        try w.finish()
        XCTAssertEqual(fileNames(in: dir), ["t.safetensors"])
        let bytes = try Data(contentsOf: url)
        let n = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        XCTAssertEqual((8 + n) % 8, 0)
        XCTAssertEqual(bytes.count, 8 + n + 24 + 12)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix(#"{"__metadata__":{"format":"pt"},"a":"#), header)
        XCTAssertEqual(header.trimmingCharacters(in: .whitespaces).last, "}")
        let f = try FixtureTensors(url)
        XCTAssertEqual(f.floats("a"), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(f.shape("a"), [2, 3])
        XCTAssertEqual(f.ints("b \"quoted\""), [-1, 0, 7])
        XCTAssertEqual(f.metadata, ["format": "pt"])
        // Streaming errors remove the temp file.
        let w2 = SafetensorsWriter(url: dir.appendingPathComponent("u.safetensors"))
        try w2.declare("x", dtype: .f16, shape: [2])
        try w2.declare("y", dtype: .f16, shape: [2])
        try w2.write("x", floats: [1, 2])
        XCTAssertThrowsError(try w2.write("y", bytes: Data(count: 2))) { XCTAssertTrue("\($0)".contains("y")) }
        XCTAssertEqual(fileNames(in: dir), ["t.safetensors"])
    }
}
