import Foundation
import Tensor

// The shape checks (on open) and the dequantization (on load) of PackedCheckpointModel's
// linears, per scheme. Nothing stored is trusted: every part's dtype and shape must agree
// with the others before a byte of it is read, and g_idx entries with the group count.

extension PackedCheckpointModel {
    /// The part `prefix + suffix`, or an error naming the file and the missing tensor.
    static func part(_ base: SafeTensorsModel, _ name: String, _ dtypes: [DType], rank: Int) throws -> TensorInfo {
        guard let t = base.info(name) else {
            throw ModelIOError(file: base.url.lastPathComponent, "tensor '\(name)': missing (a packed linear's part)")
        }
        let file = t.file.lastPathComponent
        guard dtypes.contains(t.dtype) else {
            throw ModelIOError(
                file: file,
                "tensor '\(name)': dtype \(t.dtype.rawValue), expected \(dtypes.map(\.rawValue).joined(separator: " or "))"
            )
        }
        guard t.shape.count == rank, t.shape.allSatisfy({ $0 > 0 }) else {
            throw ModelIOError(file: file, "tensor '\(name)': shape \(t.shape), expected \(rank) non-zero dimensions")
        }
        return t
    }

    static let floatTypes: [DType] = [.f16, .bf16, .f32]
    static let intTypes: [DType] = [.i32, .i64]

    static func mismatch(_ t: TensorInfo, _ expected: [Int], _ why: String) -> ModelIOError {
        ModelIOError(
            file: t.file.lastPathComponent, "tensor '\(t.name)': shape \(t.shape), expected \(expected) (\(why))")
    }

    /// Integer tensor values (I32 or I64, little-endian).
    static func ints(_ base: SafeTensorsModel, _ t: TensorInfo) throws -> [Int] {
        try base.shard(t.name).withRawBytes(t.name) { raw in
            let n = t.elementCount
            return t.dtype == .i64
                ? (0..<n).map { Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
                : (0..<n).map { Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        }
    }

    static func words(_ base: SafeTensorsModel, _ t: TensorInfo) throws -> [Int32] {
        try base.shard(t.name).withRawBytes(t.name) { raw in
            (0..<t.elementCount).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        }
    }

    /// The linear's shape, every part checked against it.
    static func shape(_ p: String, scheme: PackedScheme, base: SafeTensorsModel) throws -> PackedLinear {
        switch scheme {
        case let .gptq(bits, groupSize, _):
            let q = try part(base, p + ".qweight", [.i32], rank: 2)
            let out = q.shape[1]
            guard (q.shape[0] * 32) % bits == 0, (out * bits) % 32 == 0 else {
                throw ModelIOError(
                    file: q.file.lastPathComponent,
                    "tensor '\(q.name)': shape \(q.shape) does not pack whole \(bits)-bit values (rows * 32 and out * \(bits) must divide)"
                )
            }
            let inF = q.shape[0] * 32 / bits
            let s = try part(base, p + ".scales", floatTypes, rank: 2)
            let ng = s.shape[0]
            guard s.shape[1] == out else { throw mismatch(s, [ng, out], "groups x out_features of \(q.name)") }
            let z = try part(base, p + ".qzeros", [.i32], rank: 2)
            guard z.shape == [ng, out * bits / 32] else {
                throw mismatch(z, [ng, out * bits / 32], "groups x packed out_features")
            }
            if base.info(p + ".g_idx") != nil {
                let g = try part(base, p + ".g_idx", intTypes, rank: 1)
                guard g.shape == [inF] else { throw mismatch(g, [inF], "in_features of \(q.name)") }
            } else {
                let want = GPTQPacking.groupCount(inFeatures: inF, groupSize: groupSize)
                guard ng == want else { throw mismatch(s, [want, out], "group_size \(groupSize), no g_idx") }
            }
            return PackedLinear(prefix: p, outFeatures: out, inFeatures: inF, groupCount: ng)
        case let .packQuantized(bits, groupSize):
            if let zp = base.info(p + ".weight_zero_point") {
                throw ModelIOError(
                    file: zp.file.lastPathComponent, "tensor '\(zp.name)': asymmetric pack-quantized is not read")
            }
            let q = try part(base, p + ".weight_packed", [.i32], rank: 2)
            let st = try part(base, p + ".weight_shape", intTypes, rank: 1)
            let dims = try ints(base, st)
            guard dims.count == 2, dims[0] == q.shape[0], dims[1] > 0,
                q.shape[1] == (dims[1] * bits + 31) / 32
            else {
                throw ModelIOError(
                    file: st.file.lastPathComponent,
                    "tensor '\(st.name)': \(dims) does not match \(q.name) \(q.shape) at \(bits) bits")
            }
            let (out, inF) = (dims[0], dims[1])
            let s = try part(base, p + ".weight_scale", floatTypes, rank: 2)
            let hasGIdx = base.info(p + ".weight_g_idx") != nil
            let ng = s.shape[1]
            let want = groupSize == -1 ? 1 : (inF + groupSize - 1) / groupSize
            guard s.shape[0] == out, hasGIdx || ng == want else {
                throw mismatch(s, [out, want], "out_features x groups of \(inF) inputs")
            }
            if hasGIdx {
                let g = try part(base, p + ".weight_g_idx", intTypes, rank: 1)
                guard g.shape == [inF] else { throw mismatch(g, [inF], "in_features") }
            }
            return PackedLinear(prefix: p, outFeatures: out, inFeatures: inF, groupCount: ng)
        case .intQuantized:
            let w = try part(base, p + ".weight", [.i8], rank: 2)
            let s = try part(base, p + ".weight_scale", floatTypes, rank: 2)
            guard s.shape == [w.shape[0], 1] else { throw mismatch(s, [w.shape[0], 1], "one scale per output row") }
            return PackedLinear(prefix: p, outFeatures: w.shape[0], inFeatures: w.shape[1], groupCount: 1)
        }
    }

    /// Group of each input channel: the stored g_idx (each checked), else i / groupSize.
    static func groupIndex(_ base: SafeTensorsModel, _ name: String, _ l: PackedLinear, groupSize: Int) throws -> [Int]
    {
        guard let t = base.info(name) else {
            return (0..<l.inFeatures).map { groupSize == -1 ? 0 : $0 / groupSize }
        }
        let g = try ints(base, t)
        if let i = g.firstIndex(where: { $0 < 0 || $0 >= l.groupCount }) {
            throw ModelIOError(
                file: t.file.lastPathComponent, "tensor '\(name)': entry \(i) is \(g[i]), outside 0..<\(l.groupCount)")
        }
        return g
    }

    /// The weight [out, in] row-major, as a runtime reconstructs it (in Float32).
    static func dequantize(_ l: PackedLinear, scheme: PackedScheme, base: SafeTensorsModel) throws -> [Float] {
        let (out, inF, ng, p) = (l.outFeatures, l.inFeatures, l.groupCount, l.prefix)
        var w = [Float](repeating: 0, count: out * inF)
        switch scheme {
        case let .gptq(bits, groupSize, offset):
            let codes = GPTQPacking.unpackQWeight(
                try words(base, base.info(p + ".qweight")!), outFeatures: out, inFeatures: inF, bits: bits)
            let zeros = GPTQPacking.unpackQZeros(
                try words(base, base.info(p + ".qzeros")!), outFeatures: out, groupCount: ng, bits: bits,
                offset: offset)
            let scales = try base.load(p + ".scales").data  // [ng, out]
            let g = try groupIndex(base, p + ".g_idx", l, groupSize: groupSize)
            for o in 0..<out {
                for i in 0..<inF {
                    let k = g[i] * out + o
                    w[o * inF + i] = scales[k] * (Float(codes[o * inF + i]) - Float(zeros[o * ng + g[i]]))
                }
            }
        case let .packQuantized(bits, groupSize):
            let packed = try words(base, base.info(p + ".weight_packed")!)  // [out, cols]
            let cols = packed.count / out
            let scales = try base.load(p + ".weight_scale").data  // [out, ng]
            let g = try groupIndex(base, p + ".weight_g_idx", l, groupSize: groupSize)
            let half = Float(1 << (bits - 1))
            for o in 0..<out {
                let row = GPTQPacking.unpackBits(bits: bits, count: inF) { UInt32(bitPattern: packed[o * cols + $0]) }
                for i in 0..<inF { w[o * inF + i] = scales[o * ng + g[i]] * (Float(row[i]) - half) }
            }
        case .intQuantized:
            let codes = try base.shard(p + ".weight").withRawBytes(p + ".weight") {
                Array($0.bindMemory(to: Int8.self))
            }
            let scales = try base.load(p + ".weight_scale").data
            for o in 0..<out {
                for i in 0..<inF { w[o * inF + i] = scales[o] * Float(codes[o * inF + i]) }
            }
        }
        return w
    }
}
