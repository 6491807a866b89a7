import ArgumentParser
import Client
import Foundation

struct Workers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the workers connected to a coordinator: state, threads, tasks done, heartbeat.")

    @OptionGroup var connection: CoordinatorOptions

    @Flag(help: "Print JSON on stdout.")
    var json = false

    func run() throws {
        try runReportingErrors {
            let client = try connection.makeClient()
            let workers = try client.workers()
            let now = WallClock.nowUnixMs
            if json {
                try printJSON([
                    "coordinator": client.endpoint,
                    "workers": workers.sorted { $0.workerID < $1.workerID }.map { $0.jsonObject(nowUnixMs: now) },
                ])
            } else if workers.isEmpty {
                print("no workers connected to the coordinator at \(client.endpoint)")
            } else {
                WorkerTable.lines(workers, nowUnixMs: now).forEach { print($0) }
            }
        }
    }
}
