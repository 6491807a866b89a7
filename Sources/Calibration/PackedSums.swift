extension HessianAccumulator {
    /// Adds the packed triangle words of another accumulator (`high`, `low`: entries
    /// `first ..< first + count` of its triangle) into `sumHigh`, `sumLow` in place: the exact
    /// 128-bit sums `merge` makes, a piece at a time, for triangles too large to hold whole.
    /// Throws the overflow error `merge` throws, naming the entry's row and column.
    public static func addPacked(
        high: UnsafeBufferPointer<Int64>, low: UnsafeBufferPointer<UInt64>,
        into sumHigh: UnsafeMutableBufferPointer<Int64>, _ sumLow: UnsafeMutableBufferPointer<UInt64>,
        first: Int, columns: Int, name: String
    ) throws {
        precondition(high.count == low.count && sumHigh.count == high.count && sumLow.count == high.count)
        for k in 0..<high.count {
            guard
                let s = Fixed128(high: sumHigh[k], low: sumLow[k]).adding(Fixed128(high: high[k], low: low[k]))
            else {
                var (i, start) = (0, 0)
                while start + (columns - i) <= first + k {
                    start += columns - i
                    i += 1
                }
                throw StatisticsError.fixedPointOverflow(name: name, row: i, column: i + (first + k - start))
            }
            sumHigh[k] = s.high
            sumLow[k] = s.low
        }
    }
}
