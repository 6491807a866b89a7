import Foundation
import ModelIO
import Models

/// --imatrix-out: the job's statistics as a llama.cpp GGUF imatrix, from the entries the
/// reconstruct results carry (`QuantizedLinear.inputSquares`), keyed by GGUF tensor name.
public enum ImatrixExport {
    /// The entries of `linears` (each carried by its first row slice), by GGUF name.
    public static func entries(_ linears: [QuantizedLinear]) -> [String: Imatrix.Entry] {
        var out: [String: Imatrix.Entry] = [:]
        for l in linears {
            if let e = l.inputSquares { out[name(of: l)] = e }
        }
        return out
    }

    /// The linear's GGUF tensor name, which imatrix files use whatever the model's format.
    public static func name(of l: QuantizedLinear) -> String {
        LlamaTensorNames.linear(l.linear, block: l.block, naming: .gguf)
    }

    /// Writes the file when the job asks for one: every quantized linear must have its entry.
    public static func write(spec: JobSpec, entries: [String: Imatrix.Entry], tensors: Int) throws {
        guard let out = spec.imatrixOut else { return }
        guard entries.count == tensors else {
            throw JobError("--imatrix-out \(out): \(entries.count) of \(tensors) linears carry their statistics")
        }
        let m = Imatrix(
            entries: entries, datasets: [URL(fileURLWithPath: spec.calibration).lastPathComponent],
            chunkCount: spec.samples, chunkSize: spec.seqlen)
        do { try m.writeGGUF(to: URL(fileURLWithPath: out), replace: spec.overwrite) } catch {
            throw JobError("--imatrix-out: \(error)")
        }
    }
}
