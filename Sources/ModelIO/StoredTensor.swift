import Foundation
import Tensor

/// A tensor table entry of a memory-mapped file (GGUF, safetensors): its info and the
/// absolute byte range of its data.
protocol StoredTensor: Sendable {
    var info: TensorInfo { get }
    var range: Range<Int> { get }
}

extension GGUFFile.Tensor: StoredTensor {}
extension SafeTensorsFile.Tensor: StoredTensor {}

extension MappedFile {
    /// `t`, or an error naming the file and the tensor when the table has no `name`.
    func entry<T: StoredTensor>(_ t: T?, _ name: String) throws -> T {
        guard let t else { throw ModelIOError(file: self.name, "tensor '\(name)': not found") }
        return t
    }

    /// A tensor's stored bytes, in place (no copy).
    func bytes(of t: some StoredTensor) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[t.range]) }

    /// A tensor dequantized to Float32: [r, c] -> r x c; [n] -> 1 x n; [] -> 1 x 1; higher
    /// ranks -> (product of outer dims) x innermost. Integers convert to Float.
    func load(_ t: some StoredTensor) throws -> Matrix {
        guard let floats = Dequantize.floats(bytes(of: t), type: t.info.dtype, count: t.info.elementCount) else {
            throw ModelIOError(file: name, "tensor '\(t.info.name)': cannot dequantize \(t.info.dtype.rawValue)")
        }
        dropPages(t.range)  // the Float32 copy is what stays
        let (rows, cols) = t.info.matrixShape
        return Matrix(rows: rows, cols: cols, data: floats)
    }
}
