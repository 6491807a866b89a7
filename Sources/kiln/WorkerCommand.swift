import ArgumentParser
import Coordinator
import Foundation
import Logging
import Web
import Worker
import ZeroMQ

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker: connect to a coordinator and execute collect / reconstruct / propagate tasks.",
        discussion: """
            Run one worker per host and give it the host's cores with --threads: each thread is a task lane \
            running one task on one BLAS thread, so the output does not depend on it.

            Example: kiln worker --coordinator tcp://coord:5555 --threads 16
            """)

    @Option(help: "The coordinator's ROUTER endpoint.")
    var coordinator: String
    @Option(help: "Task lanes: tasks run at once, each on one BLAS thread (usually the host's cores).")
    var threads = 1
    @Option(help: "Worker id (default: host-pid-random).")
    var id: String?
    @Option(help: "File holding the coordinator's CURVE public key (Z85).")
    var curveServerKey: String?
    @Option(help: "File holding this worker's CURVE secret key (Z85); generated if omitted.")
    var curveSecret: String?
    @OptionGroup var token: TokenFileOption
    @Option(
        help: ArgumentHelp(
            "Where a model fetched from the coordinator is kept, and large task inputs arrive (spool/) (default: a kiln-worker-ID directory under the temporary directory).",
            valueName: "dir"))
    var cacheDir: String?
    @Flag(
        help:
            "Always fetch the job's model from the coordinator in ranges, even if its path is readable here (hosts that do not share the coordinator's files). Without it the worker fetches only when the path is unreadable or its size differs."
    )
    var fetchModel = false
    @Option(
        help: ArgumentHelp(
            "Serve this worker's Prometheus metrics at http://HOST:PORT/metrics (a bare PORT: 127.0.0.1:PORT).",
            valueName: "host:port"))
    var metrics: String?
    @Option(
        help: ArgumentHelp(
            "File holding the bearer token every --metrics request must carry (required beyond loopback).",
            valueName: "file"))
    var metricsTokenFile: String?
    @Flag(help: "Allow --metrics beyond loopback without CURVE keys (trusted networks only).")
    var insecure = false
    @Option(help: "trace | debug | info | notice | warning | error")
    var logLevel = "info"

    func run() throws {
        try runReportingErrors {
            guard (1...256).contains(threads) else {
                throw UserError(
                    "--threads \(threads) is out of range: use 1 to 256 (task lanes, usually the host's cores)")
            }
            bootstrapLogging(logLevel)
            var c = WorkerConfig(coordinator: coordinator, threads: threads, id: id)
            if let f = curveServerKey {
                c.curveServerKey = try readKeyFile(f, what: "--curve-server-key", kind: .publicKey)[0]
            }
            if let f = curveSecret {
                guard c.curveServerKey != nil else {
                    throw UserError("--curve-secret needs --curve-server-key (the coordinator's public key file)")
                }
                c.curveKeys = try readSecretKey(f, what: "--curve-secret")
            }
            if let f = curveServerKey {
                c.curveKeySource = "--curve-server-key \(f)" + (curveSecret.map { ", --curve-secret \($0)" } ?? "")
            }
            c.token = try token.read(environment: ProcessInfo.processInfo.environment)
            c.fetchModel = fetchModel
            if let d = cacheDir { c.cacheDirectory = URL(fileURLWithPath: d) }
            var server: HTTPService?
            if let text = metrics {
                let (bind, token) = try HTTPBind.configure(
                    text, flag: "--metrics", tokenFile: metricsTokenFile, secured: c.curveServerKey != nil,
                    insecure: insecure)
                let registry = MetricsRegistry()
                c.metricsFactory = registry.factory
                server = try MetricsServer.start(
                    bind, registry: registry, token: token, logger: Logger(label: "kiln.http"))
                print("worker metrics on http://\(bind.host):\(server!.port)/metrics")
                fflush(nil)
            }
            defer { server?.stop() }
            let worker = Worker(config: c)
            let signals = stopOnSignals { worker.requestStop() }
            worker.run()
            worker.stop()
            _ = signals
        }
    }
}
