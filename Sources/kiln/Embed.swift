import ArgumentParser
import Calibration
import Foundation
import ModelIO
import Models
import Tokenizers

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sentence embeddings from a BERT model (mean pooling, L2-normalised), one per non-empty line.")

    @Argument(
        help: "A BERT model: Hugging Face directory or .safetensors file with config.json and tokenizer.json beside it."
    )
    var model: String

    @Option(help: "Text file: one sentence per line.")
    var text: String

    @Flag(help: "Print a JSON object {\"embeddings\": [[...], ...]} instead of one line of numbers per sentence.")
    var json = false

    func run() throws {
        try runReportingErrors {
            let view = try openModel(URL(fileURLWithPath: model))
            let bert = try loadBERT(view: view)
            guard let source = view.tokenizer else {
                throw UserError("\(view.url.lastPathComponent): no tokenizer.json or vocab.txt beside the model")
            }
            let tokenizer = try loadTokenizer(source)
            let content = try TextFile.read(URL(fileURLWithPath: text), what: "text file (--text)")
            let lines = content.split(whereSeparator: \.isNewline).map(String.init)
                .filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            guard !lines.isEmpty else { throw UserError("\(text): no sentences (the file has no non-empty line)") }
            var embeddings: [[Float]] = []
            for line in lines {
                var ids = tokenizer.encodeForModel(line)
                if ids.count > bert.maxPositions {  // keep [SEP] last, as truncation does
                    ids = Array(ids.prefix(bert.maxPositions - 1)) + [ids.last!]
                }
                embeddings.append(bert.embed(ids.map(Int32.init)))
            }
            if json {
                try printJSON([
                    "model": view.url.path, "dimensions": embeddings.first?.count ?? 0,
                    "embeddings": embeddings.map { $0.map(Double.init) },
                ])
            } else {
                for e in embeddings { print(e.map { String(format: "%.6f", $0) }.joined(separator: " ")) }
            }
        }
    }
}
