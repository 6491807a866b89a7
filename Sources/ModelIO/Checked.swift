// Overflow-checked arithmetic for sizes read from files: a crafted header must
// produce an error, never a trap or a wrapped-around offset.

@inline(__always) func checkedMul(_ a: Int, _ b: Int) -> Int? {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? nil : r
}

@inline(__always) func checkedAdd(_ a: Int, _ b: Int) -> Int? {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? nil : r
}

/// Product of dimensions, nil on overflow or a negative dimension. The product of
/// the non-zero dimensions must fit as well: a zero-sized [0, 2^40, 2^40] would
/// otherwise pass, and multiplying its dimensions in another order (GGUF's shape
/// is ne[] reversed; `TensorInfo.elementCount`) overflows.
func checkedProduct(_ dims: [Int]) -> Int? {
    var nonZero = 1
    for d in dims where d != 0 {
        guard d > 0, let m = checkedMul(nonZero, d) else { return nil }
        nonZero = m
    }
    return dims.contains(0) ? 0 : nonZero
}

/// Rounds `x` up to a multiple of `alignment` (a power of two), nil on overflow.
func alignUp(_ x: Int, _ alignment: Int) -> Int? {
    guard let y = checkedAdd(x, alignment - 1) else { return nil }
    return y & ~(alignment - 1)
}
