import ArgumentParser
import Coordinator
import Foundation
import Jobs
import Logging
import Synchronization
import Web
import ZeroMQ

struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run a coordinator: job store, scheduler, merger and writer for ZeroMQ workers.",
        discussion: """
            One ROUTER socket at --listen serves workers and clients; progress is published at
            --publish (default: the listen port + 1). Without CURVE keys only loopback addresses
            are bound unless --insecure is given. --http serves the web dashboard and /metrics
            (Prometheus); beyond loopback it also needs --http-token-file.
            Example: kiln coordinator --listen tcp://127.0.0.1:5555 --data-dir /var/lib/kiln --http 127.0.0.1:8080
            """)

    @Option(help: "ROUTER endpoint for workers and clients.")
    var listen = "tcp://127.0.0.1:5555"
    @Option(help: "PUB endpoint for progress (default: listen port + 1).")
    var publish: String?
    @Option(help: "Directory of the job store (kiln.sqlite) and durable results.")
    var dataDir: String
    @Flag(help: "Allow binding non-loopback addresses without CURVE (trusted networks only).")
    var insecure = false
    @Option(help: "File holding the coordinator's CURVE secret key (Z85, 40 characters).")
    var curveSecret: String?
    @Option(help: "File of allowed client/worker CURVE public keys, one per line.")
    var allowKeys: String?
    @Option(help: "Heartbeat interval in milliseconds.")
    var heartbeatMs: UInt32 = 1000
    @Option(help: "Missed heartbeats before a worker is declared lost.")
    var liveness: UInt32 = 3
    @Option(help: "Largest inbound message in bytes (larger ones are dropped by ZeroMQ).")
    var maxMessageBytes: Int64 = 1 << 30
    @Flag(help: "Keep each job's result files after it ends, for debugging (`kiln gc` removes them later).")
    var keepResults = false
    @Option(
        help: ArgumentHelp(
            "A directory whose files jobs may read and write (repeatable). Jobs are confined to "
                + "these, --data-dir and the directory the coordinator starts in.", valueName: "dir"))
    var allowPath: [String] = []
    @Option(
        help: ArgumentHelp(
            "Refuse a job whose estimated memory per process exceeds SIZE (e.g. 16G; default 80% of RAM).",
            valueName: "size"))
    var maxJobMemory: String?
    @Option(
        help: ArgumentHelp(
            "Serve the web dashboard and /metrics at HOST:PORT (a bare PORT: 127.0.0.1:PORT).", valueName: "host:port"))
    var http: String?
    @Option(
        help: ArgumentHelp(
            "File holding the bearer token every --http request must carry (required beyond loopback).",
            valueName: "file"))
    var httpTokenFile: String?
    @Option(help: "trace | debug | info | notice | warning | error")
    var logLevel = "info"

    /// Jobs are confined to the allowed roots and must send absolute paths.
    func jobLimits() throws -> JobLimits {
        var l = JobLimits(maxJobMemory: try maxJobMemoryBytes(maxJobMemory))
        l.requireAbsolutePaths = true
        var roots = [dataDir, FileManager.default.currentDirectoryPath]
        for p in allowPath {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue else {
                throw UserError("--allow-path \(p) is not an existing directory")
            }
            roots.append(p)
        }
        l.allowedRoots = roots.map { PathResolution.resolve($0) }
        return l
    }

    func run() throws {
        #if os(Linux)
        // The coordinator's large buffers (payloads, decoded statistics) are short-lived:
        // served by mmap they go back to the system when freed, instead of staying in
        // glibc's heap (whose mmap threshold otherwise grows to 32 MiB). Demo job: the
        // peak RSS ~50 MiB lower. Workers keep the default (they reuse big matrices).
        _ = kiln_mallopt(-3 /* M_MMAP_THRESHOLD */, 1 << 20)
        #endif
        try runReportingErrors {
            bootstrapLogging(logLevel)
            var c = CoordinatorConfig(listen: listen, publish: publish, dataDir: URL(fileURLWithPath: dataDir))
            c.insecure = insecure
            c.heartbeatIntervalMs = heartbeatMs
            c.heartbeatLiveness = liveness
            c.maxMessageBytes = maxMessageBytes
            c.keepResults = keepResults
            c.jobLimits = try jobLimits()
            if let f = curveSecret {
                c.curveSecretKey = try readSecretKey(f, what: "--curve-secret").secretKey
                c.curveSecretSource = "--curve-secret \(f)"
                guard let f2 = allowKeys else {
                    throw UserError("--curve-secret needs --allow-keys (the public keys let in)")
                }
                c.allowedKeys = Set(try readKeyFile(f2, what: "--allow-keys", kind: .publicKey))
            } else if allowKeys != nil {
                throw UserError("--allow-keys needs --curve-secret")
            }
            // The dashboard is bound before the coordinator starts, so a taken port fails fast;
            // it follows the coordinator as a client (with its own CURVE key, let in here).
            let web = try http.map {
                try WebPort(bind: $0, tokenFile: httpTokenFile, secured: c.curveSecretKey != nil, insecure: insecure)
            }
            web?.configure(&c)
            let coordinator: Coordinator
            do { coordinator = try Coordinator(config: c) } catch {
                web?.stop()
                throw error
            }
            print(
                "coordinator listening on \(coordinator.endpoints.listen), progress on \(coordinator.endpoints.publish)"
            )
            if let web {
                web.follow(coordinator)
                print("dashboard on \(web.url) (Prometheus metrics at \(web.url)metrics)")
            }
            if coordinator.token != nil {
                let file = c.dataDir.appendingPathComponent(LocalToken.fileName).path
                print("clients and workers need its token: --token-file \(file) (or KILN_TOKEN_FILE=\(file))")
            }
            fflush(nil)  // every stdio stream (the global `stdout` is not concurrency-safe to name)
            let signals = stopOnSignals { coordinator.requestStop() }
            coordinator.run()
            web?.stop()
            coordinator.stop()
            _ = signals
        }
    }
}

func bootstrapLogging(_ level: String) {
    let lvl = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = lvl
        return h
    }
}

/// Set by the SIGINT / SIGTERM handler, read by the thread that turns it into `stop`. An
/// atomic: a plain global written in a handler and read on another thread is a data race
/// (nothing makes the write visible). Lock-free atomic stores are async-signal-safe.
private let stopSignalled = Atomic<Bool>(false)

/// SIGINT / SIGTERM call `stop` once (the default action would skip the goodbye and
/// cleanup). The handler only sets a flag; a small thread turns it into the call.
func stopOnSignals(_ stop: @escaping @Sendable () -> Void) -> Thread {
    for sig in [SIGINT, SIGTERM] { signal(sig, { _ in stopSignalled.store(true, ordering: .releasing) }) }
    let t = Thread {
        while !stopSignalled.load(ordering: .acquiring) { usleep(50_000) }
        stop()
    }
    t.name = "kiln.signals"
    t.start()
    return t
}

#if os(Linux)
/// glibc's mallopt, looked up at run time (malloc.h is not part of the Glibc module).
@discardableResult
private func kiln_mallopt(_ param: Int32, _ value: Int32) -> Int32 {
    guard let f = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return 0 }
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    return unsafeBitCast(f, to: Mallopt.self)(param, value)
}
#endif
