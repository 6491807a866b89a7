extension HessianAccumulator {
    /// The diagonal of X^T X: per input column, the sum of x^2 over every token row (exact
    /// sums rounded once to Float64). llama.cpp's imatrix holds exactly these sums.
    public func diagonalSums() -> [Double] {
        (0..<columns).map { i in
            let k = i * columns - i * (i - 1) / 2
            return Fixed128(high: high[k], low: low[k]).doubleValue
        }
    }
}
