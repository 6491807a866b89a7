import ArgumentParser
import Calibration
import Embedded
import Foundation
import Jobs
import Models
import Tensor

extension SamplerKind: ExpressibleByArgument {}
extension QuantMethod: ExpressibleByArgument {}
extension JobMode: ExpressibleByArgument {}
extension OutputFormat: ExpressibleByArgument {}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a model on this machine: calibrate, reconstruct block by block, write, evaluate.",
        discussion: """
            Example: kiln run --model m.gguf --calib text.txt --method gptq --format gguf-q4_0 --out m-q4_0.gguf \\
                              --eval held-out.txt
            The report (perplexity before/after, per-linear output error, time per phase, peak RSS)
            is printed and written beside the output as <out>.report.json.
            """)

    @OptionGroup(title: "Recipe")
    var recipe: RecipeOptions
    @Option(
        parsing: .unconditional,
        help: """
            Task threads (each task on one BLAS thread; with --workers, each worker's task lanes) and the \
            evaluation's BLAS threads. The output does not depend on it.
            """)
    var threads: Int?
    @Option(
        parsing: .unconditional,
        help: "Run as a coordinator and N workers in this process over inproc:// (the cluster's code path).")
    var workers: Int?
    @Option(
        help: ArgumentHelp(
            "Refuse a job whose estimated memory exceeds SIZE (e.g. 16G; default 80% of RAM).",
            valueName: "size"))
    var maxJobMemory: String?
    @Option(
        help: ArgumentHelp(
            "Keep calibration activations in files under DIR instead of memory (calibration sets larger than RAM).",
            valueName: "dir"))
    var spill: String?
    @Flag(help: "Print the report as JSON on stdout.")
    var json = false
    @Option(
        help: ArgumentHelp(
            "With --workers: serve the web dashboard of the in-process coordinator at HOST:PORT (loopback only; "
                + "a bare PORT: 127.0.0.1:PORT).", valueName: "host:port"))
    var http: String?
    @Option(
        help: ArgumentHelp(
            "With --http: keep serving the finished job's page for this many seconds after the report.",
            valueName: "seconds"))
    var httpLinger = 0.0

    func spec() -> JobSpec { recipe.jobSpec() }

    func limits() throws -> JobLimits {
        JobLimits(maxJobMemory: try maxJobMemoryBytes(maxJobMemory))
    }

    func run() throws {
        try runReportingErrors {
            if let t = threads {
                guard (1...1024).contains(t) else { throw UserError("--threads \(t) is out of range: use 1 to 1024") }
                BLAS.threads = t
            }
            if let n = workers, !(1...256).contains(n) {
                throw UserError("--workers \(n) is out of range: use 1 to 256 in-process workers")
            }
            let limits = try limits()
            let progress = RunProgress(terminal: isatty(STDERR_FILENO) == 1, errorReport: spec().resolvedErrorReport)
            let report: JobReport
            guard http == nil || workers != nil else {
                throw UserError("--http needs --workers N: the dashboard follows the in-process coordinator")
            }
            guard httpLinger >= 0, httpLinger.isFinite, httpLinger <= 86_400 else {
                throw UserError("--http-linger \(httpLinger) must be 0 to 86400 seconds")
            }
            let web = try http.map { try WebPort(bind: $0, tokenFile: nil, secured: false, insecure: false) }
            if let web { FileHandle.standardError.write(Data("dashboard on \(web.url)\n".utf8)) }
            if let n = workers {
                guard spill == nil else {
                    throw UserError(
                        "--spill applies to kiln run without --workers (workers keep their shards in memory)")
                }
                report = try TargetBPW.run(spec(), limits: limits) { spec in
                    try spec.validate(limits: limits)
                    let r = try EmbeddedCluster.run(
                        spec: spec, workers: n, threads: threads ?? 1, progress: progress.handle,
                        started: { coordinator, context in web?.follow(coordinator, context: context) },
                        stopping: { coordinator in web?.finish(coordinator) }
                    ).report
                    try r.write()
                    return r
                }
            } else {
                var spilled = limits
                spilled.activationsInMemory = spill == nil
                report = try TargetBPW.run(spec(), limits: spilled) { spec in
                    try Job.run(
                        spec, spill: spill.map { URL(fileURLWithPath: $0) }, limits: limits,
                        progress: progress.handle)
                }
            }
            progress.finish()
            if json {
                FileHandle.standardOutput.write(try report.jsonData())
                FileHandle.standardOutput.write(Data("\n".utf8))
            } else {
                print(report.table())
            }
            if let web {
                if httpLinger > 0 {
                    fflush(nil)
                    FileHandle.standardError.write(
                        Data("the dashboard keeps showing the job at \(web.url) for \(Int(httpLinger)) s\n".utf8))
                    Thread.sleep(forTimeInterval: httpLinger)
                }
                web.stop()
            }
        }
    }
}

/// Progress on stderr: on a terminal one updating line per block (statistics and
/// reconstruction progress, then the block's error); otherwise a plain line per block.
final class RunProgress {
    let terminal: Bool
    /// Whether the job measures the output error (RTN without --error-report does not).
    let errorReport: Bool
    private var open = false
    private var collected = 0, reconstructed = 0, propagated = 0
    private var current = -1

    init(terminal: Bool, errorReport: Bool = true) {
        self.terminal = terminal
        self.errorReport = errorReport
    }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

    private func line(_ s: String) {
        if terminal {
            write("\r\u{1B}[2K" + s)
            open = true
        }
    }

    private func endLine(_ s: String) {
        if terminal { write("\r\u{1B}[2K" + s + "\n") } else { write(s + "\n") }
        open = false
    }

    func handle(_ e: JobEvent) {
        switch e {
        case let .phase(name):
            if open {
                write("\n")
                open = false
            }
            if !terminal { write("\(name)\n") } else { line(name) }
        case let .task(t, done, total):
            if t.block != current {
                current = t.block
                collected = 0
                reconstructed = 0
                propagated = 0
            }
            switch t {
            case .collect: collected += 1
            case .reconstruct: reconstructed += 1
            case .propagate: propagated += 1
            case .merge: break
            }
            line(
                "block \(t.block): " + (collected > 0 ? "statistics \(collected) shards, " : "")
                    + "reconstruct \(reconstructed)/\(Linear.groupCount)"
                    + (propagated > 0 ? ", propagate \(propagated)" : "") + "   [\(done)/\(total) tasks]")
        case let .blockDone(b, blocks, _) where !errorReport:
            endLine(String(format: "block %2d/%d  quantized (output error not measured)", b + 1, blocks))
        case let .blockDone(b, blocks, linears):
            let rel = linears.isEmpty ? 0 : linears.map(\.relativeError).reduce(0, +) / Double(linears.count)
            let worst = linears.max { $0.relativeError < $1.relativeError }
            endLine(
                String(format: "block %2d/%d  mean relative output error %.3e", b + 1, blocks, rel)
                    + (worst.map { String(format: "  (worst %@ %.3e)", $0.linear, $0.relativeError) } ?? ""))
        case let .eval(label, done, total, _):
            if terminal { line("eval \(label): block \(done)/\(total)") }
        }
    }

    func finish() {
        if open {
            write("\n")
            open = false
        }
    }
}
