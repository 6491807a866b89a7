import Foundation
import Tensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Hugging Face GPTQ checkpoint layout (AutoGPTQ / GPTQModel / transformers), per
// quantized linear `<prefix>`:
//   <prefix>.qweight  I32 [in * bits / 32, out]  codes packed along the input dimension
//   <prefix>.qzeros   I32 [ngroups, out * bits / 32]  zero points packed along the output dimension
//   <prefix>.scales   F16 [ngroups, out]
//   <prefix>.g_idx    I32 [in]  group of each input channel
//   <prefix>.bias     F16 [out]  (optional)
// Packing: the values form a little-endian bit stream, `bits` bits each, lowest bits
// first, in 32-bit words. For 2/4/8 bits that is 32/bits values per word; for 3 bits
// it is AutoGPTQ's layout of 32 values in 3 words, where values 10 and 21 straddle
// word boundaries. The "gptq" (v1) checkpoint format stores zero - 1 (so a zero point
// of 0 cannot be stored); "gptq_v2" (GPTQModel) stores the zero point itself.
// Dequantization: w[o, i] = scales[g_idx[i], o] * (q[i, o] - zero[g_idx[i], o]).

/// Settings written to `quantization_config` (config.json) and quantize_config.json.
public struct GPTQConfig: Sendable, Equatable {
    public enum CheckpointFormat: String, Sendable { case gptq = "gptq", gptqV2 = "gptq_v2" }

    public var bits: Int
    /// -1: one group per output channel.
    public var groupSize: Int
    /// Act-order (columns quantized in decreasing Hessian-diagonal order).
    public var descAct: Bool
    public var sym: Bool
    public var trueSequential: Bool
    public var dampPercent: Double
    public var staticGroups: Bool
    public var checkpointFormat: CheckpointFormat

    public init(
        bits: Int, groupSize: Int, descAct: Bool = false, sym: Bool = true, trueSequential: Bool = true,
        dampPercent: Double = 0.01, staticGroups: Bool = false, checkpointFormat: CheckpointFormat = .gptq
    ) {
        self.bits = bits
        self.groupSize = groupSize
        self.descAct = descAct
        self.sym = sym
        self.trueSequential = trueSequential
        self.dampPercent = dampPercent
        self.staticGroups = staticGroups
        self.checkpointFormat = checkpointFormat
    }

    /// The `quantization_config` object.
    public var jsonObject: [String: Any] {
        [
            "quant_method": "gptq", "bits": bits, "group_size": groupSize, "desc_act": descAct, "sym": sym,
            "true_sequential": trueSequential, "damp_percent": dampPercent, "static_groups": staticGroups,
            "checkpoint_format": checkpointFormat.rawValue, "model_file_base_name": "model",
        ]
    }
}

/// One quantized linear layer in a GPTQ checkpoint's terms. A separate type from the
/// quantizers' codes + `GroupParameters` because it is the checkpoint's form: Hugging Face
/// module path and row order (q/k already un-permuted), integer zero points, Int g_idx and
/// the bias, which is what the packer and its validation work on.
public struct GPTQLinear: Sendable, Equatable {
    /// Module path, e.g. "model.layers.0.self_attn.q_proj".
    public var prefix: String
    public var outFeatures: Int
    public var inFeatures: Int
    public var bits: Int
    /// -1: per output channel.
    public var groupSize: Int
    /// [out, in] row-major, each 0 ..< 2^bits.
    public var codes: [UInt8]
    /// [out, ngroups] row-major (rounded to fp16 when written).
    public var scales: [Float]
    /// [out, ngroups] row-major zero points, 0 ... 2^bits - 1.
    public var zeros: [Int]
    /// [in]: group of each input channel (act-order permutes it).
    public var gIdx: [Int]
    /// [out] or nil (written as fp16).
    public var bias: [Float]?

    public init(
        prefix: String, outFeatures: Int, inFeatures: Int, bits: Int, groupSize: Int, codes: [UInt8],
        scales: [Float], zeros: [Int], gIdx: [Int], bias: [Float]? = nil
    ) {
        self.prefix = prefix
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.bits = bits
        self.groupSize = groupSize
        self.codes = codes
        self.scales = scales
        self.zeros = zeros
        self.gIdx = gIdx
        self.bias = bias
    }

    public var groupCount: Int { GPTQPacking.groupCount(inFeatures: inFeatures, groupSize: groupSize) }

    /// The weights a GPTQ runtime reconstructs, [out, in] (see `storedValue`).
    public func dequantized() -> Matrix {
        let ng = groupCount
        let parameters = zip(scales, zeros).map { GroupParameters(scale: $0, zero: Float($1)) }
        return dequantize(
            rows: outFeatures, columns: inFeatures, codes: codes, parameters: parameters,
            groupIndex: gIdx.map { Int32($0) }, groupCount: ng, value: Self.storedValue)
    }

    /// The value of a code as a GPTQ runtime reconstructs it from the checkpoint:
    /// fp16(scale) * (q - zero), in fp32.
    public static func storedValue(_ code: UInt8, _ p: GroupParameters) -> Float {
        Float(Float16(p.scale)) * (Float(code) - p.zero)
    }

    /// Checks sizes and ranges; errors name the layer.
    public func validate(zeroOffset: Int = 1) throws {
        let p = prefix
        guard [2, 3, 4, 8].contains(bits) else { throw ModelIOError(file: p, "bits \(bits) (GPTQ takes 2, 3, 4, 8)") }
        guard outFeatures > 0, inFeatures > 0 else {
            throw ModelIOError(file: p, "empty shape [\(outFeatures), \(inFeatures)]")
        }
        guard groupSize == -1 || groupSize > 0 else { throw ModelIOError(file: p, "group size \(groupSize)") }
        guard (inFeatures * bits) % 32 == 0 else {
            throw ModelIOError(file: p, "in_features \(inFeatures) * \(bits) bits is not a whole number of int32 words")
        }
        guard (outFeatures * bits) % 32 == 0 else {
            throw ModelIOError(
                file: p, "out_features \(outFeatures) * \(bits) bits is not a whole number of int32 words (qzeros)")
        }
        let ng = groupCount
        guard codes.count == outFeatures * inFeatures else {
            throw ModelIOError(file: p, "\(codes.count) codes for [\(outFeatures), \(inFeatures)]")
        }
        guard scales.count == outFeatures * ng else {
            throw ModelIOError(file: p, "\(scales.count) scales for [\(outFeatures), \(ng)]")
        }
        guard zeros.count == outFeatures * ng else {
            throw ModelIOError(file: p, "\(zeros.count) zeros for [\(outFeatures), \(ng)]")
        }
        guard gIdx.count == inFeatures else {
            throw ModelIOError(file: p, "\(gIdx.count) g_idx entries for in_features \(inFeatures)")
        }
        if let b = bias, b.count != outFeatures {
            throw ModelIOError(file: p, "\(b.count) bias values for out_features \(outFeatures)")
        }
        let maxq = (1 << bits) - 1
        if let i = codes.firstIndex(where: { Int($0) > maxq }) {
            throw ModelIOError(
                file: p, "code \(codes[i]) at [\(i / inFeatures), \(i % inFeatures)] exceeds \(bits) bits")
        }
        if let i = gIdx.firstIndex(where: { $0 < 0 || $0 >= ng }) {
            throw ModelIOError(file: p, "g_idx[\(i)] = \(gIdx[i]) outside 0..<\(ng)")
        }
        if let i = zeros.firstIndex(where: { $0 - zeroOffset < 0 || $0 - zeroOffset > maxq }) {
            let hint =
                zeroOffset == 1 && zeros[i] == 0
                ? " (the gptq v1 format stores zero - 1, so a zero point of 0 cannot be stored; clamp zeros to 1...\(maxq) or use checkpoint format gptq_v2)"
                : ""
            throw ModelIOError(
                file: p,
                "zero point \(zeros[i]) at [out \(i / ng), group \(i % ng)] not storable in \(bits) bits\(hint)")
        }
        if let i = scales.firstIndex(where: {
            !$0.isFinite || !HalfConversion.f16ToF32(HalfConversion.f32ToF16($0)).isFinite
        }) {
            throw ModelIOError(file: p, "scale \(scales[i]) at [out \(i / ng), group \(i % ng)] is not a finite fp16")
        }
    }
}

/// Pure packing functions of the GPTQ layout.
public enum GPTQPacking {
    public static func groupCount(inFeatures: Int, groupSize: Int) -> Int {
        groupSize == -1 ? 1 : (inFeatures + groupSize - 1) / groupSize
    }

    /// The default g_idx (no act-order): i / groupSize.
    public static func sequentialGIdx(inFeatures: Int, groupSize: Int) -> [Int] {
        (0..<inFeatures).map { groupSize == -1 ? 0 : $0 / groupSize }
    }

    /// qweight [in * bits / 32, out]: codes [out, in] packed along the input dimension.
    public static func packQWeight(codes: [UInt8], outFeatures: Int, inFeatures: Int, bits: Int) -> [Int32] {
        let rows = inFeatures * bits / 32
        var q = [Int32](repeating: 0, count: rows * outFeatures)
        for o in 0..<outFeatures {
            let base = o * inFeatures
            packBits(bits: bits, count: inFeatures, value: { UInt32(codes[base + $0]) }) { r, w in
                q[r * outFeatures + o] = Int32(bitPattern: w)
            }
        }
        return q
    }

    /// qzeros [ngroups, out * bits / 32]: zeros [out, ngroups] minus `offset` (1 for
    /// the gptq v1 format), packed along the output dimension.
    public static func packQZeros(
        zeros: [Int], outFeatures: Int, groupCount: Int, bits: Int, offset: Int = 1
    ) -> [Int32] {
        let cols = outFeatures * bits / 32
        let mask = UInt32((1 << bits) - 1)
        var q = [Int32](repeating: 0, count: groupCount * cols)
        for g in 0..<groupCount {
            packBits(
                bits: bits, count: outFeatures,
                value: { UInt32(truncatingIfNeeded: zeros[$0 * groupCount + g] - offset) & mask }
            ) { c, w in
                q[g * cols + c] = Int32(bitPattern: w)
            }
        }
        return q
    }

    /// Little-endian bit stream of `count` values of `bits` bits into count*bits/32 words.
    static func packBits(bits: Int, count: Int, value: (Int) -> UInt32, store: (Int, UInt32) -> Void) {
        var word: UInt64 = 0  // pending bits, lowest first
        var filled = 0
        var w = 0
        for k in 0..<count {
            word |= UInt64(value(k)) << UInt64(filled)
            filled += bits
            if filled >= 32 {
                store(w, UInt32(truncatingIfNeeded: word))
                w += 1
                word >>= 32
                filled -= 32
            }
        }
        precondition(filled == 0, "GPTQPacking: \(count) values of \(bits) bits do not fill whole words")
    }

    /// Inverse of packBits for one column: `count` values from words read by `load`.
    static func unpackBits(bits: Int, count: Int, load: (Int) -> UInt32) -> [UInt32] {
        var out = [UInt32](repeating: 0, count: count)
        let mask = UInt64((1 << bits) - 1)
        for k in 0..<count {
            let pos = k * bits
            let w = pos / 32
            let s = pos % 32
            var v = UInt64(load(w)) >> UInt64(s)
            if s + bits > 32 { v |= UInt64(load(w + 1)) << UInt64(32 - s) }
            out[k] = UInt32(v & mask)
        }
        return out
    }

    /// codes [out, in] from qweight [in * bits / 32, out].
    public static func unpackQWeight(_ q: [Int32], outFeatures: Int, inFeatures: Int, bits: Int) -> [UInt8] {
        var codes = [UInt8](repeating: 0, count: outFeatures * inFeatures)
        for o in 0..<outFeatures {
            let col = unpackBits(bits: bits, count: inFeatures) { UInt32(bitPattern: q[$0 * outFeatures + o]) }
            for i in 0..<inFeatures { codes[o * inFeatures + i] = UInt8(col[i]) }
        }
        return codes
    }

    /// zeros [out, ngroups] from qzeros [ngroups, out * bits / 32] (adds `offset` back).
    public static func unpackQZeros(
        _ q: [Int32], outFeatures: Int, groupCount: Int, bits: Int, offset: Int = 1
    ) -> [Int] {
        let cols = outFeatures * bits / 32
        var zeros = [Int](repeating: 0, count: outFeatures * groupCount)
        for g in 0..<groupCount {
            let row = unpackBits(bits: bits, count: outFeatures) { UInt32(bitPattern: q[g * cols + $0]) }
            for o in 0..<outFeatures { zeros[o * groupCount + g] = Int(row[o]) + offset }
        }
        return zeros
    }

    /// scales [ngroups, out] fp16 bit patterns from [out, ngroups] floats.
    public static func transposedScales(_ s: [Float], outFeatures: Int, groupCount: Int) -> [UInt16] {
        var r = [UInt16](repeating: 0, count: s.count)
        for o in 0..<outFeatures {
            for g in 0..<groupCount { r[g * outFeatures + o] = HalfConversion.f32ToF16(s[o * groupCount + g]) }
        }
        return r
    }
}

/// Writes a Hugging Face GPTQ model directory: model.safetensors (or shards plus
/// model.safetensors.index.json), config.json with `quantization_config`,
/// quantize_config.json, and copies of the tokenizer files.
///
/// Declare every linear and every other tensor first (in file order), then write them
/// in that order; the writer holds one tensor at a time. Everything is written into a
/// fresh temporary sibling directory, with a `kiln-manifest.json` listing the files, and
/// moved onto `<directory>` by `finish()` (an existing non-empty directory only with
/// `replace`, and only if it holds nothing but a previous Kiln output; see
/// OutputPlacement). On any error or `abandon()` the temporary directory is removed and
/// `<directory>` is untouched.
public final class GPTQSafetensorsWriter {
    public let directory: URL
    public let config: GPTQConfig
    private let modelConfig: Data?
    private let tokenizerFiles: [URL]
    private let maxShardBytes: Int?
    private let replace: Bool
    /// Created by `start()`; nil before.
    private var tempDir: URL!

    private struct Spec {
        var name: String
        var dtype: DType
        var shape: [Int]
        var bytes: Int
    }
    private struct Unit {
        var name: String
        var linear: (out: Int, in: Int, bias: Bool)?
        var specs: [Spec]
    }
    private var units: [Unit] = []
    private var names: Set<String> = []
    private var shards: [[Spec]] = []
    private var shardFiles: [String] = []
    private var shardIndex = 0
    private var shardWriter: SafetensorsWriter?
    private var nextUnit = 0
    private var started = false
    private var closed = false

    /// - modelConfig: the source model's config.json bytes; `quantization_config` is
    ///   added to it (and `torch_dtype` set to float16 when absent).
    /// - tokenizerFiles: copied into the directory under their own names.
    /// - maxShardBytes: split into several safetensors files of about this size
    ///   (a linear's tensors stay together); nil writes one file.
    public init(
        directory: URL, config: GPTQConfig, modelConfig: Data? = nil, tokenizerFiles: [URL] = [],
        maxShardBytes: Int? = nil, replace: Bool = false
    ) throws {
        guard [2, 3, 4, 8].contains(config.bits) else {
            throw ModelIOError(file: directory.path, "GPTQ bits \(config.bits) (2, 3, 4 or 8)")
        }
        guard config.groupSize == -1 || config.groupSize > 0 else {
            throw ModelIOError(file: directory.path, "GPTQ group size \(config.groupSize)")
        }
        if let m = modelConfig {
            guard (try? JSONSerialization.jsonObject(with: m)) is [String: Any] else {
                throw ModelIOError(file: directory.path, "model config.json is not a JSON object")
            }
        }
        self.directory = directory
        self.config = config
        self.modelConfig = modelConfig
        self.tokenizerFiles = tokenizerFiles
        self.maxShardBytes = maxShardBytes
        self.replace = replace
    }

    deinit { if !closed { cleanup() } }

    private var zeroOffset: Int { config.checkpointFormat == .gptq ? 1 : 0 }

    // MARK: Declarations

    private func checkDeclarable(_ name: String) throws {
        guard !started, !closed else {
            throw ModelIOError(file: directory.path, "\(name): declared after writing started")
        }
    }

    private func addName(_ n: String) throws {
        guard !names.contains(n) else { throw ModelIOError(file: directory.path, "\(n): declared twice") }
        names.insert(n)
    }

    /// Declares a quantized linear `<prefix>` with the writer's bits and group size.
    public func declareLinear(_ prefix: String, outFeatures: Int, inFeatures: Int, bias: Bool = false) throws {
        try checkDeclarable(prefix)
        let b = config.bits
        guard outFeatures > 0, inFeatures > 0, (inFeatures * b) % 32 == 0, (outFeatures * b) % 32 == 0 else {
            throw ModelIOError(
                file: directory.path,
                "\(prefix): [\(outFeatures), \(inFeatures)] cannot be packed at \(b) bits (in and out * bits must be multiples of 32)"
            )
        }
        let ng = GPTQPacking.groupCount(inFeatures: inFeatures, groupSize: config.groupSize)
        var specs = [
            Spec(
                name: prefix + ".qweight", dtype: .i32, shape: [inFeatures * b / 32, outFeatures],
                bytes: inFeatures * b / 32 * outFeatures * 4),
            Spec(
                name: prefix + ".qzeros", dtype: .i32, shape: [ng, outFeatures * b / 32],
                bytes: ng * outFeatures * b / 32 * 4),
            Spec(name: prefix + ".scales", dtype: .f16, shape: [ng, outFeatures], bytes: ng * outFeatures * 2),
            Spec(name: prefix + ".g_idx", dtype: .i32, shape: [inFeatures], bytes: inFeatures * 4),
        ]
        if bias {
            specs.append(Spec(name: prefix + ".bias", dtype: .f16, shape: [outFeatures], bytes: outFeatures * 2))
        }
        for s in specs { try addName(s.name) }
        units.append(Unit(name: prefix, linear: (outFeatures, inFeatures, bias), specs: specs))
    }

    /// Declares a tensor stored as is (embeddings, norms, lm_head): F16, BF16 or F32 (or integer).
    public func declareTensor(_ name: String, dtype: DType, shape: [Int]) throws {
        try checkDeclarable(name)
        guard let es = SafetensorsWriter.elementSize(dtype) else {
            throw ModelIOError(file: directory.path, "\(name): dtype \(dtype.rawValue) cannot be stored in safetensors")
        }
        try addName(name)
        units.append(
            Unit(
                name: name, linear: nil,
                specs: [Spec(name: name, dtype: dtype, shape: shape, bytes: shape.reduce(1, *) * es)]))
    }

    // MARK: Writing

    private func start() throws {
        guard !started else { return }
        started = true
        // Plan shards.
        var cur: [Spec] = []
        var size = 0
        for u in units {
            let ub = u.specs.reduce(0) { $0 + $1.bytes }
            if let m = maxShardBytes, !cur.isEmpty, size + ub > m {
                shards.append(cur)
                cur = []
                size = 0
            }
            cur += u.specs
            size += ub
        }
        shards.append(cur)
        let n = shards.count
        shardFiles =
            n == 1
            ? ["model.safetensors"]
            : (1...n).map { String(format: "model-%05d-of-%05d.safetensors", $0, n) }
        tempDir = try OutputPlacement.createTemporaryDirectory(for: directory)
    }

    private func writeSpec(_ name: String, bytes: Data) throws {
        try writeSpec(name, byteCount: bytes.count) { write in try bytes.withUnsafeBytes { try write($0) } }
    }

    private func writeSpec(
        _ name: String, byteCount: Int, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        if shardWriter == nil {
            let w = SafetensorsWriter(url: tempDir.appendingPathComponent(shardFiles[shardIndex]))
            for s in shards[shardIndex] { try w.declare(s.name, dtype: s.dtype, shape: s.shape) }
            shardWriter = w
        }
        let w = shardWriter!
        try w.write(name, byteCount: byteCount, body)
        if w.nextTensorName == nil {
            try w.finish()
            shardWriter = nil
            shardIndex += 1
        }
    }

    private func expectUnit(_ name: String, linear: Bool) throws -> Unit {
        guard !closed else {
            throw ModelIOError(file: directory.path, "\(name): written after the writer was finished or failed")
        }
        guard nextUnit < units.count else {
            fail()
            throw ModelIOError(file: directory.path, "\(name): not declared (all declared tensors already written)")
        }
        let u = units[nextUnit]
        guard u.name == name else {
            fail()
            let what =
                names.contains(name) || units.contains(where: { $0.name == name })
                ? "written out of order" : "not declared"
            throw ModelIOError(file: directory.path, "\(name): \(what), expected \(u.name)")
        }
        guard (u.linear != nil) == linear else {
            fail()
            throw ModelIOError(
                file: directory.path, "\(name): declared as \(linear ? "a plain tensor" : "a quantized linear")")
        }
        return u
    }

    /// Writes the next declared quantized linear.
    public func writeLinear(_ l: GPTQLinear) throws {
        let u = try expectUnit(l.prefix, linear: true)
        let (o, i, hasBias) = u.linear!
        do {
            guard l.outFeatures == o, l.inFeatures == i, l.bits == config.bits, l.groupSize == config.groupSize,
                (l.bias != nil) == hasBias
            else {
                throw ModelIOError(
                    file: l.prefix,
                    "[\(l.outFeatures), \(l.inFeatures)] bits \(l.bits) group \(l.groupSize) bias \(l.bias != nil) does not match the declaration [\(o), \(i)] bits \(config.bits) group \(config.groupSize) bias \(hasBias)"
                )
            }
            try l.validate(zeroOffset: zeroOffset)
        } catch let e as ModelIOError {
            fail()
            throw ModelIOError(file: directory.path, "\(e.file): \(e.what)")
        }
        do {
            try start()
            let ng = l.groupCount
            try writeSpec(
                l.prefix + ".qweight",
                bytes: int32Data(GPTQPacking.packQWeight(codes: l.codes, outFeatures: o, inFeatures: i, bits: l.bits)))
            try writeSpec(
                l.prefix + ".qzeros",
                bytes: int32Data(
                    GPTQPacking.packQZeros(
                        zeros: l.zeros, outFeatures: o, groupCount: ng, bits: l.bits, offset: zeroOffset)))
            try writeSpec(
                l.prefix + ".scales",
                bytes: u16Data(GPTQPacking.transposedScales(l.scales, outFeatures: o, groupCount: ng)))
            try writeSpec(l.prefix + ".g_idx", bytes: int32Data(l.gIdx.map { Int32($0) }))
            if let b = l.bias { try writeSpec(l.prefix + ".bias", bytes: GGUFBlocks.packF16(b)) }
        } catch {
            fail()
            throw error
        }
        nextUnit += 1
    }

    /// Writes the next declared plain tensor from Float32 values (converted to its dtype).
    public func writeTensor(_ name: String, floats: [Float]) throws {
        let u = try expectUnit(name, linear: false)
        let s = u.specs[0]
        guard let data = GGUFBlocks.packFloats(floats, as: s.dtype) else {
            fail()
            throw ModelIOError(file: directory.path, "\(name): cannot write floats as \(s.dtype.rawValue)")
        }
        try writeTensor(name, bytes: data)
    }

    /// Writes the next declared plain tensor's bytes as stored.
    public func writeTensor(_ name: String, bytes: Data) throws {
        try writeTensor(name, byteCount: bytes.count) { write in try bytes.withUnsafeBytes { try write($0) } }
    }

    /// Writes the next declared plain tensor's bytes copied from bytes `range` of `file` (its
    /// stored encoding already), read a piece at a time: a 7B model's F16 embedding (262 MB)
    /// passes through without being held in memory or mapped.
    public func writeTensor(_ name: String, copying range: Range<Int>, of file: URL) throws {
        try writeTensor(name, byteCount: range.count) { write in
            try FileRange(url: file, range: range).forEachPiece { try write($0) }
        }
    }

    private func writeTensor(
        _ name: String, byteCount: Int, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        let u = try expectUnit(name, linear: false)
        guard byteCount == u.specs[0].bytes else {
            fail()
            throw ModelIOError(
                file: directory.path,
                "\(name): \(byteCount) bytes, declared \(u.specs[0].dtype.rawValue) \(u.specs[0].shape) takes \(u.specs[0].bytes)"
            )
        }
        do {
            try start()
            try writeSpec(name, byteCount: byteCount, body)
        } catch {
            fail()
            throw error
        }
        nextUnit += 1
    }

    /// Writes the JSON files and tokenizer copies, then renames the directory into place.
    public func finish() throws {
        guard !closed else {
            throw ModelIOError(file: directory.path, "finish after the writer was finished or failed")
        }
        if nextUnit < units.count {
            let missing = units[nextUnit].name
            fail()
            throw ModelIOError(file: directory.path, "\(missing): declared but never written")
        }
        do {
            try start()
            if shardWriter != nil || shardIndex < shards.count {
                // No tensors at all: still write an (empty) safetensors file.
                let w = shardWriter ?? SafetensorsWriter(url: tempDir.appendingPathComponent(shardFiles[shardIndex]))
                try w.finish()
                shardWriter = nil
            }
            try writeJSONFiles()
            let fm = FileManager.default
            for t in tokenizerFiles {
                guard fm.fileExists(atPath: t.path) else {
                    throw ModelIOError(file: t.path, "tokenizer file not found")
                }
                try fm.copyItem(at: t, to: tempDir.appendingPathComponent(t.lastPathComponent))
            }
            try writeManifest()
            try OutputPlacement.placeDirectory(tempDir, at: directory, replace: replace)
            closed = true
        } catch {
            fail()
            throw error
        }
    }

    private func writeJSONFiles() throws {
        var cfg: [String: Any] = [:]
        if let m = modelConfig { cfg = (try JSONSerialization.jsonObject(with: m)) as! [String: Any] }
        cfg["quantization_config"] = config.jsonObject
        if cfg["torch_dtype"] == nil { cfg["torch_dtype"] = "float16" }
        try writeJSON(cfg, "config.json")
        try writeJSON(config.jsonObject, "quantize_config.json")
        if shards.count > 1 {
            var map: [String: String] = [:]
            var total = 0
            for (k, specs) in shards.enumerated() {
                for s in specs {
                    map[s.name] = shardFiles[k]
                    total += s.bytes
                }
            }
            try writeJSON(["metadata": ["total_size": total], "weight_map": map], "model.safetensors.index.json")
        }
    }

    private func writeJSON(_ obj: Any, _ file: String) throws {
        let d = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
        let o = try WriterOutputFile(url: tempDir.appendingPathComponent(file))
        try o.write(d)
        try o.write([0x0A])
        try o.commit()
    }

    private func writeManifest() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: tempDir.path)
        let o = try WriterOutputFile(url: tempDir.appendingPathComponent(OutputManifest.fileName))
        try o.write(try OutputManifest.data(files: files + [OutputManifest.fileName]))
        try o.write([0x0A])
        try o.commit()
    }

    /// Gives up: removes the temporary directory.
    public func abandon() { fail() }

    private func fail() {
        closed = true
        cleanup()
    }

    private func cleanup() {
        shardWriter?.abandon()
        shardWriter = nil
        // The temporary directory was created empty by this writer: all of it is ours.
        if let t = tempDir { try? FileManager.default.removeItem(at: t) }
    }
}

private func int32Data(_ v: [Int32]) -> Data {
    var d = Data(count: v.count * 4)
    d.withUnsafeMutableBytes { p in
        for (i, x) in v.enumerated() { p.storeBytes(of: x.littleEndian, toByteOffset: 4 * i, as: Int32.self) }
    }
    return d
}

private func u16Data(_ v: [UInt16]) -> Data {
    var d = Data(count: v.count * 2)
    d.withUnsafeMutableBytes { p in
        for (i, x) in v.enumerated() { p.storeBytes(of: x.littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    }
    return d
}
