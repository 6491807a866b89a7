import Foundation
import Jobs

/// The output file from the durable reconstruct results, through Jobs' writers (the
/// same code `kiln run` uses). The model is read through its mmap'd view tensor by tensor.
enum OutputAssembly {
    static func write(spec: JobSpec, results: [StoredResult], files: ResultFiles) throws {
        let view = try spec.openModelView()
        var linears: [String: QuantizedLinear] = [:]
        for r in results {
            guard case .reconstruct = r.task else { continue }
            guard case let .reconstruct(rr) = try ClusterCodec.decode(ClusterTaskOutput.self, from: try files.read(r)) else {
                throw CoordinatorError("result file of \(r.task) holds another task's result")
            }
            for l in rr.linears { linears[l.tensor] = l }
        }
        let out = URL(fileURLWithPath: spec.output)
        if spec.format.isGGUF {
            try GGUFOutput.write(spec: spec, view: view, linears: linears, to: out)
        } else {
            try GPTQOutput.write(spec: spec, view: view, linears: linears, to: out)
        }
    }
}
