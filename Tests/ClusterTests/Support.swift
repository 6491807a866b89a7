import Cluster
import Coordinator
import Foundation
import Jobs
import KilnProtocol
import Logging
import ModelIO
import Tensor
import TestSupport
import Worker
import XCTest
import ZeroMQ

enum ClusterAssets {
    /// `kiln coordinator` confines jobs to allowed roots: the tests' files live under
    /// the temporary directory, the asset cache and the repository's fixtures.
    static var allowPathArgs: [String] {
        [FileManager.default.temporaryDirectory.path, Paths.assets.path, Paths.repoRoot.path].flatMap {
            ["--allow-path", $0]
        }
    }

    static let calib = Paths.fixture("text/fortunes_calib.txt")
    static let eval = Paths.fixture("text/fortunes_eval.txt")

    private static let lock = NSLock()
    nonisolated(unsafe) private static var models: [Int: URL] = [:]

    /// SmolLM2 with only its first `blocks` blocks: a real model whose jobs take seconds.
    static func smolLM2(blocks: Int = 3) throws -> URL {
        let src = Paths.smollm2
        guard FileManager.default.fileExists(atPath: src.path) else {
            throw XCTSkip("SmolLM2 asset missing at \(src.path); run Ops/fetch-assets.sh")
        }
        return try lock.withLock {
            if let u = models[blocks] { return u }
            let file = try GGUFFile(src)
            let out = Paths.tempDir("kiln-cluster-model").appendingPathComponent("smollm2-\(blocks)b.gguf")
            let w = try GGUFWriter(url: out)
            for k in file.metadataKeys where k != "general.alignment" {
                try w.addMetadata(k, k == "llama.block_count" ? .uint32(UInt32(blocks)) : file.metadata[k]!)
            }
            let kept = file.tensors.filter { t in
                !t.name.hasPrefix("blk.") || Int(t.name.split(separator: ".")[1])! < blocks
            }
            for t in kept { try w.declareTensor(t.name, type: t.dtype, shape: t.shape) }
            for t in kept { try w.writeTensor(t.name, bytes: file.rawBytes(t.name)) }
            try w.finish()
            models[blocks] = out
            return out
        }
    }

    static func spec(
        model: URL, out: URL, method: QuantMethod = .rtn, mode: JobMode = .parallel,
        samples: Int = 4, seqlen: Int = 64, shardSize: Int = 2
    ) -> JobSpec {
        var s = JobSpec(model: model.path, calibration: calib.path, output: out.path)
        s.samples = samples
        s.seqlen = seqlen
        s.shardSize = shardSize
        s.method = method
        s.mode = mode
        return s
    }

    /// `--target-bpw 4.75` on the 2-block SmolLM2: RTN with the scale search into Q4_0, as the
    /// target-bpw tests run it (one BLAS thread, as the workers).
    static func targetBPWSpec(out: URL) throws -> JobSpec {
        var s = spec(model: try smolLM2(blocks: 2), out: out, method: .rtn, mode: .sequential, samples: 4)
        s.format = .ggufQ4_0
        s.scaleSearch = true
        s.targetBPW = 4.75
        BLAS.threads = 1
        return s
    }

    /// The local executor's output for `spec` (written next to spec.output with a .local suffix).
    static func localReference(_ spec: JobSpec) throws -> Data {
        // Workers run one BLAS thread; the reference must too (OpenBLAS results depend on it).
        BLAS.threads = 1
        var s = spec
        s.output = spec.output + ".local.gguf"
        _ = try Job.run(s)
        return try Data(contentsOf: URL(fileURLWithPath: s.output))
    }
}

func quietLogger(_ label: String) -> Logger {
    var l = Logger(label: label, factory: { StreamLogHandler.standardError(label: $0) })
    l.logLevel = ProcessInfo.processInfo.environment["KILN_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .error
    return l
}

/// A coordinator on tcp loopback (free ports) with fast heartbeats.
func makeCoordinator(
    dataDir: URL, context: ZMQContext = .shared, listen: String = "tcp://127.0.0.1:*",
    publish: String = "tcp://127.0.0.1:*", configure: (inout CoordinatorConfig) -> Void = { _ in }
) throws -> Coordinator {
    var c = CoordinatorConfig(listen: listen, publish: publish, dataDir: dataDir)
    c.heartbeatIntervalMs = 500
    c.heartbeatLiveness = 6
    configure(&c)
    let coordinator = try Coordinator(config: c, context: context, logger: quietLogger("test.coordinator"))
    TestTokens.register(coordinator.endpoints.listen, coordinator.token)
    return coordinator
}

/// The token of each coordinator a test started (by endpoint), so the helpers below pass
/// it the way `kiln` clients and workers pass --token-file.
enum TestTokens {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var tokens: [String: String] = [:]

    static func register(_ endpoint: String, _ token: String?) { lock.withLock { tokens[endpoint] = token } }
    static func token(for endpoint: String) -> String? { lock.withLock { tokens[endpoint] } }

    /// The token a `kiln coordinator` process made in its data directory (waits for it to appear).
    static func read(dataDir: URL, endpoint: String) throws -> String {
        let file = dataDir.appendingPathComponent("token")
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let text = try? String(contentsOf: file, encoding: .utf8), let t = LocalToken.parse(text) {
                register(endpoint, t)
                return t
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("no token at \(file.path)")
        return ""
    }
}

func makeWorker(_ endpoint: String, id: String, threads: Int = 1, context: ZMQContext = .shared) -> Worker {
    var c = WorkerConfig(coordinator: endpoint, threads: threads, id: id)
    c.token = TestTokens.token(for: endpoint)
    c.reconnectInitialMs = 100
    c.reconnectMaxMs = 1000
    return Worker(config: c, context: context, logger: quietLogger("test.worker"))
}

/// One job on a fresh coordinator (data in `dataDir`) and workers with the given lanes,
/// started and stopped around it: the final status, the job id, the workers (for their
/// counters) and the coordinator's traffic.
func runJob(
    _ spec: JobSpec, dataDir: URL, lanes: [Int] = [1, 1], configure: (inout CoordinatorConfig) -> Void = { _ in }
) throws -> (status: Kiln_V1_JobStatus, job: String, workers: [Worker], traffic: TrafficCounters) {
    let coordinator = try makeCoordinator(dataDir: dataDir, configure: configure)
    coordinator.start()
    defer { coordinator.stop() }
    let workers = lanes.enumerated().map { makeWorker(coordinator.endpoints.listen, id: "w\($0 + 1)", threads: $1) }
    for w in workers { w.start() }
    defer {
        for w in workers { w.requestStop() }
        for w in workers { w.stop() }
    }
    let client = try TestClient(coordinator.endpoints.listen)
    let job = try client.submit(spec)
    return (try client.wait(job), job, workers, coordinator.traffic)
}

/// A DEALER client speaking the client protocol to the coordinator.
final class TestClient {
    let socket: ZMQSocket
    let token: String?
    init(
        _ endpoint: String, context: ZMQContext = .shared, curve: (server: String, keys: ZMQCurveKeyPair)? = nil
    ) throws {
        token = curve == nil ? TestTokens.token(for: endpoint) : nil
        socket = try context.socket(.dealer)
        try socket.set([.linger(0)])
        if let curve {
            try socket.set([
                .curveServerKey(curve.server), .curvePublicKey(curve.keys.publicKey),
                .curveSecretKey(curve.keys.secretKey),
            ])
        }
        try socket.connect(endpoint)
    }
    deinit { socket.close() }

    func request(_ body: Kiln_V1_Envelope.OneOf_Body, timeoutMs: Int32 = 10_000) throws -> Message {
        let cid = UUID().uuidString
        var message = Message(body, correlationID: cid)
        if let token { message.envelope.authToken = token }
        try socket.send(message)
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while Date() < deadline {
            guard let (_, m) = try socket.receiveMessage(timeout: 200) else { continue }
            if m.correlationID == cid { return m }
        }
        throw ClusterTestError("no reply from the coordinator within \(timeoutMs) ms")
    }

    func submit(_ spec: JobSpec) throws -> String {
        var r = Kiln_V1_SubmitRequest()
        r.spec = try SpecConversion.toProto(spec)
        let m = try request(.submitRequest(r))
        guard case .submitResponse(let resp)? = m.body else {
            XCTFail("submit: \(m.body as Any)")
            return ""
        }
        return resp.jobID
    }

    func status(_ job: String) throws -> Kiln_V1_JobStatus {
        var r = Kiln_V1_StatusRequest()
        r.jobID = job
        let m = try request(.statusRequest(r))
        guard case .statusResponse(let resp)? = m.body else {
            XCTFail("status: \(m.body as Any)")
            return .init()
        }
        return resp.status
    }

    /// Polls until the job ends; returns its final status.
    func wait(
        _ job: String, timeout: Double = 240, every: (Kiln_V1_JobStatus) -> Void = { _ in }
    ) throws -> Kiln_V1_JobStatus {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let s = try status(job)
            every(s)
            if [.succeeded, .failed, .cancelled].contains(s.state) { return s }
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTFail("job \(job) did not finish in \(timeout) s")
        return try status(job)
    }
}

/// Waits until `cond` holds (polling), failing after `timeout` seconds.
func waitUntil(_ what: String, timeout: Double = 120, _ cond: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try cond() { return }
        Thread.sleep(forTimeInterval: 0.05)
    }
    XCTFail("timed out waiting for \(what)")
}

extension Kiln_V1_JobStatus {
    var tasksDone: Int { modules.reduce(0) { $0 + Int($1.done) } }
}

struct ClusterTestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
