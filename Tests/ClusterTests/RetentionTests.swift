import Cluster
import Coordinator
import Foundation
import Jobs
import KilnProtocol
import ModelIO
import Synchronization
import TestSupport
import Worker
import XCTest
import ZeroMQ

/// Result files are removed when a job ends (succeeded, failed, cancelled) unless the
/// coordinator keeps them; `kiln gc` collects what is left; a job whose results would
/// not fit in the free space is refused at submit. Real jobs on a 2-block SmolLM2.
final class RetentionTests: XCTestCase {
    func entries(_ dir: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    }

    /// Every file under `dir` with its size.
    func files(_ dir: URL) -> [String: Int] {
        var out: [String: Int] = [:]
        let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey])
        while let u = e?.nextObject() as? URL {
            let v = try? u.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey])
            if v?.isRegularFile == true { out[u.path] = v?.fileSize ?? 0 }
        }
        return out
    }

    /// A coordinator and one worker in this process; `body` gets the client.
    func withCluster(
        data: URL, configure: (inout CoordinatorConfig) -> Void = { _ in },
        _ body: (Coordinator, TestClient) throws -> Void
    ) throws {
        let coordinator = try makeCoordinator(dataDir: data, configure: configure)
        coordinator.start()
        defer { coordinator.stop() }
        let worker = makeWorker(coordinator.endpoints.listen, id: "w1")
        worker.start()
        defer {
            worker.requestStop()
            worker.stop()
        }
        try body(coordinator, try TestClient(coordinator.endpoints.listen))
    }

    func cancel(_ client: TestClient, _ job: String) throws {
        var r = Kiln_V1_CancelRequest()
        r.jobID = job
        r.reason = "test"
        guard case .cancelResponse? = try client.request(.cancelRequest(r)).body else {
            return XCTFail("cancel refused")
        }
    }

    /// A block's statistics files go as soon as its reconstructions are durable: when block b
    /// is done, no collect or merge file of b is left, while its reconstructions still are.
    func testStatisticsFilesGoOnceTheirBlockIsReconstructed() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-retention")
        let data = dir.appendingPathComponent("data")
        var spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("out.gguf"), mode: .sequential)
        spec.errorReport = true  // RTN gathers statistics only for the error report
        let results = data.appendingPathComponent("results")
        let seen = Mutex<[Int: [String]]>([:])
        try withCluster(data: data) { coordinator, client in
            coordinator.onEvent = { job, e in
                guard case let .blockDone(b, _, _) = e else { return }
                let names = self.entries(results.appendingPathComponent(job))
                seen.withLock {
                    $0[b] = names.filter {
                        $0.hasPrefix("collect-\(b)-") || $0.hasPrefix("merge-\(b).")
                            || $0.hasPrefix("reconstruct-\(b)-")
                    }
                }
            }
            let job = try client.submit(spec)
            XCTAssertEqual(try client.wait(job).state, .succeeded)
        }
        let byBlock = seen.withLock { $0 }
        XCTAssertEqual(byBlock.keys.sorted(), [0, 1])
        for (b, names) in byBlock {
            XCTAssertEqual(
                names, (0..<Tasks.groups.count).map { "reconstruct-\(b)-\($0).bin" },
                "files of block \(b) when it was done")
        }
    }

    func testResultFilesAreRemovedAfterTheJobSucceeds() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-retention")
        let data = dir.appendingPathComponent("data")
        let spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("out.gguf"))
        let results = data.appendingPathComponent("results")
        try withCluster(data: data) { _, client in
            let job = try client.submit(spec)
            var sawFiles = false
            let s = try client.wait(job) { _ in sawFiles = sawFiles || !self.files(results).isEmpty }
            XCTAssertEqual(s.state, .succeeded, s.error.message)
            XCTAssertTrue(sawFiles, "the job wrote no result files while it ran")
            try waitUntil("the result files of \(job) removed", timeout: 10) { self.entries(results).isEmpty }
            let store = try JobStore(path: data.appendingPathComponent("kiln.sqlite").path)
            XCTAssertEqual(try store.results(job: job), [], "the store still offers the removed files")
            XCTAssertEqual(try store.jobs().first?.state, "succeeded", "the job's row stays")
        }
        XCTAssertGreaterThan(try Data(contentsOf: URL(fileURLWithPath: spec.output)).count, 1 << 20)
    }

    func testCancelledAndFailedJobsLeaveNoResultFiles() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-retention")
        let data = dir.appendingPathComponent("data")
        let results = data.appendingPathComponent("results")
        try withCluster(data: data) { _, client in
            // Cancelled once some results are durable.
            let cancelled = try client.submit(
                ClusterAssets.spec(model: model, out: dir.appendingPathComponent("c.gguf"), samples: 8))
            try waitUntil("results of the job to cancel") {
                !self.files(results.appendingPathComponent(cancelled)).isEmpty
            }
            try cancel(client, cancelled)
            XCTAssertEqual(try client.wait(cancelled).state, .cancelled)
            try waitUntil("the cancelled job's files removed", timeout: 10) { self.entries(results).isEmpty }

            // Failed: its output directory vanishes while it runs, so the writer fails.
            let outDir = dir.appendingPathComponent("gone")
            try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
            let failing = try client.submit(
                ClusterAssets.spec(model: model, out: outDir.appendingPathComponent("f.gguf")))
            try FileManager.default.removeItem(at: outDir)
            var sawFiles = false
            let s = try client.wait(failing) { _ in sawFiles = sawFiles || !self.files(results).isEmpty }
            XCTAssertTrue(sawFiles, "the failing job wrote no result files")
            XCTAssertEqual(s.state, .failed)
            XCTAssertTrue(s.error.message.contains("writing"), s.error.message)
            try waitUntil("the failed job's files removed", timeout: 10) { self.entries(results).isEmpty }
        }
    }

    /// --keep-results keeps them; the estimate made at submit covers what was written;
    /// `kiln gc` is refused while the coordinator runs, then removes the kept files and
    /// orphans, and leaves alone what Kiln did not name.
    func testKeepResultsThenGCRemovesOnlyWhatKilnCreated() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-retention")
        let data = dir.appendingPathComponent("data")
        let results = data.appendingPathComponent("results")
        var spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("kept.gguf"), mode: .sequential)
        spec.errorReport = true  // RTN gathers statistics only for the error report
        var job = ""
        try withCluster(data: data, configure: { $0.keepResults = true }) { _, client in
            job = try client.submit(spec)
            XCTAssertEqual(try client.wait(job).state, .succeeded)
            Thread.sleep(forTimeInterval: 0.5)  // a release would have happened by now
            let kept = files(results.appendingPathComponent(job))
            // Per block: 4 reconstructs, a propagate per shard, and a collect file per sum a
            // worker sent (1 to shardCount of them: a worker sums the collects it holds).
            // Merges are recomputed from the collects, not stored.
            let collects = kept.keys.filter { URL(fileURLWithPath: $0).lastPathComponent.hasPrefix("collect-") }.count
            XCTAssertEqual(
                kept.count - collects, 2 * (spec.shardCount + Tasks.groups.count), "\(kept.keys.sorted())")
            XCTAssertTrue((2...2 * spec.shardCount).contains(collects), "\(kept.keys.sorted())")
            let written = Int64(kept.values.reduce(0, +))
            let estimate = DiskBudget.resultBytes(
                spec: spec, config: try spec.openForJob().config, keepStatistics: true)
            XCTAssertGreaterThanOrEqual(estimate, written, "the estimate is below the bytes written")
            XCTAssertLessThan(
                estimate, written * 2, "the estimate is far above the bytes written (\(estimate) vs \(written))")

            XCTAssertThrowsError(try ResultsGC.run(dataDir: data), "gc ran beside a coordinator") { e in
                XCTAssertTrue("\(e)".contains("in use by a running coordinator"), "\(e)")
            }
            XCTAssertThrowsError(try makeCoordinator(dataDir: data), "a second coordinator on the same data dir")
        }
        // Orphans: a job the store does not know (a result and a stale temporary file), and
        // a stale temporary file of the ended job. Foreign files beside them stay.
        let orphan = results.appendingPathComponent("job-abc123-z9")
        try FileManager.default.createDirectory(at: orphan, withIntermediateDirectories: true)
        try Data(count: 1000).write(to: orphan.appendingPathComponent("reconstruct-0-1.bin"))
        try Data(count: 10).write(to: orphan.appendingPathComponent(".tmp-\(UUID().uuidString)"))
        let foreign = [
            data.appendingPathComponent("notes.txt"), results.appendingPathComponent("README"),
            results.appendingPathComponent("backup/collect-0-0.bin"),
            results.appendingPathComponent("job-abc124-z9/mine.bin"),
        ]
        for f in foreign {
            try FileManager.default.createDirectory(
                at: f.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("not Kiln's".utf8).write(to: f)
        }
        let keptBytes = Int64(files(results.appendingPathComponent(job)).values.reduce(0, +))

        let report = try ResultsGC.run(dataDir: data)
        XCTAssertEqual(Set(report.entries.map(\.job)), [job, "job-abc123-z9", "job-abc124-z9"])
        XCTAssertEqual(report.bytes, keptBytes + 1010)
        XCTAssertEqual(Set(report.leftAlone), ["README", "backup", "job-abc124-z9/mine.bin"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: results.appendingPathComponent(job).path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: orphan.path))
        for f in foreign { XCTAssertTrue(FileManager.default.fileExists(atPath: f.path), "gc removed \(f.path)") }
        let store = try JobStore(path: data.appendingPathComponent("kiln.sqlite").path)
        XCTAssertEqual(try store.results(job: job), [])
        XCTAssertEqual(try ResultsGC.run(dataDir: data).files, 0, "a second gc finds nothing")
        XCTAssertThrowsError(try ResultsGC.run(dataDir: dir), "gc on a directory without a job store")
    }

    /// A result write that fails (a full disk in the fault campaign; here a directory where
    /// the file goes, so the rename fails) leaves no temporary file taking the space.
    func testAFailedResultWriteLeavesNoTemporaryFile() throws {
        let files = try ResultFiles(dataDir: Paths.tempDir("kiln-retention"))
        let job = "job-abc-1"
        let blocker = files.url(job: job, task: .merge(block: 0))
        try FileManager.default.createDirectory(
            at: blocker.appendingPathComponent("x"), withIntermediateDirectories: true)
        XCTAssertThrowsError(try files.write(Data(count: 4096), job: job, task: .merge(block: 0)))
        XCTAssertEqual(entries(files.root.appendingPathComponent(job)), [blocker.lastPathComponent])
    }

    func testSubmitIsRefusedWhenTheResultsWouldNotFit() throws {
        let model = try ClusterAssets.smolLM2(blocks: 2)
        let dir = Paths.tempDir("kiln-retention")
        let data = dir.appendingPathComponent("data")
        var spec = ClusterAssets.spec(model: model, out: dir.appendingPathComponent("big.gguf"), samples: 32)
        spec.errorReport = true  // statistics files are what does not fit
        let need = DiskBudget.resultBytes(spec: spec, config: try spec.openForJob().config, keepStatistics: false)
        let free = UInt64(need / 2)
        try withCluster(data: data, configure: { c in c.freeBytes = { _ in free } }) { _, client in
            var r = Kiln_V1_SubmitRequest()
            r.spec = try SpecConversion.toProto(spec)
            let m = try client.request(.submitRequest(r))
            guard case .error(let e)? = m.body else {
                return XCTFail("submitted although it does not fit: \(m.body as Any)")
            }
            XCTAssertTrue(e.message.contains("not enough disk space"), e.message)
            XCTAssertTrue(e.message.contains(String(format: "%.2f GiB", Double(need) / Double(1 << 30))), e.message)
            XCTAssertTrue(
                e.message.contains(String(format: "%.2f GiB is free", Double(free) / Double(1 << 30))), e.message)
            // A small job fits the same free space.
            let small = try client.submit(
                ClusterAssets.spec(model: model, out: dir.appendingPathComponent("small.gguf"), samples: 2))
            XCTAssertFalse(small.isEmpty)
        }
    }
}
