import Coordinator
import Foundation
import Jobs
import KilnProtocol
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// Chunked payloads between the coordinator and workers, and the model fetched in
/// ranges by a worker that cannot read it.
final class ClusterTransferTests: XCTestCase {
    /// A frame limit far below the payloads (statistics of one shard are megabytes):
    /// every large task input and result crosses in chunks, and the file is the same.
    func testPayloadsAboveTheFrameLimitTravelInChunks() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("chunked.gguf"), method: .gptq, mode: .sequential,
            samples: 4, shardSize: 2)
        let reference = try ClusterAssets.localReference(spec)
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data")) { c in
            c.limits.maxFrameBytes = 1 << 20
            c.chunkBytes = 256 << 10
            c.chunkWindow = 3
        }
        coordinator.start()
        defer { coordinator.stop() }
        var wc = WorkerConfig(coordinator: coordinator.endpoints.listen, threads: 1, id: "w1")
        wc.token = coordinator.token
        wc.limits.maxFrameBytes = 1 << 20
        let worker = Worker(config: wc, logger: quietLogger("test.worker"))
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }
        let client = try TestClient(coordinator.endpoints.listen)
        let status = try client.wait(try client.submit(spec))
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), reference)
        let t = coordinator.traffic
        XCTAssertGreaterThan(t.chunksReceived, 8, "results came in chunks: \(t)")
        XCTAssertGreaterThan(t.chunksSent, 0, "inputs went out in chunks: \(t)")
        XCTAssertEqual(t.transfersFailed, 0)
    }

    /// A worker whose result chunks are corrupted, truncated or of another tensor: each
    /// transfer is rejected with an error naming the problem, the task is retried, and
    /// the job completes byte-identical on a healthy worker.
    func testDamagedChunksAreRejectedAndTheTaskRetried() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("damaged.gguf"))
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data"))
        coordinator.start()
        defer { coordinator.stop() }

        let evil = try protocolWorker(coordinator, id: "evil")
        defer { evil.close() }

        let client = try TestClient(coordinator.endpoints.listen)
        let job = try client.submit(spec)

        let chunk = 64 << 10
        var out = OutgoingTransfers(chunkSize: chunk, window: 8)
        let damages: [(String, (inout [Data]) -> Void)] = [
            (
                "corrupted",
                { f in
                    var d = Data(f[1])
                    d[10] ^= 0x01
                    f[1] = d
                }
            ),
            ("truncated", { f in f[1] = f[1].prefix(100) }),
            (
                "another tensor",
                { f in
                    var env = try! Kiln_V1_Envelope(serializedBytes: f[0])
                    env.tensors[0].shape = [UInt64(4 * chunk)]
                    env.tensors[0].byteLength = UInt64(4 * chunk)
                    env.tensors[0].chunkCount = 4
                    f[0] = try! env.serializedData()
                }
            ),
        ]
        var nacks: [Kiln_V1_TaskResultAck] = []
        var tasks: [String] = []
        let deadline = Date().addingTimeInterval(60)
        // One damaged result per assignment, in the order of `damages` (a worker holds a
        // task per lane plus one queued, so assignments come two at a time).
        var sent = 0
        while nacks.count < damages.count, Date() < deadline {
            try evil.send(Message(.heartbeat(Kiln_V1_Heartbeat())))
            guard let (_, m) = try evil.receiveMessage(timeout: 200) else { continue }
            switch m.body {
            case .taskAssignment(let a)?:
                tasks.append(a.taskID)
                guard sent < damages.count else { continue }
                // A "result" of 3 chunks; chunk 1 damaged.
                let payload = try TensorFrame(
                    name: "result", dtype: .u8, shape: [3 * chunk], bytes: Data(count: 3 * chunk))
                let (h, chunks) = try out.start(payload, context: a.taskID)
                var r = Kiln_V1_TaskResult()
                r.taskID = a.taskID
                r.attempt = a.attempt
                r.jobID = a.jobID
                r.status = .ok
                r.outputs = [h]
                try evil.send(Message(.taskResult(r)))
                for (i, c) in chunks.enumerated() {
                    var frames = try c.encode()
                    if i == 1 { damages[sent].1(&frames) }
                    try evil.send(frames)
                }
                sent += 1
            case .taskResultAck(let ack)?:
                nacks.append(ack)
            default:
                break
            }
        }
        XCTAssertEqual(nacks.count, 3, "every damaged transfer refused")
        XCTAssertTrue(nacks.allSatisfy { !$0.accepted })
        XCTAssertEqual(
            nacks.map(\.error.field), ["tensors[0].chunk_checksum", "frames[1]", "tensors[0]"],
            "\(nacks.map(\.error.message))")
        XCTAssertGreaterThan(tasks.count, Set(tasks).count, "a refused task was assigned again: \(tasks)")
        var bye = Kiln_V1_WorkerGoodbye()
        bye.workerID = "evil"
        bye.reason = "done"
        try evil.send(Message(.workerGoodbye(bye)))

        let worker = makeWorker(coordinator.endpoints.listen, id: "good")
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }
        let final = try client.wait(job)
        XCTAssertEqual(final.state, .succeeded, final.error.message)
        XCTAssertEqual(coordinator.traffic.transfersFailed, 3)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), try ClusterAssets.localReference(spec))
    }

    /// A worker that answers a reconstruct with DEFERRED (which only a collect can be) has
    /// freed its slot: the attempt ends and the task is assigned again, rather than staying
    /// "running" on a worker that no longer holds it while that worker stays connected.
    func testADeferredReconstructIsAssignedAgain() throws {
        let model = try ClusterAssets.smolLM2(blocks: 1)
        let dir = Paths.tempDir("kiln-cluster")
        // RTN without the error report: the graph is reconstructs only, so they come first.
        var spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("deferred.gguf"))
        spec.errorReport = false
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data"))
        coordinator.start()
        defer { coordinator.stop() }
        let fake = try protocolWorker(coordinator, id: "deferring")
        defer { fake.close() }
        let client = try TestClient(coordinator.endpoints.listen)
        _ = try client.submit(spec)

        var assigned: [String: [UInt32]] = [:]  // task -> attempts seen
        var deferred: String?
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            try fake.send(Message(.heartbeat(Kiln_V1_Heartbeat())))
            guard let (_, m) = try fake.receiveMessage(timeout: 200), case .taskAssignment(let a)? = m.body else {
                continue
            }
            assigned[a.taskID, default: []].append(a.attempt)
            if let d = deferred, d == a.taskID { break }  // the deferred task came back
            guard deferred == nil, a.kind == .reconstruct else { continue }
            var r = Kiln_V1_TaskResult()
            r.taskID = a.taskID
            r.attempt = a.attempt
            r.jobID = a.jobID
            r.status = .deferred
            try fake.send(Message(.taskResult(r)))
            deferred = a.taskID
        }
        let task = try XCTUnwrap(deferred, "a reconstruct was assigned: \(assigned)")
        XCTAssertEqual(assigned[task], [1, 2], "assigned again after the deferral, as attempt 2")
    }

    /// A worker that does not see the job's model file fetches it from the coordinator
    /// in ranges (frame-sized, CRC-checked) into its cache directory, checks the size,
    /// and uses the copy: the output is byte-identical.
    func testWorkerWithoutTheModelFetchesItFromTheCoordinator() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-cluster")
        // The job's model lives in a directory of the coordinator's; the worker runs with
        // --fetch-model, as on a host that does not mount it.
        let hidden = dir.appendingPathComponent("coordinator-only")
        try FileManager.default.createDirectory(at: hidden, withIntermediateDirectories: true)
        let copy = hidden.appendingPathComponent("model.gguf")
        try FileManager.default.copyItem(at: model, to: copy)
        let spec = ClusterAssets.spec(
            model: copy, out: dir.appendingPathComponent("fetched.gguf"), method: .gptq, mode: .sequential)
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data")) { c in
            c.limits.maxFrameBytes = 4 << 20
        }
        coordinator.start()
        defer { coordinator.stop() }
        let cache = dir.appendingPathComponent("worker-cache")
        var wc = WorkerConfig(coordinator: coordinator.endpoints.listen, threads: 1, id: "remote")
        wc.token = coordinator.token
        wc.fetchModel = true
        wc.cacheDirectory = cache
        wc.limits.maxFrameBytes = 4 << 20
        let worker = Worker(config: wc, logger: quietLogger("test.worker"))
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }
        let client = try TestClient(coordinator.endpoints.listen)
        let status = try client.wait(try client.submit(spec))
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        XCTAssertEqual(worker.modelFetches, 1)
        let cached = try FileManager.default.contentsOfDirectory(atPath: cache.path).filter {
            $0.hasSuffix("model.gguf")
        }
        XCTAssertEqual(cached.count, 1, "\(cached)")
        XCTAssertEqual(try Data(contentsOf: cache.appendingPathComponent(cached[0])), try Data(contentsOf: copy))
        let size = try Data(contentsOf: copy).count
        XCTAssertGreaterThanOrEqual(coordinator.traffic.sent["range"] ?? 0, size, "the model went out in ranges")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), try ClusterAssets.localReference(spec))
    }
}

/// A worker played by the test at the protocol level: a DEALER connected to the
/// coordinator that has said hello (one lane); the test answers its assignments by hand.
func protocolWorker(_ coordinator: Coordinator, id: String) throws -> ZMQSocket {
    let socket = try ZMQContext.shared.socket(.dealer)
    try socket.set([.linger(0)])
    try socket.connect(coordinator.endpoints.listen)
    var hello = Kiln_V1_WorkerHello()
    hello.workerID = id
    hello.protocolVersion = KilnWire.version
    hello.capacity.threads = 1
    var message = Message(.workerHello(hello))
    message.envelope.authToken = coordinator.token ?? ""
    try socket.send(message)
    return socket
}
