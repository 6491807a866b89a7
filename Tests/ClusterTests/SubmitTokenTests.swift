import Cluster
import Coordinator
import Foundation
import Jobs
import KilnProtocol
import TestSupport
import XCTest

/// Submits are validated off the coordinator's loop and admitted back on it: two submits
/// with one client token, validating at the same time, still make one job.
final class SubmitTokenTests: XCTestCase {
    func testConcurrentSubmitsWithOneTokenMakeOneJob() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-token")
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data"))
        coordinator.start()
        defer { coordinator.stop() }
        let client = try TestClient(coordinator.endpoints.listen)
        let spec = try SpecConversion.toProto(
            ClusterAssets.spec(model: model, out: dir.appendingPathComponent("o.gguf")))

        // Both requests are sent before either is answered.
        var cids: [String] = []
        for token in ["retry", "retry", "other"] {
            var r = Kiln_V1_SubmitRequest()
            r.spec = spec
            r.clientToken = token
            var m = Message(.submitRequest(r), correlationID: UUID().uuidString)
            if let t = client.token { m.envelope.authToken = t }
            try client.socket.send(m)
            cids.append(m.correlationID)
        }
        var ids: [String: String] = [:]
        let deadline = Date().addingTimeInterval(30)
        while ids.count < cids.count && Date() < deadline {
            guard let (_, m) = try client.socket.receiveMessage(timeout: 200) else { continue }
            guard case .submitResponse(let resp)? = m.body else { return XCTFail("submit: \(m.body as Any)") }
            ids[m.correlationID] = resp.jobID
        }
        XCTAssertEqual(ids.count, 3, "replies")
        XCTAssertEqual(ids[cids[0]], ids[cids[1]], "one token, one job")
        XCTAssertNotEqual(ids[cids[0]], ids[cids[2]])
    }
}
