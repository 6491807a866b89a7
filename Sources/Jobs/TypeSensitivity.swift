import Quantization
import Tensor

/// A linear's sensitivity to each GGUF type `--target-bpw` may give it: the per-token output
/// error of its RTN quantization on that type (scale search with the Hessian diagonal as
/// importance), measured with the group's Hessian like the report's error.
enum TypeSensitivity {
    static func errors(
        _ spec: JobSpec, weight w: Matrix, hessian h: Matrix, perToken: Double, name: String
    ) throws -> [BitAllocation.Candidate] {
        let importance = (0..<h.cols).map { h[$0, $0] }
        return try JobSpec.candidateTypes(columns: w.cols).map { f in
            var recipe = spec.recipe(f)
            recipe.scaleSearch = true
            let q = try RTN.quantize(w, recipe: recipe, importance: importance, name: "\(name) as \(f.rawValue)")
            let error = OutputError.fromHessian(weight: w, quantized: q.dequantized, hessian: h) * perToken
            return BitAllocation.Candidate(format: f, error: error)
        }
    }
}
