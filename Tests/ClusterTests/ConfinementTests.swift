import Cluster
import Coordinator
import Foundation
import Jobs
import KilnProtocol
import TestSupport
import XCTest

/// A coordinator never trusts a client's spec: relative paths, paths outside its allowed
/// roots and jobs above its memory limit are refused with the field named, and nothing
/// is read or written (regressions of a raw submit with a relative output, and a job
/// that read /etc/shadow as calibration text).
final class ConfinementTests: XCTestCase {
    func submitError(_ client: TestClient, _ spec: JobSpec) throws -> String {
        var r = Kiln_V1_SubmitRequest()
        r.spec = try SpecConversion.toProto(spec)
        let m = try client.request(.submitRequest(r))
        guard case .error(let e)? = m.body else { return "accepted: \(m.body as Any)" }
        return e.message
    }

    func testSpecsOutsideTheLimitsAreRefused() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-confine")
        let coordinator = try makeCoordinator(dataDir: dir.appendingPathComponent("data")) { c in
            c.jobLimits.requireAbsolutePaths = true
            c.jobLimits.allowedRoots = [dir.path, model.deletingLastPathComponent().path, Paths.repoRoot.path]
                .map(PathResolution.resolve)
            c.jobLimits.maxJobMemory = 64 << 20
        }
        coordinator.start()
        defer { coordinator.stop() }
        let client = try TestClient(coordinator.endpoints.listen)
        let good = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("o.gguf"))

        var s = good
        s.output = "o.gguf"
        var e = try submitError(client, s)
        XCTAssertTrue(e.contains("--out o.gguf") && e.contains("relative path"), e)
        s = good
        s.calibration = "/etc/shadow"
        e = try submitError(client, s)
        XCTAssertTrue(e.contains("/etc/shadow") && e.contains("outside"), e)
        s = good
        s.output = "/etc/kiln-owned.gguf"
        e = try submitError(client, s)
        XCTAssertTrue(e.contains("/etc/kiln-owned.gguf") && e.contains("outside"), e)
        s = good
        s.samples = 4096
        s.seqlen = 2048
        s.errorReport = true  // RTN holds activations only for the error report
        e = try submitError(client, s)
        XCTAssertTrue(e.contains("estimated") && e.contains("64.0 MiB"), e)
        s = good
        s.samples = .max
        e = try submitError(client, s)
        XCTAssertTrue(e.contains("--samples"), e)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/etc/kiln-owned.gguf"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["data"])
    }
}
