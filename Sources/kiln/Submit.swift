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
            let spec = recipe.jobSpec()
            if spec.targetBPW != nil {
                throw UserError(
                    "--target-bpw runs a sensitivity job before the job: use kiln run (--workers N for the cluster's "
                        + "code path); a coordinator does not resolve it yet")
            }
            do { try spec.validateOptions() } catch let e as JobError { throw UserError(e.description) }
            let wire = try spec.wireSpec(name: name ?? URL(fileURLWithPath: spec.output).lastPathComponent)
            let client = try connection.makeClient()
            let reply = try client.submit(wire)
            guard !reply.jobID.isEmpty else {
                throw UserError("coordinator at \(client.endpoint) accepted the job but sent no job id")
            }
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
}
