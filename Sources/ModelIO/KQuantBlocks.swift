import Foundation
import Tensor

// Whole tensors to K-quant blocks: round-to-nearest with llama.cpp's searches (`KQuantGrid.fit`),
// one super-block of 256 consecutive values at a time along the innermost dimension, blocks
// packed in ggml's layout (`KQuantBlock.pack`). Reading them back is `Dequantize.floats`.

extension KQuantType {
    public var dtype: DType {
        switch self {
        case .q2_K: return .q2_K
        case .q3_K: return .q3_K
        case .q4_K: return .q4_K
        case .q5_K: return .q5_K
        case .q6_K: return .q6_K
        }
    }

    public init?(_ dtype: DType) {
        guard let t = KQuantType.allCases.first(where: { $0.dtype == dtype }) else { return nil }
        self = t
    }
}

public enum KQuantBlocks {
    /// Quantizes `x` (flat row-major, PyTorch `shape`, innermost dimension a multiple of 256) to
    /// `type` and returns the packed blocks. `importance` is one non-negative weight per column
    /// (the innermost index, as llama.cpp's imatrix); nil quantizes as llama.cpp without an
    /// imatrix (quantize_row_q*_K_ref, byte for byte). `name` names the tensor in errors.
    public static func quantize(
        _ x: [Float], shape: [Int], type: KQuantType, importance: [Float]? = nil, name: String = "tensor"
    ) throws -> Data {
        let total = try GGUFBlocks.byteCount(type: type.dtype, shape: shape, name: name)
        guard x.count == shape.reduce(1, *) else {
            throw ModelIOError(file: name, "\(x.count) values for shape \(shape)")
        }
        if let bad = x.firstIndex(where: { !$0.isFinite }) {
            throw ModelIOError(file: name, "cannot quantize \(x[bad]) at element \(bad)")
        }
        let columns = shape.last ?? 1
        if let w = importance {
            guard w.count == columns else {
                throw ModelIOError(
                    file: name, "importance has \(w.count) entries for \(columns) columns (innermost dimension)")
            }
            if let bad = w.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
                throw ModelIOError(file: name, "importance \(w[bad]) of column \(bad) is not a finite weight >= 0")
            }
        }
        var out = Data(count: total)
        let blocks = x.count / KQuantType.superBlockSize
        guard blocks > 0 else { return out }
        let grid = KQuantGrid(type)
        let blocksPerRow = columns / KQuantType.superBlockSize
        out.withUnsafeMutableBytes { dst in
            x.withUnsafeBufferPointer { xs in
                let dstAddress = UInt(bitPattern: dst.baseAddress!)
                let srcAddress = UInt(bitPattern: xs.baseAddress!)
                // Blocks are independent, so the split over cores does not change the bytes.
                let chunk = 1024
                DispatchQueue.concurrentPerform(iterations: (blocks + chunk - 1) / chunk) { c in
                    let src = UnsafePointer<Float>(bitPattern: srcAddress)!
                    let out = UnsafeMutableRawPointer(bitPattern: dstAddress)!
                    for b in (c * chunk)..<min(blocks, (c + 1) * chunk) {
                        let column = (b % blocksPerRow) * KQuantType.superBlockSize
                        let block =
                            importance.map { w in
                                w.withUnsafeBufferPointer {
                                    grid.fit(src + b * 256, importance: $0.baseAddress! + column)
                                }
                            } ?? grid.fit(src + b * 256)
                        block.pack(
                            into: UnsafeMutableRawBufferPointer(
                                start: out + b * type.blockBytes, count: type.blockBytes))
                    }
                }
            }
        }
        return out
    }
}
