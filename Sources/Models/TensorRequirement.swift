import Foundation
import ModelIO
import Tensor

/// A tensor a model needs and the shape its loader accepts. Checked against the file's
/// tensor table alone, so a model can be validated without reading a weight (a
/// coordinator validating a submit), and by the loader before it reads, so the two agree.
public struct TensorRequirement: Sendable, Equatable {
    public enum Shape: Sendable, Equatable {
        /// [rows, cols] as loaded (see `TensorInfo.matrixShape`).
        case matrix(rows: Int, cols: Int)
        /// n values in any shape ([n], [1, n]...).
        case vector(Int)

        /// What is wrong with a tensor of this many rows and columns, nil when it fits.
        func mismatch(_ name: String, rows: Int, cols: Int) -> String? {
            switch self {
            case let .matrix(r, c) where rows != r || cols != c:
                return "tensor '\(name)' has shape [\(rows), \(cols)], expected [\(r), \(c)]"
            case let .vector(n):
                let (count, o) = rows.multipliedReportingOverflow(by: cols)
                return !o && count == n
                    ? nil : "tensor '\(name)' has \(o ? "too many" : "\(count)") values, expected \(n)"
            default: return nil
            }
        }
    }

    public var name: String
    public var shape: Shape
    /// false: used when present (the head of a tied model, biases of models without attention_bias).
    public var required: Bool

    public init(_ name: String, _ shape: Shape, required: Bool = true) {
        self.name = name
        self.shape = shape
        self.required = required
    }

    /// The tensor's table entry, checked from the header alone: present (when required),
    /// of the expected shape, stored in a type Kiln dequantizes. nil: optional and absent.
    /// Errors name the file and the tensor.
    @discardableResult
    public func check(in view: any ModelView) throws -> TensorInfo? {
        let file = view.url.lastPathComponent
        guard let info = view.info(name) else {
            if required { throw ModelError(file: file, "missing tensor '\(name)'") }
            return nil
        }
        guard Dequantize.canDecode(info.dtype) else {
            throw ModelError(file: file, "tensor '\(name)': cannot dequantize \(info.dtype.rawValue)")
        }
        let (rows, cols) = info.matrixShape
        if let problem = shape.mismatch(name, rows: rows, cols: cols) { throw ModelError(file: file, problem) }
        return info
    }
}

/// Reads tensors with checks: the header (`TensorRequirement.check`) first, then the
/// loaded values (shape as read, all finite).
struct TensorReader {
    let view: any ModelView
    var file: String { view.url.lastPathComponent }

    init(_ view: any ModelView) { self.view = view }

    func has(_ name: String) -> Bool { view.has(name) }

    /// The tensor, nil when it is optional and absent.
    func read(_ req: TensorRequirement) throws -> Matrix? {
        guard try req.check(in: view) != nil else { return nil }
        let m = try view.load(req.name)
        // A reader's load follows its table; this guards a view whose table and data disagree.
        if let problem = req.shape.mismatch(req.name, rows: m.rows, cols: m.cols) {
            throw ModelError(file: file, problem)
        }
        if let i = Kernels.firstNonFinite(m.data) {
            throw ModelError(file: file, "tensor '\(req.name)' has a non-finite value (\(m.data[i])) at element \(i)")
        }
        return m
    }

    /// A tensor that must be present (`req.required` is ignored).
    func required(_ req: TensorRequirement) throws -> Matrix {
        var r = req
        r.required = true
        return try read(r)!  // a required tensor is present or `check` threw
    }

    /// A matrix of shape [rows, cols].
    func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
        try required(TensorRequirement(name, .matrix(rows: rows, cols: cols)))
    }

    /// A vector of n values (stored as [n] or [1, n]).
    func vector(_ name: String, _ n: Int) throws -> [Float] { try required(TensorRequirement(name, .vector(n))).data }

    func optionalVector(_ name: String, _ n: Int) throws -> [Float]? {
        try read(TensorRequirement(name, .vector(n), required: false))?.data
    }
}
