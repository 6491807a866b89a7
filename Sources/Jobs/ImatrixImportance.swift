import Calibration
import Foundation
import ModelIO
import Models
import Quantization
import Tensor

extension Imatrix.Entry {
    /// A linear group's statistics as llama.cpp's imatrix entry: per column the sum of x^2 over
    /// the calibration tokens (rounded to Float32, as llama-imatrix stores it), count the tokens.
    public init(inputSquaresOf h: HessianAccumulator) {
        self.init(sums: h.diagonalSums().map { Float($0) }, count: Float(h.tokens))
    }
}

extension Tasks {
    /// RTN's scale-search importance of one linear (nil: no search). From --imatrix's file when
    /// given; else, when AWQ or SmoothQuant scaled the group's input, that input's Hessian
    /// diagonal; else the group's statistics as llama-quantize takes an imatrix, sums / count
    /// in Float32, so Kiln's own statistics and the same statistics exported with
    /// --imatrix-out and imported with --imatrix give the same bytes.
    static func rtnImportance(
        _ ctx: JobContext, _ recipe: QuantRecipe, linear: String, block: Int, _ squares: Imatrix.Entry?,
        scaled: Matrix?
    ) throws -> [Float]? {
        guard recipe.scaleSearch else { return nil }
        if let m = ctx.imatrix {
            let name = LlamaTensorNames.linear(linear, block: block, naming: .gguf)
            guard let v = m.importance(name) else {
                throw JobError("--imatrix \(ctx.spec.imatrix ?? ""): no entry for \(name)")
            }
            return v
        }
        if let h = scaled { return (0..<h.cols).map { h[$0, $0] } }
        return squares.map { Imatrix.importance(sums: $0.sums, count: $0.count) }
    }
}
