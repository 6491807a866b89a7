import ArgumentParser
import Client
import Foundation
import KilnProtocol

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one job's blocks, or every job the coordinator knows.")

    @Argument(help: "Job id (default: list every job).")
    var job: String?

    @OptionGroup var connection: CoordinatorOptions

    @Flag(help: "Print JSON on stdout.")
    var json = false

    func run() throws {
        try runReportingErrors {
            let client = try connection.makeClient()
            let now = WallClock.nowUnixMs
            if let job {
                let view = JobView(status: try client.status(jobID: job))
                if json {
                    try printJSON(view.jsonObject(nowUnixMs: now))
                } else {
                    JobTable.lines(view, nowUnixMs: now).forEach { print($0) }
                    if !view.spec.outputPath.isEmpty { print("output: \(view.spec.outputPath)") }
                }
                return
            }
            let views = try client.snapshot().jobs.map(JobView.init(status:)).sorted {
                $0.submittedUnixMs < $1.submittedUnixMs
            }
            if json {
                try printJSON(["jobs": views.map { $0.jsonObject(nowUnixMs: now) }])
            } else if views.isEmpty {
                print("no jobs on the coordinator at \(client.endpoint)")
            } else {
                for v in views {
                    print(JobTable.summary(v, nowUnixMs: now) + (v.spec.name.isEmpty ? "" : "  (\(v.spec.name))"))
                }
            }
        }
    }
}
