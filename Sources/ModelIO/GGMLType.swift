/// ggml tensor type ids as stored in GGUF tensor infos, with their block
/// geometry (elements per block, bytes per block). Ids follow ggml's `ggml_type`.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35

    /// The K-quant super-block size.
    public static let qkK = 256

    /// Elements per block (1 for plain types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_NL: return 32
        default: return GGMLType.qkK
        }
    }

    /// Bytes per block.
    public var typeSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8: return 1
        case .i64, .f64: return 8
        case .q4_0: return 18  // f16 d, 16 bytes of nibbles
        case .q4_1: return 20  // f16 d, f16 m, 16 bytes of nibbles
        case .q5_0: return 22  // f16 d, 4 bytes high bits, 16 bytes nibbles
        case .q5_1: return 24  // f16 d, f16 m, 4 bytes high bits, 16 bytes nibbles
        case .q8_0: return 34  // f16 d, 32 int8
        case .q8_1: return 36  // f16 d, f16 s, 32 int8
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144  // f16 d, f16 dmin, 12 bytes scales, 128 bytes nibbles
        case .q5_K: return 176  // as Q4_K plus 32 bytes high bits
        case .q6_K: return 210  // 128 low nibbles, 64 high 2-bits, 16 int8 scales, f16 d
        case .q8_K: return 292
        case .iq2_XXS: return 66
        case .iq2_XS: return 74
        case .iq3_XXS: return 98
        case .iq1_S: return 50
        case .iq4_NL: return 18
        case .iq3_S: return 110
        case .iq2_S: return 82
        case .iq4_XS: return 136
        case .iq1_M: return 56
        case .tq1_0: return 54
        case .tq2_0: return 66
        }
    }

    /// The storage type Kiln can read, nil when the type is known but not supported.
    public var dtype: DType? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q5_1: return .q5_1
        case .q2_K: return .q2_K
        case .q3_K: return .q3_K
        case .q4_K: return .q4_K
        case .q5_K: return .q5_K
        case .q6_K: return .q6_K
        case .i8: return .i8
        case .i16: return .i16
        case .i32: return .i32
        case .i64: return .i64
        case .f64: return .f64
        default: return nil
        }
    }

    public init?(_ dtype: DType) {
        guard let t = GGMLType.allCases.first(where: { $0.dtype == dtype }) else { return nil }
        self = t
    }

    public var name: String { dtype?.rawValue ?? String(describing: self).uppercased() }

    /// Bytes of a row of `n` elements, nil when `n` is not a whole number of blocks.
    public func rowBytes(_ n: Int) -> Int? {
        guard n >= 0, n % blockSize == 0 else { return nil }
        return checkedMul(n / blockSize, typeSize)
    }
}
