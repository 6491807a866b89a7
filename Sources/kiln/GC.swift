import ArgumentParser
import Coordinator
import Foundation

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove result files of ended jobs and stale temporary files from a coordinator's data directory.",
        discussion: """
            Removes DATA_DIR/results/<job>/ of jobs that succeeded, failed or were cancelled, or
            that the job store does not know, and stale .tmp-* files of unfinished jobs (whose
            results the coordinator resumes from). Only names Kiln creates are removed; anything
            else is listed and left alone. Refused while a coordinator runs on DATA_DIR.
            """)

    @Option(help: "The coordinator's data directory (holding kiln.sqlite and results/).")
    var dataDir: String

    func run() throws {
        try runReportingErrors {
            let r = try ResultsGC.run(dataDir: URL(fileURLWithPath: dataDir))
            for e in r.entries {
                print("results/\(e.job) (\(e.state)): removed \(e.removal.files) files, \(Self.mib(e.removal.bytes))")
            }
            for f in r.leftAlone { print("results/\(f): left alone (not created by Kiln)") }
            print("freed \(Self.mib(r.bytes)) in \(r.files) files")
        }
    }

    static func mib(_ n: Int64) -> String { String(format: "%.1f MiB", Double(n) / Double(1 << 20)) }
}
