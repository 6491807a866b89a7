/// A dense row-major Float32 matrix: the one numeric container every layer shares.
///
/// A linear layer's weight is stored as `[out, in]` (rows = output channels), as in
/// PyTorch and safetensors; activations are `[tokens, features]`.
public struct Matrix: Equatable, Sendable {
    public var rows: Int
    public var cols: Int
    public var data: [Float]

    public init(rows: Int, cols: Int, data: [Float]) {
        precondition(
            rows >= 0 && cols >= 0 && data.count == rows * cols,
            "Matrix: \(data.count) values do not fill \(rows)x\(cols)")
        self.rows = rows
        self.cols = cols
        self.data = data
    }

    public init(rows: Int, cols: Int, repeating value: Float = 0) {
        self.init(rows: rows, cols: cols, data: [Float](repeating: value, count: rows * cols))
    }

    public var count: Int { rows * cols }
    public var shape: [Int] { [rows, cols] }

    @inlinable public subscript(r: Int, c: Int) -> Float {
        get { data[r * cols + c] }
        set { data[r * cols + c] = newValue }
    }

    /// A copy of rows `range`.
    public func rows(_ range: Range<Int>) -> Matrix {
        Matrix(rows: range.count, cols: cols, data: Array(data[(range.lowerBound * cols)..<(range.upperBound * cols)]))
    }

    /// A copy of columns `range`.
    public func columns(_ range: Range<Int>) -> Matrix {
        var out = Matrix(rows: rows, cols: range.count)
        data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for r in 0..<rows {
                    let s = src.baseAddress! + r * cols + range.lowerBound
                    (dst.baseAddress! + r * range.count).update(from: s, count: range.count)
                }
            }
        }
        return out
    }

    /// The transpose, through BLAS's out-of-place copy.
    public func transposed() -> Matrix {
        var out = Matrix(rows: cols, cols: rows)
        BLAS.transpose(self, into: &out)
        return out
    }
}
