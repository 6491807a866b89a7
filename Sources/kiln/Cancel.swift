import ArgumentParser
import Client
import Foundation

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job: its tasks stop and no output is written.")

    @Argument(help: "Job id.")
    var job: String

    @Option(help: "Why (kept in the job's record).")
    var reason = "cancelled by kiln cancel"

    @OptionGroup var connection: CoordinatorOptions

    @Flag(help: "Print JSON on stdout.")
    var json = false

    func run() throws {
        try runReportingErrors {
            let reply = try connection.makeClient().cancel(jobID: job, reason: reason)
            let id = reply.jobID.isEmpty ? job : reply.jobID
            if json {
                try printJSON(["job_id": id, "state": reply.state.label])
            } else {
                print("job \(id): \(reply.state.label)")
            }
        }
    }
}
