/// Conversions between Float32 and the 16-bit storage formats (IEEE half, bfloat16).
public enum HalfConversion {
    @inlinable public static func f16ToF32(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }
    @inlinable public static func f32ToF16(_ x: Float) -> UInt16 { Float16(x).bitPattern }
    @inlinable public static func bf16ToF32(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }
    /// Round to nearest even, as PyTorch does; NaN stays NaN.
    @inlinable public static func f32ToBF16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(b >> 16) | 0x40 }
        let rounding = UInt32(0x7FFF) + ((b >> 16) & 1)
        return UInt16((b &+ rounding) >> 16)
    }

}
