import Foundation
import ModelIO
import Models
import Quantization

/// A job that cannot run as given; the message says what to change.
public struct JobError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}

extension JobSpec {
    /// Checks the whole recipe before any work: options, files, the model's header and
    /// the output location. Reads headers only.
    public func validate() throws {
        try validateOptions()
        try validateFiles()
        let view = try openForJob()
        try validateModel(view)
    }

    /// Option checks that need no file.
    public func validateOptions() throws {
        if let b = bits, !(2...8).contains(b) {
            throw JobError("--bits \(b) is out of range; use 2 to 8")
        }
        if let g = groupSize, g != -1 && g < 1 {
            throw JobError("--group \(g) is invalid; use a positive column count (e.g. 32, 64, 128) or -1 for one group per output channel")
        }
        if format.isGGUF {
            let fixedBits = format == .ggufQ8_0 ? 8 : 4
            if let b = bits, b != fixedBits {
                throw JobError("--format \(format.rawValue) stores \(format.gridDescription); --bits \(b) cannot be stored: drop --bits, use --format \(b == 8 ? "gguf-q8_0" : b == 4 ? "gguf-q4_0" : "gptq-safetensors")")
            }
            if let g = groupSize, g != 32 {
                throw JobError("--format \(format.rawValue) stores \(format.gridDescription); --group \(g) cannot be stored: drop --group or use --format gptq-safetensors")
            }
            if let s = symmetric, s != (format != .ggufQ4_1) {
                let other = s ? "gguf-q4_0" : "gguf-q4_1"
                throw JobError("--format \(format.rawValue) stores \(format.gridDescription); \(s ? "--sym" : "--no-sym") does not match it: drop the flag or use --format \(other)")
            }
        } else if ![2, 3, 4, 8].contains(resolvedBits) {
            throw JobError("--format gptq-safetensors packs 2, 3, 4 or 8-bit codes; --bits \(resolvedBits) cannot be stored")
        }
        if samples < 1 { throw JobError("--samples \(samples) must be at least 1") }
        if seqlen < 2 { throw JobError("--seqlen \(seqlen) must be at least 2 tokens") }
        if shardSize < 1 { throw JobError("--shard-size \(shardSize) must be at least 1") }
        if !percentDamp.isFinite || percentDamp < 0 { throw JobError("--damp \(percentDamp) must be a finite fraction >= 0 (e.g. 0.01)") }
        if evalFile != nil {
            if evalWindows < 1 { throw JobError("--eval-windows \(evalWindows) must be at least 1") }
            if evalContext < 2 { throw JobError("evaluation context \(evalContext) must be at least 2 tokens") }
        }
        do { try recipe.validate() } catch let e as QuantizationError {
            throw JobError("\(e) (change --bits/--group/--act-order/--static-groups)")
        }
    }

    /// Input files readable and non-empty; output location writable.
    public func validateFiles() throws {
        let fm = FileManager.default
        func readableText(_ path: String, _ what: String, _ flag: String) throws {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
                throw JobError("\(what) \(path) does not exist or is not a file; check \(flag)")
            }
            guard fm.isReadableFile(atPath: path) else { throw JobError("\(what) \(path) is not readable; check \(flag)") }
            let size = (try? fm.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            guard size > 0 else { throw JobError("\(what) \(path) is empty; give \(flag) a text file with content") }
        }
        guard fm.fileExists(atPath: model) else { throw JobError("model \(model) does not exist; check --model") }
        try readableText(calibration, "calibration file", "--calib")
        if let e = evalFile { try readableText(e, "evaluation file", "--eval") }

        let out = URL(fileURLWithPath: output)
        let dir = out.deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw JobError("output directory \(dir) does not exist; create it or change --out")
        }
        guard access(dir, W_OK) == 0 else { throw JobError("output directory \(dir) is not writable; change --out") }
        if fm.fileExists(atPath: output, isDirectory: &isDir) {
            if format.isGGUF && isDir.boolValue {
                throw JobError("--out \(output) is a directory; --format \(format.rawValue) writes one .gguf file: name a file")
            }
            if !format.isGGUF && !isDir.boolValue {
                throw JobError("--out \(output) is a file; --format gptq-safetensors writes a directory: name a new directory")
            }
        }
        if URL(fileURLWithPath: model).standardizedFileURL.path == out.standardizedFileURL.path {
            throw JobError("--out \(output) is the input model; write to another path")
        }
    }

    func openForJob() throws -> any ModelView {
        do { return try openModel(URL(fileURLWithPath: model)) } catch {
            throw JobError("cannot open model: \(error); check --model")
        }
    }

    /// Architecture Kiln can run; shapes the output format can store.
    func validateModel(_ view: any ModelView) throws {
        let file = view.url.lastPathComponent
        let arch = view.config.architecture.lowercased()
        guard ["llama", "mistral", "qwen2"].contains(arch) else {
            throw JobError("model \(file): architecture '\(view.config.architecture)' cannot be quantized by kiln run (supported: llama, mistral, qwen2)")
        }
        if format.isGGUF && view.format != "gguf" {
            throw JobError("--format \(format.rawValue) needs a .gguf input model (its metadata and tokenizer are carried over); \(file) is \(view.format): use --format gptq-safetensors")
        }
        do { _ = try loadCausalLM(view: view, options: ModelLoadOptions(lazyBlocks: true)) } catch {
            throw JobError("model \(file) cannot be run: \(error)")
        }
        let c = view.config
        if format.isGGUF {
            for cols in Set([c.hiddenSize, c.headCount * c.headDim, c.intermediateSize]) where cols % 32 != 0 {
                throw JobError("model \(file): linears with \(cols) input columns do not fit \(format.rawValue)'s blocks of 32")
            }
        } else {
            let b = resolvedBits
            let outs = [c.headCount * c.headDim, c.kvHeadCount * c.headDim, c.hiddenSize, c.intermediateSize]
            for n in Set(outs + [c.hiddenSize]) where (n * b) % 32 != 0 {
                throw JobError("model \(file): a linear dimension of \(n) at \(b) bits is not a whole number of int32 words (GPTQ packing); use --bits 4 or 8")
            }
        }
        if seqlen > c.contextLength && c.contextLength > 0 {
            throw JobError("--seqlen \(seqlen) exceeds the model's context length \(c.contextLength); lower --seqlen")
        }
    }
}
