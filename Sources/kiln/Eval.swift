import ArgumentParser
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Perplexity of a causal language model on a text file.")
    func run() throws { throw UserError("eval: not built yet") }
}
struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sentence embeddings from a BERT model, one per line.")
    func run() throws { throw UserError("embed: not built yet") }
}
