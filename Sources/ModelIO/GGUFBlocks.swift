import Foundation
import Tensor

// GGUF / ggml block layouts for the types Kiln writes (F32, F16, BF16, Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1; the K types through `KQuantBlock`), as pure functions: packing already-quantized codes and scales into blocks and
// round-to-nearest with ggml's reference semantics (quantize_row_q{4_0,4_1,8_0}_ref,
// on the grids of Tensor/Grid.swift). Reading blocks back is `Dequantize.floats`.
//
// Blocks run along the innermost dimension: for a tensor of PyTorch shape
// [..., n] (GGUF ne[0] = n) the flat row-major element order is the block order,
// so n must be a multiple of the block size (32).
//
// Block layouts (all little-endian):
//   Q4_0: fp16 d, 16 bytes qs; byte j = code[j] | code[j + 16] << 4; x = (q - 8) * d
//   Q4_1: fp16 d, fp16 m, 16 bytes qs (as Q4_0);                       x = q * d + m
//   Q5_0: fp16 d, u32 qh (bit j: bit 4 of code j), 16 bytes qs as Q4_0; x = (q - 16) * d
//   Q5_1: fp16 d, fp16 m, u32 qh, 16 bytes qs;                          x = q * d + m
//   Q8_0: fp16 d, 32 int8 qs;                                           x = q * d

/// Quantized codes of one tensor, in flat row-major (PyTorch) element order.
public enum GGUFCodes: Sendable, Equatable {
    /// Q4_0 / Q4_1: one code 0...15 per element.
    case unsigned([UInt8])
    /// Q8_0: one code -128...127 per element (ggml's reference produces -127...127).
    case signed([Int8])

    public var count: Int {
        switch self {
        case let .unsigned(c): return c.count
        case let .signed(c): return c.count
        }
    }
}

/// One tensor quantized to a GGUF block type: the quantizer's output, before packing.
/// A separate type from the quantizers' codes + `GroupParameters` on purpose: this is GGUF's
/// own block form (fp16 bit patterns per 32-element block, Q8_0 codes signed) that `pack`
/// lays out byte for byte; `init(type:shape:codes:parameters:)` is the one way in from a grid.
public struct GGUFQuantizedTensor: Sendable, Equatable {
    /// .q4_0, .q4_1 or .q8_0.
    public var type: DType
    /// PyTorch order (outermost first): a linear weight is [out, in].
    public var shape: [Int]
    /// One code per element, flat row-major.
    public var codes: GGUFCodes
    /// One fp16 scale (d) per block of 32 consecutive elements, as bit patterns.
    public var scales: [UInt16]
    /// Q4_1 / Q5_1 only: one fp16 min (m) per block, as bit patterns.
    public var mins: [UInt16]?
    /// K types: the super-block fields (`scales` and `mins` are then empty / nil).
    public var kScales: KQuantScales?

    public init(
        type: DType, shape: [Int], codes: GGUFCodes, scales: [UInt16], mins: [UInt16]? = nil,
        kScales: KQuantScales? = nil
    ) {
        self.type = type
        self.shape = shape
        self.codes = codes
        self.scales = scales
        self.mins = mins
        self.kScales = kScales
    }

    /// A K-quant tensor [rows, columns] from its codes and super-block fields.
    public init(shape: [Int], codes: [UInt8], kScales: KQuantScales) {
        self.init(type: kScales.type.dtype, shape: shape, codes: .unsigned(codes), scales: [], kScales: kScales)
    }

    /// From a quantizer's codes (Q8_0: int8 bit patterns) and one grid parameter set per
    /// block: d = fp16(scale), Q4_1's m = fp16(zero).
    public init(type: DType, shape: [Int], codes: [UInt8], parameters: [GroupParameters]) {
        self.init(
            type: type, shape: shape,
            codes: type == .q8_0 ? .signed(codes.map { Int8(bitPattern: $0) }) : .unsigned(codes),
            scales: parameters.map(\.scaleHalfBits),
            mins: type == .q4_1 || type == .q5_1 ? parameters.map(\.zeroHalfBits) : nil)
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var blockCount: Int { elementCount / GGUFBlocks.blockElements }
}

public enum GGUFBlocks {
    /// Elements per block of Q4_0, Q4_1 and Q8_0.
    public static let blockElements = 32

    /// ggml's type id (the number stored in a GGUF tensor info), or nil when GGUF has no such type.
    public static func ggmlTypeID(_ t: DType) -> UInt32? { GGMLType(t)?.rawValue }

    /// (elements per block, bytes per block) of a GGUF type.
    public static func blockLayout(_ t: DType) -> (elements: Int, bytes: Int)? {
        GGMLType(t).map { ($0.blockSize, $0.typeSize) }
    }

    /// Bytes a tensor of `shape` (PyTorch order) takes as `type`; throws when the
    /// innermost dimension is not a whole number of blocks.
    public static func byteCount(type: DType, shape: [Int], name: String = "tensor") throws -> Int {
        guard let (be, bb) = blockLayout(type) else {
            throw ModelIOError(file: name, "type \(type.rawValue) has no GGUF encoding")
        }
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw ModelIOError(file: name, "negative dimension in shape \(shape)")
        }
        let inner = shape.last ?? 1
        guard inner % be == 0 else {
            throw ModelIOError(
                file: name,
                "innermost dimension \(inner) of shape \(shape) is not a multiple of \(type.rawValue)'s block size \(be)"
            )
        }
        let (n, overflow) = shape.reduce((1, false)) { acc, d in
            let (p, o) = acc.0.multipliedReportingOverflow(by: d)
            return (p, acc.1 || o)
        }
        guard !overflow else { throw ModelIOError(file: name, "shape \(shape) overflows") }
        return n / be * bb
    }

    // MARK: - Raw float types

    public static func packF32(_ x: [Float]) -> Data { packed(x) { $0.bitPattern } }

    /// Round to nearest even (IEEE), as ggml's fp32 -> fp16.
    public static func packF16(_ x: [Float]) -> Data { packed(x, HalfConversion.f32ToF16) }

    public static func packBF16(_ x: [Float]) -> Data { packed(x, HalfConversion.f32ToBF16) }

    /// Each value's bit pattern `bits(x)`, little-endian, one after another.
    private static func packed<T: FixedWidthInteger>(_ x: [Float], _ bits: (Float) -> T) -> Data {
        let size = MemoryLayout<T>.size
        var d = Data(count: x.count * size)
        d.withUnsafeMutableBytes { dst in
            for (i, v) in x.enumerated() {
                dst.storeBytes(of: bits(v).littleEndian, toByteOffset: size * i, as: T.self)
            }
        }
        return d
    }

    /// `x` as F32, F16 or BF16; nil for any other type.
    public static func packFloats(_ x: [Float], as type: DType) -> Data? {
        switch type {
        case .f32: return packF32(x)
        case .f16: return packF16(x)
        case .bf16: return packBF16(x)
        default: return nil
        }
    }

    // MARK: - Packing quantized blocks

    /// Packs codes and per-block scales (and mins) into GGUF blocks. `name` names the
    /// tensor in errors.
    public static func pack(_ t: GGUFQuantizedTensor, name: String = "tensor") throws -> Data {
        let n = t.elementCount
        let total = try byteCount(type: t.type, shape: t.shape, name: name)
        guard t.codes.count == n else {
            throw ModelIOError(file: name, "\(t.codes.count) codes for shape \(t.shape) (\(n) elements)")
        }
        if let type = KQuantType(t.type) { return try packK(t, type, total: total, name: name) }
        let nb = n / blockElements
        guard t.scales.count == nb else {
            throw ModelIOError(file: name, "\(t.scales.count) scales for \(nb) blocks")
        }
        var out = Data(count: total)
        switch (t.type, t.codes) {
        case let (.q4_0, .unsigned(codes)), let (.q4_1, .unsigned(codes)):
            let hasMin = t.type == .q4_1
            let mins = t.mins ?? []
            if hasMin {
                guard mins.count == nb else { throw ModelIOError(file: name, "\(mins.count) mins for \(nb) blocks") }
            } else if t.mins != nil {
                throw ModelIOError(file: name, "Q4_0 takes no mins")
            }
            if let bad = codes.firstIndex(where: { $0 > 15 }) {
                throw ModelIOError(file: name, "code \(codes[bad]) at element \(bad) does not fit 4 bits")
            }
            let bb = hasMin ? 20 : 18
            let q0 = hasMin ? 4 : 2
            out.withUnsafeMutableBytes { dst in
                codes.withUnsafeBufferPointer { c in
                    for b in 0..<nb {
                        let o = b * bb
                        dst.storeBytes(of: t.scales[b].littleEndian, toByteOffset: o, as: UInt16.self)
                        if hasMin { dst.storeBytes(of: mins[b].littleEndian, toByteOffset: o + 2, as: UInt16.self) }
                        let e = b * 32
                        for j in 0..<16 {
                            dst[o + q0 + j] = c[e + j] | (c[e + 16 + j] << 4)
                        }
                    }
                }
            }
        case let (.q5_0, .unsigned(codes)), let (.q5_1, .unsigned(codes)):
            let hasMin = t.type == .q5_1
            let mins = t.mins ?? []
            guard hasMin ? mins.count == nb : t.mins == nil else {
                throw ModelIOError(file: name, "\(t.type.rawValue) takes \(hasMin ? nb : 0) mins, got \(mins.count)")
            }
            if let bad = codes.firstIndex(where: { $0 > 31 }) {
                throw ModelIOError(file: name, "code \(codes[bad]) at element \(bad) does not fit 5 bits")
            }
            // fp16 d (, fp16 m), 4 bytes qh (bit j: the fifth bit of code j), 16 bytes of nibbles as Q4_0.
            let bb = hasMin ? 24 : 22
            let qh = hasMin ? 4 : 2
            out.withUnsafeMutableBytes { dst in
                codes.withUnsafeBufferPointer { c in
                    for b in 0..<nb {
                        let o = b * bb
                        dst.storeBytes(of: t.scales[b].littleEndian, toByteOffset: o, as: UInt16.self)
                        if hasMin { dst.storeBytes(of: mins[b].littleEndian, toByteOffset: o + 2, as: UInt16.self) }
                        let e = b * 32
                        var high: UInt32 = 0
                        for j in 0..<32 { high |= UInt32(c[e + j] >> 4) << j }
                        dst.storeBytes(of: high.littleEndian, toByteOffset: o + qh, as: UInt32.self)
                        for j in 0..<16 { dst[o + qh + 4 + j] = (c[e + j] & 0xF) | (c[e + 16 + j] << 4) }
                    }
                }
            }
        case let (.q8_0, .signed(codes)):
            guard t.mins == nil else { throw ModelIOError(file: name, "Q8_0 takes no mins") }
            out.withUnsafeMutableBytes { dst in
                codes.withUnsafeBufferPointer { c in
                    for b in 0..<nb {
                        let o = b * 34
                        dst.storeBytes(of: t.scales[b].littleEndian, toByteOffset: o, as: UInt16.self)
                        for j in 0..<32 { dst[o + 2 + j] = UInt8(bitPattern: c[b * 32 + j]) }
                    }
                }
            }
        default:
            throw ModelIOError(
                file: name,
                "cannot pack \(t.type.rawValue) from \(t.codes) codes (Q4_0/Q4_1/Q5_0/Q5_1 take unsigned, Q8_0 signed)")
        }
        return out
    }

    /// K types: each (row, super-block)'s fields and 256 codes as one `KQuantBlock`.
    private static func packK(_ t: GGUFQuantizedTensor, _ type: KQuantType, total: Int, name: String) throws -> Data {
        guard case let .unsigned(codes) = t.codes, let k = t.kScales, k.type == type else {
            throw ModelIOError(
                file: name, "\(t.type.rawValue) is packed from unsigned codes and its super-block fields")
        }
        let columns = t.shape.last ?? 1
        let rows = columns == 0 ? 0 : t.elementCount / columns
        let n = type.subBlockCount
        guard k.rows == rows, k.superBlocks * KQuantType.superBlockSize == columns,
            k.d.count == rows * k.superBlocks, k.dmin.count == k.d.count, k.scales.count == k.d.count * n,
            k.mins.count == (type.hasMins ? k.scales.count : 0)
        else {
            throw ModelIOError(file: name, "\(type.rawValue) fields do not match shape \(t.shape)")
        }
        if let bad = codes.firstIndex(where: { Int($0) > type.maxCode }) {
            throw ModelIOError(file: name, "code \(codes[bad]) at element \(bad) does not fit \(type.bits) bits")
        }
        var out = Data(count: total)
        out.withUnsafeMutableBytes { dst in
            for r in 0..<rows {
                for sb in 0..<k.superBlocks {
                    let c0 = r * columns + sb * KQuantType.superBlockSize
                    let block = k.block(row: r, superBlock: sb, codes: codes[c0..<(c0 + KQuantType.superBlockSize)])
                    let o = (r * k.superBlocks + sb) * type.blockBytes
                    block.pack(into: UnsafeMutableRawBufferPointer(rebasing: dst[o..<(o + type.blockBytes)]))
                }
            }
        }
        return out
    }

    // MARK: - Round-to-nearest quantizer (ggml reference semantics)

    /// Quantizes Float32 values like ggml's quantize_row_*_ref (bit-for-bit) on the same
    /// grids the quantizers use (`GGUFQ4_0Grid`...): the scale is computed in fp32, stored
    /// as fp16 (round to nearest even), and the codes use the fp32 inverse scale. `type` is
    /// .q4_0, .q4_1 or .q8_0; non-finite values are refused.
    public static func quantizeRTN(
        _ x: [Float], shape: [Int], type: DType, name: String = "tensor"
    ) throws -> GGUFQuantizedTensor {
        let n = shape.reduce(1, *)
        guard x.count == n else { throw ModelIOError(file: name, "\(x.count) values for shape \(shape)") }
        _ = try byteCount(type: type, shape: shape, name: name)
        if let bad = x.firstIndex(where: { !$0.isFinite }) {
            throw ModelIOError(file: name, "cannot quantize \(x[bad]) at element \(bad)")
        }
        switch type {
        case .q4_0: return quantizeBlocks(x, shape: shape, type: type, grid: GGUFQ4_0Grid())
        case .q4_1: return quantizeBlocks(x, shape: shape, type: type, grid: GGUFQ4_1Grid())
        case .q8_0: return quantizeBlocks(x, shape: shape, type: type, grid: GGUFQ8_0Grid())
        case .q5_0: return quantizeBlocks(x, shape: shape, type: type, grid: GGUFQ5_0Grid())
        case .q5_1: return quantizeBlocks(x, shape: shape, type: type, grid: GGUFQ5_1Grid())
        default: throw ModelIOError(file: name, "no round-to-nearest quantizer for \(type.rawValue)")
        }
    }

    private static func quantizeBlocks<G: QuantizationGrid>(
        _ x: [Float], shape: [Int], type: DType, grid: G
    ) -> GGUFQuantizedTensor {
        var codes = [UInt8](repeating: 0, count: x.count)
        var parameters: [GroupParameters] = []
        parameters.reserveCapacity(x.count / blockElements)
        x.withUnsafeBufferPointer { xp in
            for base in stride(from: 0, to: x.count, by: blockElements) {
                let p = grid.fit(xp.baseAddress! + base, count: blockElements, stride: 1)
                parameters.append(p)
                for j in base..<(base + blockElements) { codes[j] = grid.code(xp[j], p) }
            }
        }
        return GGUFQuantizedTensor(type: type, shape: shape, codes: codes, parameters: parameters)
    }

    /// Encodes Float32 values as `type`: F32/F16/BF16 directly, Q4_0/Q4_1/Q8_0 through
    /// `quantizeRTN` and `pack`, the K-quants through `KQuantBlocks.quantize` (no importance).
    public static func encode(_ x: [Float], shape: [Int], type: DType, name: String = "tensor") throws -> Data {
        let n = shape.reduce(1, *)
        guard x.count == n else { throw ModelIOError(file: name, "\(x.count) values for shape \(shape)") }
        if let d = packFloats(x, as: type) { return d }
        switch type {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0:
            return try pack(quantizeRTN(x, shape: shape, type: type, name: name), name: name)
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K:
            return try KQuantBlocks.quantize(x, shape: shape, type: KQuantType(type)!, name: name)
        default: throw ModelIOError(file: name, "cannot encode Float32 as \(type.rawValue)")
        }
    }
}

extension GGUFQuantizedTensor {
    /// The values the packed blocks decode to, from the codes and scales directly (no
    /// packing), on the format's grid (`GGUFQ4_0Grid`...).
    public var values: [Float] {
        let raw: [UInt8]
        switch codes {
        case let .unsigned(c): raw = c
        case let .signed(c): raw = c.map { UInt8(bitPattern: $0) }
        }
        if let k = kScales {
            let columns = shape.last ?? 1
            let size = k.type.subBlockSize
            return dequantize(
                rows: k.rows, columns: columns, codes: raw, parameters: k.parameters,
                groupIndex: (0..<columns).map { Int32($0 / size) }, groupCount: columns / size,
                value: KQuantGrid(k.type).value
            ).data
        }
        let value: (UInt8, GroupParameters) -> Float
        switch type {
        case .q4_0: value = GGUFQ4_0Grid().value
        case .q4_1: value = GGUFQ4_1Grid().value
        case .q5_0: value = GGUFQ5_0Grid().value
        case .q5_1: value = GGUFQ5_1Grid().value
        default: value = GGUFQ8_0Grid().value
        }
        let parameters = (0..<blockCount).map { b in
            GroupParameters(
                scale: Float(Float16(bitPattern: scales[b])), zero: mins.map { Float(Float16(bitPattern: $0[b])) } ?? 0)
        }
        let width = GGUFBlocks.blockElements
        return dequantize(
            rows: blockCount, columns: width, codes: raw, parameters: parameters,
            groupIndex: [Int32](repeating: 0, count: width), groupCount: 1, value: value
        ).data
    }
}
