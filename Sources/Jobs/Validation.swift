import Calibration
import Foundation
import ModelIO
import Models
import Quantization

/// A job that cannot run as given; the message says what to change.
public struct JobError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// What the machine that validates a job allows: `kiln run` on this host, or a
/// coordinator on behalf of a client it does not trust further than its flags.
public struct JobLimits: Sendable, Equatable {
    /// Memory one process may need for the job (bytes; see `MemoryEstimate`).
    public var maxJobMemory: UInt64
    /// The flag that sets `maxJobMemory`, for messages.
    public var memoryFlag = "--max-job-memory"
    /// A coordinator does not share the client's working directory.
    public var requireAbsolutePaths = false
    /// Resolved directories every input and output must lie under; nil: anywhere.
    public var allowedRoots: [String]?
    /// Calibration activations held in memory (false: `kiln run --spill`).
    public var activationsInMemory = true

    public init(maxJobMemory: UInt64 = JobLimits.defaultMaxJobMemory) {
        self.maxJobMemory = maxJobMemory
    }

    /// 80% of this machine's RAM.
    public static var defaultMaxJobMemory: UInt64 { ProcessInfo.processInfo.physicalMemory / 10 * 8 }
}

/// Upper bounds of the numeric options, checked before anything is sized by them
/// (the memory estimate then bounds their product).
public enum SpecBounds {
    public static let samples = Sampler.maxWindows
    public static let seqlen = Sampler.maxWindowLength
    public static let shardSize = 1 << 20
    public static let groupSize = 1 << 20
    public static let blockSize = 1 << 16
    public static let evalWindows = 1 << 20
    public static let maxDamp = 10.0
    public static let rowParts = 64
    /// Entries of `tensorTypes`: a linear per block of the deepest model Kiln accepts.
    public static let tensorTypes = 1 << 16
}

extension JobSpec {
    /// Checks the whole recipe before any work: options, paths, files, the model's
    /// header, the output location and the memory the job needs. Reads headers only.
    /// Returns the opened model.
    @discardableResult
    public func validate(limits: JobLimits = JobLimits()) throws -> any ModelView {
        try validateOptions()
        try validatePaths(limits)
        try validateFiles()
        let view = try openForJob()
        try validateModel(view)
        try validateImatrix(view, limits)
        try MemoryEstimate(spec: self, config: view.config, limits: limits).check(limits)
        return view
    }

    /// Option checks that need no file.
    public func validateOptions() throws {
        func within<T: Comparable>(_ v: T, _ r: ClosedRange<T>, _ flag: String, _ hint: String) throws {
            guard r.contains(v) else { throw JobError("\(flag) \(v) is out of range: \(hint)") }
        }
        if let b = bits { try within(b, 2...8, "--bits", "use 2 to 8") }
        if let g = groupSize, g != -1 {
            try within(
                g, 1...SpecBounds.groupSize, "--group",
                "use a positive column count (e.g. 32, 64, 128) or -1 for one group per output channel")
        }
        if format.isKQuant && method.usesAWQ {
            throw JobError(
                "--method \(method.rawValue) does not support --format \(format.rawValue) yet (AWQ's clip search "
                    + "fits 32-column groups; a K type's scales come from 256-column super-blocks): use --method gptq "
                    + "or rtn with it, or AWQ with gguf-q4_0/q4_1/q8_0 or gptq-safetensors")
        }
        if format.isKQuant {
            // K types fix their own sub-blocks, bits and grids (a mix even differs per tensor).
            for (flag, given) in [
                ("--bits", bits != nil), ("--group", groupSize != nil), ("--sym/--no-sym", symmetric != nil),
            ]
            where given {
                throw JobError(
                    "--format \(format.rawValue) stores \(format.gridDescription); \(flag) cannot be chosen: "
                        + "drop it or use --format gptq-safetensors")
            }
        } else if format.isGGUF {
            let fixedBits = format == .ggufQ8_0 ? 8 : 4
            if let b = bits, b != fixedBits {
                let other = b == 8 ? "gguf-q8_0" : b == 4 ? "gguf-q4_0" : "gptq-safetensors"
                throw JobError(
                    "--format \(format.rawValue) stores \(format.gridDescription); --bits \(b) cannot be stored: "
                        + "drop --bits, use --format \(other)")
            }
            if let g = groupSize, g != 32 {
                throw JobError(
                    "--format \(format.rawValue) stores \(format.gridDescription); --group \(g) cannot be stored: "
                        + "drop --group or use --format gptq-safetensors")
            }
            if let s = symmetric, s != (format != .ggufQ4_1) {
                let other = s ? "gguf-q4_0" : "gguf-q4_1"
                throw JobError(
                    "--format \(format.rawValue) stores \(format.gridDescription); \(s ? "--sym" : "--no-sym") "
                        + "does not match it: drop the flag or use --format \(other)")
            }
        } else if format == .compressedTensorsW8A8 {
            try validateW8A8Options()
        } else if format == .compressedTensorsW4A16 {
            try validateW4A16Options()
        } else if ![2, 3, 4, 8].contains(resolvedBits) {
            throw JobError(
                "--format gptq-safetensors packs 2, 3, 4 or 8-bit codes; --bits \(resolvedBits) cannot be stored")
        }
        try validateTypeOptions()
        if smooth != nil && format != .compressedTensorsW8A8 {
            throw JobError("--smooth applies to --format compressed-tensors-w8a8 (SmoothQuant W8A8); drop it")
        }
        try within(samples, 1...SpecBounds.samples, "--samples", "use 1 to \(SpecBounds.samples) calibration windows")
        try within(
            seqlen, 2...SpecBounds.seqlen, "--seqlen",
            "use 2 to \(SpecBounds.seqlen) tokens (at most the model's context)")
        try within(
            shardSize, 1...SpecBounds.shardSize, "--shard-size", "use 1 to \(SpecBounds.shardSize) windows per shard")
        if let b = blockSize {
            try within(b, 1...SpecBounds.blockSize, "--block-size", "use 1 to \(SpecBounds.blockSize) columns")
        }
        try within(
            rowParts, 1...SpecBounds.rowParts, "--row-parts", "use 1 to \(SpecBounds.rowParts) slices per linear")
        if method != .rtn && errorReport == false {
            throw JobError(
                "--no-error-report applies to --method rtn: --method \(method.rawValue) measures the output error "
                    + "from the Hessian it needs anyway; drop the flag")
        }
        guard percentDamp.isFinite, (0...SpecBounds.maxDamp).contains(percentDamp) else {
            throw JobError("--damp \(percentDamp) must be a fraction from 0 to \(SpecBounds.maxDamp) (e.g. 0.01)")
        }
        if evalFile != nil {
            try within(evalWindows, 1...SpecBounds.evalWindows, "--eval-windows", "use 1 to \(SpecBounds.evalWindows)")
            try within(evalContext, 2...SpecBounds.seqlen, "evaluation context", "use 2 to \(SpecBounds.seqlen) tokens")
        }
        guard !output.isEmpty else {
            throw JobError("--out is empty: name the output .gguf file, or the directory for gptq-safetensors")
        }
        for (flag, p) in [("--model", model), ("--calib", calibration)] where p.isEmpty {
            throw JobError("\(flag) is empty: name a file")
        }
        do { try recipe.validate() } catch let e as QuantizationError {
            throw JobError("\(e) (change --bits/--group/--act-order/--static-groups)")
        }
    }

    /// Every path the job reads or writes, with its flag.
    var paths: [(flag: String, path: String)] {
        [("--model", model), ("--calib", calibration)] + (evalFile.map { [("--eval", $0)] } ?? [])
            + (imatrix.map { [("--imatrix", $0)] } ?? []) + [("--out", output)]
    }

    /// Absolute paths under the allowed roots, when the limits ask for them.
    public func validatePaths(_ limits: JobLimits) throws {
        for (flag, p) in paths {
            if limits.requireAbsolutePaths && !p.hasPrefix("/") {
                throw JobError(
                    "\(flag) \(p) is a relative path; the coordinator does not share the client's working "
                        + "directory: send an absolute path")
            }
            guard let roots = limits.allowedRoots else { continue }
            let resolved = PathResolution.resolve(p)
            guard roots.contains(where: { resolved == $0 || resolved.hasPrefix($0 == "/" ? "/" : $0 + "/") }) else {
                throw JobError(
                    "\(flag) \(p) is outside the directories this coordinator may use (\(roots.joined(separator: ", "))); "
                        + "move the file there or ask its operator to add --allow-path")
            }
        }
    }

    /// Input files readable and non-empty; the output location writable, holding no
    /// input, and replaceable only with --overwrite (and then only Kiln's own files).
    public func validateFiles() throws {
        let fm = FileManager.default
        func readableText(_ path: String, _ what: String, _ flag: String) throws {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
                throw JobError("\(what) \(path) does not exist; check \(flag)")
            }
            guard !isDir.boolValue else { throw JobError("\(what) \(path) is a directory; give \(flag) a text file") }
            guard fm.isReadableFile(atPath: path) else {
                throw JobError("\(what) \(path) is not readable; check \(flag)")
            }
            let size = (try? fm.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            guard size > 0 else { throw JobError("\(what) \(path) is empty; give \(flag) a text file with content") }
            guard size <= TextFile.maxBytes else {
                throw JobError(
                    "\(what) \(path) is \(size) bytes, above the \(TextFile.maxBytes)-byte limit; give \(flag) a smaller text"
                )
            }
        }
        guard fm.fileExists(atPath: model) else { throw JobError("model \(model) does not exist; check --model") }
        try readableText(calibration, "calibration file", "--calib")
        if let e = evalFile { try readableText(e, "evaluation file", "--eval") }
        try validateOutput()
    }

    func validateOutput() throws {
        let out = URL(fileURLWithPath: output.hasSuffix("/") && output.count > 1 ? String(output.dropLast()) : output)
        let dir = out.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw JobError("output directory \(dir) does not exist; create it or change --out")
        }
        guard access(dir, W_OK) == 0 else { throw JobError("output directory \(dir) is not writable; change --out") }

        // Nothing Kiln writes may be, or contain, one of its inputs.
        let report = JobReport.url(forOutput: output)
        let written = [(output, PathResolution.resolve(out.path)), (report.path, PathResolution.resolve(report.path))]
        for (flag, p) in paths.dropLast() {
            let input = PathResolution.resolve(p)
            for (name, target) in written where input == target || input.hasPrefix(target + "/") {
                throw JobError(
                    "--out \(output): \(name) would \(input == target ? "be" : "hold") the \(flag) input \(p); "
                        + "write to another path (even --overwrite never replaces an input)")
            }
        }

        switch OutputPlacement.existing(out.path) {
        case .none: break
        case .other:
            throw JobError(
                "--out \(output) exists and is not a regular file or directory (a link?); choose another path")
        case .directory where format.isGGUF:
            throw JobError(
                "--out \(output) is a directory; --format \(format.rawValue) writes one .gguf file: name a file")
        case .file where !format.isGGUF:
            throw JobError(
                "--out \(output) is a file; --format \(format.rawValue) writes a directory: name a new directory")
        case .file:
            guard overwrite else {
                throw JobError("--out \(output) already exists; pass --overwrite to replace it, or choose another path")
            }
        case .directory:
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
            if entries.isEmpty { break }
            guard overwrite else {
                throw JobError(
                    "--out \(output) is a directory that is not empty; choose a new directory, or pass --overwrite "
                        + "to replace a previous Kiln output there (files Kiln did not write are never removed)")
            }
            let foreign: [String]
            do { foreign = try OutputManifest.foreignEntries(in: out) } catch {
                throw JobError("--out \(output): \(error)")
            }
            guard foreign.isEmpty else {
                let shown = foreign.prefix(5).joined(separator: ", ") + (foreign.count > 5 ? ", ..." : "")
                throw JobError(
                    "--out \(output) holds files Kiln did not write (\(shown)); even with --overwrite Kiln "
                        + "replaces only its own output: move them away or choose another directory")
            }
        }
        switch OutputPlacement.existing(report.path) {
        case .none: break
        case .file:
            guard overwrite else {
                throw JobError(
                    "the report \(report.path) already exists; pass --overwrite to replace it, or choose another --out")
            }
        default: throw JobError("the report path \(report.path) exists and is not a regular file; choose another --out")
        }
    }

    /// The model's header (mmap; tensors are read only when asked for); errors say to check --model.
    public func openForJob() throws -> any ModelView {
        do { return try openModel(URL(fileURLWithPath: model)) } catch {
            throw JobError("cannot open model: \(error); check --model")
        }
    }

    /// Architecture Kiln can run; shapes the output format can store; header fields the
    /// writers copy (context length, tokenizer ids) valid.
    func validateModel(_ view: any ModelView) throws {
        let file = view.url.lastPathComponent
        guard Architecture(name: view.config.architecture)?.isCausal == true else {
            throw JobError(
                "model \(file): architecture '\(view.config.architecture)' cannot be quantized by kiln run "
                    + "(supported: \(Architecture.list(Architecture.causal)))")
        }
        if format.isGGUF && view.format != "gguf" {
            throw JobError(
                "--format \(format.rawValue) needs a .gguf input model (its metadata and tokenizer are carried over); "
                    + "\(file) is \(view.format): use --format gptq-safetensors")
        }
        // The loader's own header checks: no tensor is read (a coordinator validates on submit).
        do { try checkCausalLM(view: view) } catch { throw JobError("model \(file) cannot be run: \(error)") }
        do { _ = try makeTokenizer(view) } catch {
            throw JobError("model \(file): its tokenizer cannot be used: \(error)")
        }
        let c = view.config
        if format.isGGUF {
            for cols in Set([c.hiddenSize, c.headCount * c.headDim, c.intermediateSize]) where cols % 32 != 0 {
                throw JobError(
                    "model \(file): linears with \(cols) input columns do not fit \(format.rawValue)'s blocks of 32")
            }
        } else {
            let b = resolvedBits
            let outs = [c.headCount * c.headDim, c.kvHeadCount * c.headDim, c.hiddenSize, c.intermediateSize]
            for n in Set(outs + [c.hiddenSize]) where (n * b) % 32 != 0 {
                throw JobError(
                    "model \(file): a linear dimension of \(n) at \(b) bits is not a whole number of int32 words "
                        + "(GPTQ packing); use --bits 4 or 8")
            }
            let widest = max(c.hiddenSize, c.headCount * c.headDim, c.intermediateSize)
            if let g = groupSize, g > widest {
                throw JobError(
                    "--group \(g) exceeds the widest linear input of \(file) (\(widest) columns); "
                        + "use -1 for one group per output channel, or a group size up to \(widest)")
            }
            // compressed-tensors (and vLLM's kernels) split each row into whole groups only.
            let g = resolvedGroupSize
            if format == .compressedTensorsW4A16, g != -1 {
                let inputs = Set([c.hiddenSize, c.headCount * c.headDim, c.intermediateSize])
                if let cols = inputs.sorted().first(where: { $0 % g != 0 }) {
                    let fits = [128, 64, 32].first { d in inputs.allSatisfy { $0 % d == 0 } }
                    throw JobError(
                        "model \(file): linears with \(cols) input columns are not whole groups of \(g), which "
                            + "compressed-tensors-w4a16 needs; use "
                            + (fits.map { "--group \($0) or " } ?? "") + "--group -1 (one scale per output channel)")
                }
            }
        }
        let fewestRows = min(c.headCount * c.headDim, c.kvHeadCount * c.headDim, c.hiddenSize, c.intermediateSize)
        if rowParts > fewestRows {
            throw JobError(
                "--row-parts \(rowParts) exceeds the \(fewestRows) output rows of \(file)'s smallest linear; "
                    + "use at most \(fewestRows)")
        }
        try validateTensorTypes(view)
        if seqlen > c.contextLength {
            throw JobError("--seqlen \(seqlen) exceeds the model's context length \(c.contextLength); lower --seqlen")
        }
        if evalFile != nil && evalContext > c.contextLength {
            throw JobError("evaluation context \(evalContext) exceeds the model's context length \(c.contextLength)")
        }
    }
}

/// Paths compared as the kernel sees them: symlinks resolved in the longest existing
/// prefix, the rest appended (outputs do not exist yet).
public enum PathResolution {
    public static func resolve(_ path: String) -> String {
        var url = URL(fileURLWithPath: path).standardizedFileURL
        var tail: [String] = []
        while true {
            if let r = realpath(url.path, nil) {
                defer { free(r) }
                let head = String(cString: r)
                return tail.isEmpty ? head : (head == "/" ? "" : head) + "/" + tail.reversed().joined(separator: "/")
            }
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { return URL(fileURLWithPath: path).standardizedFileURL.path }
            tail.append(url.lastPathComponent)
            url = parent
        }
    }
}
