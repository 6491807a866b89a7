import ArgumentParser
import Foundation

@main
struct Kiln: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Post-training quantization of large language models, on one machine or a cluster.",
        subcommands: [
            Inspect.self, Eval.self, Embed.self, Run.self, CoordinatorCommand.self, WorkerCommand.self, Keygen.self,
            Submit.self, Watch.self, Status.self, Cancel.self, Workers.self, GC.self,
        ])
}

/// Failures the user can act on: printed as one line on stderr, exit code 1.
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Runs a command body, turning any thrown error into a clear one-line message
/// and a non-zero exit instead of a trap or a stack dump.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as CleanExit {
        throw error
    } catch {
        FileHandle.standardError.write(Data("kiln: error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}
