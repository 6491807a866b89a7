import Foundation
import ModelIO
import Models

extension JobSpec {
    /// --imatrix and --imatrix-out: what they combine with, the output path, and the imported file
    /// (parsed, an entry of the right length for every linear the job quantizes).
    func validateImatrix(_ view: any ModelView, _ limits: JobLimits) throws {
        if let path = imatrix {
            guard method == .rtn else {
                throw JobError(
                    "--imatrix applies to --method rtn: --method \(method.rawValue) takes its importance from the "
                        + "job's own statistics (GPTQ needs the whole Hessian; an imatrix holds only its diagonal)")
            }
            guard format != .compressedTensorsW8A8 else {
                throw JobError("--imatrix applies to GGUF and gptq-safetensors outputs, not compressed-tensors-w8a8")
            }
            guard resolvedScaleSearch else {
                throw JobError("--imatrix is the scale search's importance: drop --no-scale-search")
            }
            try checkImatrix(try Self.readImatrix(path, flag: "--imatrix"), path: path, view)
        }
        if let out = imatrixOut {
            guard needsStatistics else {
                throw JobError(
                    "--imatrix-out writes the job's calibration statistics, and this job gathers none (RTN "
                        + "without --scale-search or --error-report, or with --imatrix): add --scale-search or use --method gptq"
                )
            }
            // The same path rules as --out's.
            var asOutput = self
            asOutput.output = out
            try asOutput.validatePaths(limits)
            try validateImatrixOut(out)
        }
    }

    static func readImatrix(_ path: String, flag: String) throws -> Imatrix {
        do { return try Imatrix.read(URL(fileURLWithPath: path)) } catch { throw JobError("\(flag): \(error)") }
    }

    /// Every linear of every block has an entry of its input width.
    func checkImatrix(_ m: Imatrix, path: String, _ view: any ModelView) throws {
        let c = view.config
        let columns = [
            "attn_q": c.hiddenSize, "attn_k": c.hiddenSize, "attn_v": c.hiddenSize,
            "attn_output": c.headCount * c.headDim, "ffn_gate": c.hiddenSize, "ffn_up": c.hiddenSize,
            "ffn_down": c.intermediateSize,
        ]
        for b in 0..<c.layerCount {
            for linear in Tasks.groups.joined() {
                let name = LlamaTensorNames.linear(linear, block: b, naming: .gguf)
                guard let e = m.entries[name] else {
                    throw JobError("--imatrix \(path): no entry for \(name), which the job quantizes")
                }
                if let n = columns[linear], e.sums.count != n {
                    throw JobError(
                        "--imatrix \(path): entry \(name) has \(e.sums.count) values, the tensor has \(n) input columns"
                    )
                }
            }
        }
    }

    /// A new file in a writable directory, no input or output of the job; an existing file is
    /// replaced only with --overwrite and only when it is an imatrix (never someone else's file).
    func validateImatrixOut(_ out: String) throws {
        guard !out.isEmpty else { throw JobError("--imatrix-out is empty: name a .gguf file") }
        let url = URL(fileURLWithPath: out)
        let dir = url.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue,
            access(dir, W_OK) == 0
        else { throw JobError("--imatrix-out \(out): directory \(dir) does not exist or is not writable") }
        let target = PathResolution.resolve(out)
        let taken =
            paths + [("the report", JobReport.url(forOutput: output).path)]
            + (imatrix.map { [("--imatrix", $0)] } ?? [])
        for (flag, p) in taken
        where PathResolution.resolve(p) == target || target.hasPrefix(PathResolution.resolve(p) + "/") {
            throw JobError("--imatrix-out \(out) is \(flag) \(p); write it to another path")
        }
        switch OutputPlacement.existing(out) {
        case .none: break
        case .file:
            guard overwrite else {
                throw JobError(
                    "--imatrix-out \(out) already exists; pass --overwrite to replace it, or choose another path")
            }
            guard (try? Imatrix.read(url)) != nil else {
                throw JobError(
                    "--imatrix-out \(out) exists and is not an imatrix file; even with --overwrite Kiln replaces only "
                        + "its own kind of output: choose another path")
            }
        default: throw JobError("--imatrix-out \(out) exists and is not a regular file; choose another path")
        }
    }
}
