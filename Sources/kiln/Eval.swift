import ArgumentParser
import Calibration
import Foundation
import ModelIO
import Models
import Tensor

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a causal language model on a text file.",
        discussion: """
            Protocol: the whole file is tokenized without special tokens and cut into
            non-overlapping windows of --ctx tokens from the start; tokens 1..ctx-1 of each
            window are scored given the tokens before them in the same window;
            PPL = exp(sum NLL / ((ctx - 1) * windows)).
            """)

    @Argument(help: "A .gguf file, a .safetensors file or a Hugging Face model directory.")
    var model: String

    @Option(help: "Text file to score.")
    var text: String

    @Option(parsing: .unconditional, help: "Tokens per window (at most the model's context length).")
    var ctx: Int = 512

    @Option(parsing: .unconditional, help: "Number of windows (default: every whole window of the file).")
    var windows: Int?

    @Option(parsing: .unconditional, help: "BLAS threads (default: OpenBLAS's choice).")
    var threads: Int?

    @Flag(help: "Print a JSON object with perplexity, tokens, windows and seconds.")
    var json = false

    @Option(help: "Also write the text's token ids (a JSON list) here, for scoring the same tokens elsewhere.")
    var writeIds: String?

    func run() throws {
        try runReportingErrors {
            guard ctx >= 2 else { throw UserError("--ctx must be at least 2 (got \(ctx))") }
            if let w = windows, w < 1 { throw UserError("--windows must be at least 1 (got \(w))") }
            if let t = threads {
                guard (1...1024).contains(t) else { throw UserError("--threads \(t) is out of range: use 1 to 1024") }
                BLAS.threads = t
            }
            let started = Date()
            let view = try openModel(URL(fileURLWithPath: model))
            guard ctx <= view.config.contextLength else {
                throw UserError(
                    "--ctx \(ctx) exceeds the context length of \(view.url.lastPathComponent) "
                        + "(\(view.config.contextLength)); use at most \(view.config.contextLength)")
            }
            guard let source = view.tokenizer else {
                throw UserError(
                    "\(view.url.lastPathComponent): the model carries no tokenizer (GGUF tokenizer.ggml.* keys or tokenizer.json)"
                )
            }
            let tokenizer = try loadTokenizer(source)
            let textURL = URL(fileURLWithPath: text)
            let content = try TextFile.read(textURL, what: "text file (--text)")
            let ids = tokenizer.encode(content).map(Int32.init)
            if let path = writeIds {
                do {
                    try JSONSerialization.data(withJSONObject: ids.map(Int.init)).write(to: URL(fileURLWithPath: path))
                } catch {
                    throw UserError("--write-ids \(path): cannot write: \(error.localizedDescription)")
                }
            }
            let available = ids.count / ctx
            guard available >= 1 else {
                throw UserError("\(text): \(ids.count) tokens is less than one window of --ctx \(ctx)")
            }
            let n = windows ?? available
            guard n <= available else {
                throw UserError(
                    "\(text): \(ids.count) tokens give \(available) windows of \(ctx); lower --windows (asked \(n))")
            }
            let lm = try loadCausalLM(view: view, options: ModelLoadOptions(lazyBlocks: false))
            let bar = ProgressBar(total: n, label: "eval")
            bar.update(0)
            let result = try Perplexity.evaluate(model: lm, ids: ids, contextLength: ctx, windows: n) { p in
                bar.update(p.window + 1, detail: String(format: "ppl %.4f", p.runningPerplexity))
            }
            bar.finish()
            let seconds = Date().timeIntervalSince(started)
            if json {
                try printJSON([
                    "model": view.url.path, "text": textURL.path, "perplexity": result.perplexity,
                    "tokens": ids.count, "windows": n, "ctx": ctx, "scored_tokens": result.scoredTokens,
                    "window_nll_sums": result.windowNLLSums, "seconds": seconds,
                ])
            } else {
                print(
                    String(
                        format: "perplexity %.4f  (%d windows of %d tokens, %d scored of %d in the file, %.1f s)",
                        result.perplexity, n, ctx, result.scoredTokens, ids.count, seconds))
            }
        }
    }
}
