import ArgumentParser
import Foundation
import Logging
import Worker
import ZeroMQ

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker: connect to a coordinator and execute collect / reconstruct / propagate tasks.",
        discussion: "Example: kiln worker --coordinator tcp://coord:5555 --threads 1")

    @Option(help: "The coordinator's ROUTER endpoint.")
    var coordinator: String
    @Option(help: "BLAS threads (1 keeps results independent of thread scheduling).")
    var threads = 1
    @Option(help: "Worker id (default: host-pid-random).")
    var id: String?
    @Option(help: "File holding the coordinator's CURVE public key (Z85).")
    var curveServerKey: String?
    @Option(help: "File holding this worker's CURVE secret key (Z85); generated if omitted.")
    var curveSecret: String?
    @Option(help: "trace | debug | info | notice | warning | error")
    var logLevel = "info"

    func run() throws {
        try runReportingErrors {
            guard threads >= 1 else { throw UserError("--threads must be at least 1 (got \(threads))") }
            bootstrapLogging(logLevel)
            var c = WorkerConfig(coordinator: coordinator, threads: threads, id: id)
            if let f = curveServerKey { c.curveServerKey = try readKeyFile(f, what: "--curve-server-key").first }
            if let f = curveSecret { c.curveKeys = try ZMQCurveKeyPair(secretKey: try readKeyFile(f, what: "--curve-secret")[0]) }
            let worker = Worker(config: c)
            let signals = stopOnSignals { worker.requestStop() }
            worker.run()
            worker.stop()
            _ = signals
        }
    }
}
