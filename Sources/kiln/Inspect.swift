import ArgumentParser
import Foundation
import Jobs
import ModelIO

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, hyper-parameters, tensor table and tokenizer (reads headers only).")

    @Argument(help: "A .gguf file, a .safetensors file, or a Hugging Face model directory.")
    var model: String

    @Flag(help: "Print a JSON object instead of tables.")
    var json = false

    @Flag(name: .customLong("no-tensors"), help: "Leave the tensor table out.")
    var noTensors = false

    func run() throws {
        try runReportingErrors {
            let view = try openModel(URL(fileURLWithPath: model))
            let c = view.config
            let totalBytes = view.tensors.reduce(0) { $0 + $1.byteCount }
            let params = view.tensors.reduce(0) { $0 + $1.elementCount }
            let tok = tokenizerSummary(view)
            if json {
                var obj: [String: Any] = [
                    "path": view.url.path, "format": view.format, "architecture": c.architecture,
                    "parameters": params, "tensor_bytes": totalBytes,
                    "hyperparameters": [
                        "vocab_size": c.vocabSize, "hidden_size": c.hiddenSize,
                        "intermediate_size": c.intermediateSize, "layers": c.layerCount,
                        "heads": c.headCount, "kv_heads": c.kvHeadCount, "context_length": c.contextLength,
                        "norm_eps": Double(c.normEps), "rope_theta": Double(c.ropeTheta),
                        "tied_embeddings": c.tiedEmbeddings,
                    ] as [String: Any],
                    "tokenizer": tok,
                ]
                if !noTensors {
                    obj["tensors"] = view.tensors.map {
                        ["name": $0.name, "dtype": $0.dtype.rawValue, "shape": $0.shape, "bytes": $0.byteCount]
                            as [String: Any]
                    }
                }
                try printJSON(obj)
                return
            }
            print("model         \(view.url.path)")
            print("format        \(view.format)")
            print("architecture  \(c.architecture)")
            print(
                "parameters    \(params) (\(MemoryEstimate.format(UInt64(totalBytes))) of tensor data in \(view.tensors.count) tensors)"
            )
            print("hidden        \(c.hiddenSize)   ffn \(c.intermediateSize)   layers \(c.layerCount)")
            print(
                "heads         \(c.headCount)   kv heads \(c.kvHeadCount)   head dim \(c.headCount > 0 ? c.hiddenSize / c.headCount : 0)"
            )
            print("context       \(c.contextLength)   rope theta \(c.ropeTheta)   norm eps \(c.normEps)")
            print("vocab         \(c.vocabSize)   tied embeddings \(c.tiedEmbeddings)")
            print("tokenizer     " + tok.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "  "))
            if noTensors { return }
            print("")
            let width = max(4, view.tensors.map(\.name.count).max() ?? 4)
            print("name".padding(toLength: width, withPad: " ", startingAt: 0) + "  dtype  shape                 bytes")
            for t in view.tensors {
                let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
                print(
                    t.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                        + t.dtype.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0) + "  "
                        + shape.padding(toLength: 20, withPad: " ", startingAt: 0) + "  \(t.byteCount)")
            }
        }
    }
}

/// A few facts about the tokenizer, without building it.
func tokenizerSummary(_ view: any ModelView) -> [String: Any] {
    switch view.tokenizer {
    case let .ggufMetadata(meta)?:
        var out: [String: Any] = ["source": "gguf"]
        out["model"] = meta["tokenizer.ggml.model"]?.string ?? "?"
        out["pre"] = meta["tokenizer.ggml.pre"]?.string ?? "default"
        out["tokens"] = meta["tokenizer.ggml.tokens"]?.array?.count ?? 0
        out["merges"] = meta["tokenizer.ggml.merges"]?.array?.count ?? 0
        if let bos = meta["tokenizer.ggml.bos_token_id"]?.int { out["bos"] = bos }
        if let eos = meta["tokenizer.ggml.eos_token_id"]?.int { out["eos"] = eos }
        return out
    case let .tokenizerJSON(url)?:
        return ["source": "tokenizer.json", "path": url.path]
    case let .vocabTxt(url)?:
        return ["source": "vocab.txt", "path": url.path]
    case nil:
        return ["source": "none"]
    }
}
