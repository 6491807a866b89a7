import Cluster
import Foundation
import Jobs

/// The output file from the durable reconstruct results, through Jobs' writers (the
/// same code `kiln run` uses). The model is read through its mmap'd view tensor by
/// tensor, and the quantized linears are read from their result files one file at a
/// time (`DurableLinears`): the coordinator never holds the model's codes at once.
enum OutputAssembly {
    static func write(spec: JobSpec, results: [StoredResult], files: ResultFiles) throws {
        let view = try spec.openForJob()
        let linears = try DurableLinears(results: results, files: files, units: ReconstructUnits(spec: spec))
        let out = URL(fileURLWithPath: spec.output)
        if spec.format.isGGUF {
            try GGUFOutput.write(spec: spec, view: view, linears: linears, to: out)
        } else {
            try GPTQOutput.write(spec: spec, view: view, linears: linears, to: out)
        }
    }
}

/// Quantized linears read on demand from the durable reconstruct result files. One
/// pass decodes each file once for the summaries (dropping the codes at once); the
/// writer then asks for tensors in file order and gets them from the last few decoded
/// result files (one block's groups), decoded again when asked.
final class DurableLinears: QuantizedLinearSource {
    private let files: ResultFiles
    /// Each tensor's result files, one per row slice in row order (one unless the job slices rows).
    private let byTensor: [String: [StoredResult]]
    private let units: ReconstructUnits
    private let summary: [String: QuantizedLinearSummary]
    /// Most recently decoded result files (path -> linears), newest last.
    private var recent: [(path: String, linears: [QuantizedLinear])] = []
    private let keep: Int
    /// Result files decoded (for tests and the log).
    private(set) var decodes = 0

    init(results: [StoredResult], files: ResultFiles, units: ReconstructUnits, keep: Int = 4) throws {
        self.files = files
        self.units = units
        self.keep = max(1, keep * units.parts)
        var byTensor: [String: [StoredResult]] = [:]
        var summary: [String: QuantizedLinearSummary] = [:]
        // Unit order, so each tensor's row slices come in row order.
        func unit(_ r: StoredResult) -> (Int, Int) {
            if case let .reconstruct(b, u) = r.task { return (b, u) }
            return (r.task.block, -1)
        }
        for r in results.sorted(by: { unit($0) < unit($1) }) {
            guard case .reconstruct = r.task else { continue }
            for l in try Self.decode(r, files: files) {
                byTensor[l.tensor, default: []].append(r)
                let s = QuantizedLinearSummary(l)
                if var whole = summary[l.tensor] {
                    whole.rows += s.rows
                    whole.hasZeroPointZero = whole.hasZeroPointZero || s.hasZeroPointZero
                    summary[l.tensor] = whole
                } else {
                    summary[l.tensor] = s
                }
            }
        }
        self.byTensor = byTensor
        self.summary = summary
    }

    static func decode(_ r: StoredResult, files: ResultFiles) throws -> [QuantizedLinear] {
        guard case let .reconstruct(rr) = try files.readOutput(r) else {
            throw CoordinatorError("result file of \(r.task) holds another task's result")
        }
        return rr.linears
    }

    func summaries() throws -> [String: QuantizedLinearSummary] { summary }

    func linear(_ tensor: String) throws -> QuantizedLinear {
        guard let rs = byTensor[tensor] else { throw JobError("no quantized result for \(tensor)") }
        return try QuantizedLinear(joiningRows: try rs.map { try slice(tensor, of: $0) }, parts: units.parts)
    }

    /// The tensor's linear (or row slice) in result file r.
    private func slice(_ tensor: String, of r: StoredResult) throws -> QuantizedLinear {
        if let i = recent.firstIndex(where: { $0.path == r.path }) {
            let hit = recent.remove(at: i)
            recent.append(hit)
        } else {
            recent.append((r.path, try Self.decode(r, files: files)))
            decodes += 1
            if recent.count > keep { recent.removeFirst() }
        }
        guard let q = recent.last!.linears.first(where: { $0.tensor == tensor }) else {
            throw CoordinatorError("result file of \(r.task) lost \(tensor) between two reads")
        }
        return q
    }
}
