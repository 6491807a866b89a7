import CoreMetrics
import Foundation
import Jobs
import KilnProtocol

/// How a coordinator listens, stores and watches its workers.
public struct CoordinatorConfig: Sendable {
    /// The ROUTER endpoint serving workers and clients, e.g. tcp://127.0.0.1:5555
    /// (a port of * picks a free one; see `Coordinator.endpoints`).
    public var listen: String
    /// The PUB endpoint for ProgressUpdate; nil: the listen port + 1.
    public var publish: String?
    public var dataDir: URL
    /// Allow binding non-loopback addresses without CURVE.
    public var insecure = false
    /// CURVE: the coordinator's secret key (Z85) and the public keys allowed in.
    public var curveSecretKey: String?
    /// Where the secret key came from, for error messages ("--curve-secret FILE").
    public var curveSecretSource = "the coordinator's CURVE secret key"
    public var allowedKeys: Set<String> = []
    public var heartbeatIntervalMs: UInt32 = 1000
    /// Missed intervals before a worker is declared lost.
    public var heartbeatLiveness: UInt32 = 3
    /// libzmq drops (and disconnects) any inbound message larger than this.
    public var maxMessageBytes: Int64 = 1 << 30
    public var limits: FramingLimits = .default
    /// Attempts of one task before the job fails.
    public var maxAttempts = 5
    /// Payloads (task inputs and results) above this size travel as chunked transfers
    /// of this chunk size (capped by `limits.maxFrameBytes`), `chunkWindow` chunks in flight.
    public var chunkBytes = 1 << 20
    public var chunkWindow = 8
    /// Largest task result accepted in chunks (checked before anything is allocated).
    public var maxTransferBytes: UInt64 = 4 << 30
    /// Keep a job's result files after it ends (debugging); by default they are removed
    /// once the output is written or the job fails or is cancelled.
    public var keepResults = false
    /// What a submitted job may ask for: memory, paths (absolute, under allowed roots).
    /// The library default allows any absolute or relative path (the embedded `kiln run`);
    /// `kiln coordinator` confines jobs to its data directory, its start directory and --allow-path.
    public var jobLimits = JobLimits()
    /// Free bytes on the file system of a directory (statvfs), judged at submit; tests replace it.
    public var freeBytes: @Sendable (URL) -> UInt64? = { DiskBudget.freeBytes($0) }
    /// Repeated log lines a peer can provoke (malformed messages, denied keys) are logged a
    /// few times, then summarised once per this interval.
    public var repeatLogIntervalMs: Int64 = 10_000
    /// Where the coordinator's metrics go (`kiln coordinator --http`: a Prometheus registry);
    /// nil: nowhere.
    public var metricsFactory: (any MetricsFactory)?

    var effectiveChunkBytes: Int { max(1, min(chunkBytes, limits.maxFrameBytes)) }

    public init(listen: String, publish: String? = nil, dataDir: URL) {
        self.listen = listen
        self.publish = publish
        self.dataDir = dataDir
    }

    var livenessMs: Int64 { Int64(heartbeatIntervalMs) * Int64(heartbeatLiveness) }
}

public struct CoordinatorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

enum EndpointPolicy {
    /// The host part of tcp://HOST:PORT; nil for other transports.
    static func tcpHost(_ endpoint: String) -> String? {
        guard endpoint.hasPrefix("tcp://") else { return nil }
        let rest = endpoint.dropFirst("tcp://".count)
        if rest.hasPrefix("[") { return rest.split(separator: "]").first.map { String($0.dropFirst()) } }
        guard let colon = rest.lastIndex(of: ":") else { return String(rest) }
        return String(rest[..<colon])
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.") || host == "lo"
    }

    /// Secure by default: without CURVE only loopback (and in-process) endpoints may be bound.
    static func check(_ endpoint: String, secured: Bool, insecure: Bool, flag: String) throws {
        guard let host = tcpHost(endpoint) else {
            guard endpoint.hasPrefix("inproc://") || endpoint.hasPrefix("ipc://") else {
                throw CoordinatorError("\(flag) \(endpoint): use tcp://HOST:PORT, ipc:// or inproc://")
            }
            return
        }
        if secured || insecure || isLoopback(host) { return }
        throw CoordinatorError(
            "\(flag) \(endpoint): refusing to bind \(host) without CURVE keys, because anyone who can reach it could submit jobs and read model data; bind 127.0.0.1, configure --curve-secret and --allow-keys, or pass --insecure on a trusted network"
        )
    }

    /// The endpoint to hand zmq_bind. tcp://localhost:P becomes tcp://127.0.0.1:P: zmq_bind
    /// takes addresses and interface names, not host names ("localhost" fails with ENODEV).
    /// A port must be 1...65535 or * (libzmq picks a free one); port 0 is refused, since
    /// libzmq would take it literally and the publish port derived from it would be 1.
    static func bindable(_ endpoint: String, flag: String) throws -> String {
        guard endpoint.hasPrefix("tcp://") else { return endpoint }
        let rest = endpoint.dropFirst("tcp://".count)
        guard let colon = rest.lastIndex(of: ":"), colon != rest.startIndex, !rest.hasSuffix("]") else {
            throw CoordinatorError(
                "\(flag) \(endpoint): missing :PORT; write tcp://HOST:PORT (PORT a number, or * for a free one)")
        }
        var host = String(rest[..<colon])
        let port = rest[rest.index(after: colon)...]
        if port != "*" {
            guard let p = Int(port), (1...65535).contains(p) else {
                throw CoordinatorError(
                    "\(flag) \(endpoint): port \(port) cannot be bound; use a port number "
                        + "in 1...65535, or * to pick a free one")
            }
        }
        if host == "localhost" { host = "127.0.0.1" }
        return "tcp://\(host):\(port)"
    }

    /// The default publish endpoint: same host, port + 1 (which must exist).
    static func defaultPublish(for listen: String) throws -> String {
        guard listen.hasPrefix("tcp://"), let colon = listen.lastIndex(of: ":"),
            let port = Int(listen[listen.index(after: colon)...])
        else {
            if listen.hasPrefix("tcp://"), listen.hasSuffix(":*") { return listen }
            if listen.hasPrefix("inproc://") || listen.hasPrefix("ipc://") { return listen + "-pub" }
            throw CoordinatorError(
                "--listen \(listen): cannot derive --publish (expected tcp://HOST:PORT); give --publish")
        }
        guard port < 65535 else {
            throw CoordinatorError(
                "--listen \(listen): port \(port) leaves no port + 1 for progress; pick a lower port or give --publish")
        }
        return String(listen[..<colon]) + ":\(port + 1)"
    }
}
