import Coordinator
import Foundation
import Jobs
import KilnProtocol
import SwiftProtobuf
import TestSupport
import Worker
import XCTest
import ZeroMQ

final class RobustnessTests: XCTestCase {
    /// Garbage, a truncated envelope, a wrong protocol version, a frame over the size
    /// limits: each is logged and dropped; the coordinator keeps serving and the job finishes.
    func testBadMessagesAreDroppedAndTheJobGoesOn() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("bad.gguf"))
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data")) { c in
            c.maxMessageBytes = 48 << 20
            c.limits.maxFrameBytes = 32 << 20
        }
        coordinator.start()
        defer { coordinator.stop() }
        let worker = makeWorker(coordinator.endpoints.listen, id: "w1")
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }
        let client = try TestClient(coordinator.endpoints.listen)
        let job = try client.submit(spec)

        let evil = try ZMQContext.shared.socket(.dealer)
        defer { evil.close() }
        try evil.set([.linger(0)])
        try evil.connect(coordinator.endpoints.listen)
        var hb = Kiln_V1_Heartbeat()
        hb.sequence = 7
        let good = try Message(.heartbeat(hb)).encode()[0]
        // 1. not protobuf at all
        try evil.send(Data([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01]))
        // 2. a valid envelope cut short
        var status = Kiln_V1_StatusRequest()
        status.jobID = job
        let whole = try Message(.statusRequest(status), correlationID: "truncated").encode()[0]
        try evil.send(whole.prefix(whole.count - 5))
        // 3. wrong protocol version
        var env = Kiln_V1_Envelope()
        env.protocolVersion = Kiln_V1_ProtocolVersion(rawValue: 99)!
        env.correlationID = "v99"
        env.body = .statusRequest(status)
        try evil.send(try env.serializedData())
        // 4. a frame over the framing limit (32 MiB) but under ZMQ's (48 MiB), with a lying header
        var h = Kiln_V1_TensorHeader()
        h.name = "big"
        h.dtype = .u8
        h.shape = [16]
        h.byteLength = 16
        h.checksumKind = .crc32C
        var env2 = Kiln_V1_Envelope()
        env2.protocolVersion = KilnWire.version
        env2.body = .heartbeat(hb)
        env2.tensors = [h]
        try evil.send([try env2.serializedData(), Data(count: 40 << 20)])
        // 5. an envelope without frames for its header
        try evil.send(try env2.serializedData())

        // Each is answered with an error naming the field (read before step 6 drops the connection).
        var fields: [String] = []
        while let (_, m) = try evil.receiveMessage(timeout: 3000) {
            if case .error(let e)? = m.body { fields.append(e.field) }
            if fields.count == 5 { break }
        }
        XCTAssertTrue(fields.contains("protocol_version"), "\(fields)")
        XCTAssertTrue(fields.contains("frames[0]"), "\(fields)")
        XCTAssertTrue(fields.contains("frames[1]"), "\(fields)")
        // 6. a message over ZMQ's maxmsgsize: libzmq drops it with the peer's connection
        try evil.send([good, Data(count: 64 << 20)])

        let final = try client.wait(job)
        XCTAssertEqual(final.state, .succeeded, final.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), try ClusterAssets.localReference(spec))
    }

    /// A coordinator stopped mid-job and started again on the same data directory
    /// resumes the job: finished tasks are not rerun, the output is byte-identical.
    func testCoordinatorRestartResumesTheJob() throws {
        let model = try ClusterAssets.smolLM2(blocks: 3)
        let dir = Paths.tempDir("kiln-cluster")
        let spec = ClusterAssets.spec(
            model: model, out: dir.appendingPathComponent("restart.gguf"), method: .gptq, mode: .sequential)
        let data = dir.appendingPathComponent("data")
        let port = LoopbackPorts.free()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let publish = "tcp://127.0.0.1:\(LoopbackPorts.free())"

        var first: Coordinator? = try makeCoordinator(dataDir: data, listen: endpoint, publish: publish)
        // After the coordinator: the worker carries its token (the restarted one reuses it).
        let worker = makeWorker(endpoint, id: "w1")
        first!.start()
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }
        let job: String
        var doneBefore = 0
        do {
            let client = try TestClient(endpoint)
            job = try client.submit(spec)
            try waitUntil("a third of the tasks") {
                doneBefore = try client.status(job).tasksDone
                return doneBefore >= 10
            }
        }
        first!.stop()
        first = nil

        // libzmq releases the first listener asynchronously: retry the bind briefly.
        var made: Coordinator?
        for _ in 0..<50 where made == nil {
            made = try? makeCoordinator(dataDir: data, listen: endpoint, publish: publish)
            if made == nil { Thread.sleep(forTimeInterval: 0.1) }
        }
        let second = try XCTUnwrap(made, "could not bind \(endpoint) again")
        XCTAssertGreaterThanOrEqual(
            second.resumedTaskCount, doneBefore - 2, "completed tasks were not resumed from the store")
        second.start()
        defer { second.stop() }
        let client = try TestClient(endpoint)
        let status = try client.wait(job)
        XCTAssertEqual(status.state, .succeeded, status.error.message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: spec.output)), try ClusterAssets.localReference(spec))
    }
}
