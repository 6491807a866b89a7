import ArgumentParser
import Client
import Foundation
import Jobs

struct Submit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a quantization job to a coordinator and print its id.",
        discussion: """
            Takes the recipe options of `kiln run`. Paths are sent as absolute paths and must \
            be readable by the coordinator (and the workers, or they fetch the model from it).

            With --target-bpw, the sensitivity job runs on the coordinator first (as "<name>.sensitivity", \
            followed to its end, its progress on stderr); the job is then submitted with the types chosen \
            from its report, as `kiln run --target-bpw` chooses them.

            Example: JOB=$(kiln submit --model m.gguf --calib text.txt --out m-q4_0.gguf) && kiln watch "$JOB"
            """)

    @OptionGroup var recipe: RecipeOptions
    @OptionGroup var connection: CoordinatorOptions

    @Option(help: "A label for the job (default: the output file name).")
    var name: String?

    @Flag(help: "Follow the job to its end like `kiln watch`; exit status 1 if it failed or was cancelled.")
    var wait = false

    @Option(
        help: ArgumentHelp(
            "With --wait: progress feed endpoint (default: the coordinator's port + 1).", valueName: "endpoint"))
    var publish: String?

    @Flag(help: "With --wait: plain lines even on a terminal.")
    var plain = false

    @Flag(help: "Print JSON on stdout: the job id and state (with --wait: the final status).")
    var json = false

    func run() throws {
        try runReportingErrors {
            var spec = recipe.jobSpec().withAbsolutePaths()
            let label = name ?? URL(fileURLWithPath: spec.output).lastPathComponent
            let resolving = spec.targetBPW != nil && spec.tensorTypes == nil
            if !resolving {
                do { try spec.validateOptions() } catch let e as JobError { throw UserError(e.description) }
            }
            let client = try connection.makeClient()
            if resolving { spec = try resolveTarget(spec, name: label, client: client) }
            let reply = try client.submit(spec, name: label)
            if json && !wait {
                try printJSON(["job_id": reply.jobID, "state": reply.status.state.label])
            } else if !json {
                print(reply.jobID)
                fflush(nil)  // every stdio stream (the global `stdout` is not concurrency-safe to name)
            }
            if wait {
                try followJob(reply.jobID, client: client, publish: publish, plain: plain, json: json)
            }
        }
    }

    /// `--target-bpw`: its sensitivity job runs on the coordinator first (its progress on
    /// stderr), and the job is submitted with the types chosen from its report.
    func resolveTarget(_ spec: JobSpec, name: String, client: CoordinatorClient) throws -> JobSpec {
        let progress = PlainLines(out: FileHandle.standardError)
        do {
            return try client.resolveTargetBPW(
                spec, name: name, publish: publish,
                submitted: { id in
                    FileHandle.standardError.write(Data("kiln: sensitivity job \(id) (--target-bpw)\n".utf8))
                },
                progress: { view, previous in progress.show(view, previous: previous, nowUnixMs: WallClock.nowUnixMs) }
            ).spec
        } catch let e as JobError {
            throw UserError(e.description)
        }
    }
}
