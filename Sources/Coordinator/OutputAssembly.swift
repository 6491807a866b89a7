import Cluster
import Foundation
import Jobs
import KilnProtocol
import ModelIO

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
        } else if spec.format == .compressedTensorsW8A8 {
            try W8A8Output.write(spec: spec, view: view, linears: linears, to: out)
        } else if spec.format == .compressedTensorsW4A16 {
            try W4A16Output.write(spec: spec, view: view, linears: linears, to: out)
        } else {
            try GPTQOutput.write(spec: spec, view: view, linears: linears, to: out)
        }
        try ImatrixExport.write(spec: spec, entries: linears.inputSquares, tensors: linears.tensorCount)
    }
}

/// Quantized linears read on demand from the durable reconstruct result files, one
/// linear at a time: each file is checked whole (size and CRC-32C against the store, read a
/// piece at a time) and indexed once, each linear decoded once for the summaries (its codes
/// dropped at once) and again when the writer asks for it. The coordinator holds one
/// linear's codes at a time (its row slices joined, with `--row-parts`), never a group's.
final class DurableLinears: QuantizedLinearSource {
    private let files: ResultFiles
    /// Where each tensor is: its result file and its index there, per row slice in row order.
    private let byTensor: [String: [(result: StoredResult, index: Int)]]
    private let units: ReconstructUnits
    private let summary: [String: QuantizedLinearSummary]
    /// The result files opened last, newest last: one per row slice of the tensor being
    /// written (the writer asks for a group's linears together), so each is checked once.
    private var open: [(path: String, file: ReconstructFile)] = []
    /// Linears decoded after the summaries (for tests and the log).
    private(set) var decodes = 0
    /// --imatrix-out's entries, by GGUF tensor name (read with the summaries).
    private(set) var inputSquares: [String: Imatrix.Entry] = [:]
    var tensorCount: Int { byTensor.count }

    init(results: [StoredResult], files: ResultFiles, units: ReconstructUnits) throws {
        self.files = files
        self.units = units
        var byTensor: [String: [(result: StoredResult, index: Int)]] = [:]
        var summary: [String: QuantizedLinearSummary] = [:]
        var squares: [String: Imatrix.Entry] = [:]
        // Unit order, so each tensor's row slices come in row order.
        func unit(_ r: StoredResult) -> (Int, Int) {
            if case let .reconstruct(b, u) = r.task { return (b, u) }
            return (r.task.block, -1)
        }
        for r in results.sorted(by: { unit($0) < unit($1) }) {
            guard case .reconstruct = r.task else { continue }
            let f = try files.openReconstruct(r)
            for i in f.tensors.indices {
                let l = try Self.linear(f, i, of: r)
                byTensor[l.tensor, default: []].append((r, i))
                if let e = l.inputSquares { squares[ImatrixExport.name(of: l)] = e }
                let s = QuantizedLinearSummary(l)
                if var whole = summary[l.tensor] {
                    whole.rows += s.rows
                    whole.hasZeroPointZero = whole.hasZeroPointZero || s.hasZeroPointZero
                    whole.foldedInputOp = whole.foldedInputOp ?? s.foldedInputOp
                    whole.migratedScales = whole.migratedScales ?? s.migratedScales
                    summary[l.tensor] = whole
                } else {
                    summary[l.tensor] = s
                }
            }
        }
        self.byTensor = byTensor
        self.summary = summary
        self.inputSquares = squares
    }

    static func linear(_ f: ReconstructFile, _ i: Int, of r: StoredResult) throws -> QuantizedLinear {
        let l: QuantizedLinear
        do { l = try f.linear(i) } catch { throw JobError("result file \(r.path): \(error)") }
        guard l.tensor == f.tensors[i] else {
            throw CoordinatorError("result file \(r.path) of \(r.task): linear \(i) is not \(f.tensors[i])")
        }
        return l
    }

    func summaries() throws -> [String: QuantizedLinearSummary] { summary }

    func linear(_ tensor: String) throws -> QuantizedLinear {
        guard let slices = byTensor[tensor] else { throw JobError("no quantized result for \(tensor)") }
        return try QuantizedLinear(
            joiningRows: try slices.map { try slice(tensor, $0.result, $0.index) }, parts: units.parts)
    }

    /// Linear i of result file r: the tensor's row slice there (the whole tensor without row slices).
    private func slice(_ tensor: String, _ r: StoredResult, _ i: Int) throws -> QuantizedLinear {
        let f: ReconstructFile
        if let o = open.first(where: { $0.path == r.path }) {
            f = o.file
        } else {
            f = try files.openReconstruct(r)
            open.append((r.path, f))
            if open.count > units.parts { open.removeFirst() }
        }
        decodes += 1
        let q = try Self.linear(f, i, of: r)
        guard q.tensor == tensor else {
            throw CoordinatorError("result file \(r.path) of \(r.task) lost \(tensor) between two reads")
        }
        return q
    }
}
