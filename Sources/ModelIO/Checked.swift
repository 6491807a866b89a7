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

/// Product of dimensions, nil on overflow or a negative dimension.
func checkedProduct(_ dims: [Int]) -> Int? {
    var n = 1
    for d in dims {
        guard d >= 0, let m = checkedMul(n, d) else { return nil }
        n = m
    }
    return n
}

/// Rounds `x` up to a multiple of `alignment` (a power of two), nil on overflow.
func alignUp(_ x: Int, _ alignment: Int) -> Int? {
    guard let y = checkedAdd(x, alignment - 1) else { return nil }
    return y & ~(alignment - 1)
}
