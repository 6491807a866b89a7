import Cluster
import Coordinator
import Foundation
import Jobs
import KilnProtocol
import Logging
import Tensor
import Worker
import ZeroMQ

/// `kiln run --workers N`: a coordinator and N workers in this process over inproc://.
/// The same Coordinator and Worker as a cluster (sockets, store, durable results,
/// scheduler), only the transport differs.
public enum EmbeddedCluster {
    public struct Outcome: Sendable {
        public var jobID: String
        public var report: JobReport
        public var traffic: TrafficCounters
        public var seconds: Double
    }

    public static func run(
        spec: JobSpec, workers n: Int, threads: Int = 1, dataDir: URL? = nil,
        logLevel: Logger.Level = .warning, progress: ((JobEvent) -> Void)? = nil,
        started: ((Coordinator, ZMQContext) throws -> Void)? = nil, stopping: ((Coordinator) -> Void)? = nil
    ) throws -> Outcome {
        guard n >= 1 else { throw JobError("--workers \(n) must be at least 1") }
        try spec.validate()
        let t0 = Date()
        // Evaluation as `kiln run` without --workers does it, on this process's BLAS
        // threads (workers set one thread each; restored for the "after" pass).
        let evaluation = try JobEvaluation.open(spec)
        let evalThreads = BLAS.threads
        let before = try evaluation?.before(progress: progress)
        let evalBeforeSeconds = Date().timeIntervalSince(t0)
        var log = Logger(label: "kiln.embedded", factory: { StreamLogHandler.standardError(label: $0) })
        log.logLevel = logLevel
        let context = ZMQContext()
        let tag = UUID().uuidString.prefix(8)
        let dir = dataDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("kiln-embedded-\(tag)")
        defer { if dataDir == nil { try? FileManager.default.removeItem(at: dir) } }
        var config = CoordinatorConfig(
            listen: "inproc://kiln-\(tag)", publish: "inproc://kiln-\(tag)-pub", dataDir: dir)
        // The report reads the reconstructions back after the job succeeds; the data dir goes with it.
        config.keepResults = true
        let coordinator = try Coordinator(config: config, context: context, logger: log)
        coordinator.onEvent = { _, e in progress?(e) }
        coordinator.start()
        do { try started?(coordinator, context) } catch {
            coordinator.stop()
            throw error
        }
        let workers = (0..<n).map { i in
            var wc = WorkerConfig(coordinator: config.listen, threads: threads, id: "embedded-\(i + 1)")
            wc.token = coordinator.token
            return Worker(config: wc, context: context, logger: log)
        }
        for w in workers { w.start() }
        defer {
            for w in workers { w.requestStop() }
            for w in workers { w.stop() }
            stopping?(coordinator)
            coordinator.stop()
        }
        progress?(.phase("calibrate and reconstruct (\(n) worker\(n == 1 ? "" : "s"))"))
        let id = try coordinator.submitJob(spec)
        while true {
            Thread.sleep(forTimeInterval: 0.05)
            guard let (state, error) = coordinator.jobState(id) else { throw JobError("job \(id) vanished") }
            if state == .succeeded { break }
            if state == .failed || state == .cancelled {
                throw JobError("job \(id) \(state == .failed ? "failed" : "was cancelled"): \(error)")
            }
        }
        let reconstructions = try coordinator.reconstructions(job: id, spec: spec)
        let seconds = Date().timeIntervalSince(t0)
        var report = JobReport.cluster(
            spec: spec, reconstructions: reconstructions, seconds: seconds,
            notes: ["embedded cluster: \(n) worker\(n == 1 ? "" : "s") over inproc://"])
        if let evaluation {
            let t1 = Date()
            BLAS.threads = evalThreads
            report.perplexity = try evaluation.after(
                output: URL(fileURLWithPath: spec.output), linears: reconstructions.linearsByTensor,
                before: before, progress: progress)
            report.times.total = Date().timeIntervalSince(t0)
            report.times.evalAfter = Date().timeIntervalSince(t1)
            if before != nil { report.times.evalBefore = evalBeforeSeconds }
            // The dashboard shows them with the job (the coordinator has no evaluation of its own).
            if let p = report.perplexity {
                var results = ["perplexity_after": p.after, "eval_after_seconds": report.times.evalAfter]
                if let b = p.before {
                    results["perplexity_before"] = b
                    results["eval_before_seconds"] = report.times.evalBefore
                }
                coordinator.recordEvaluation(job: id, results)
            }
        }
        return Outcome(jobID: id, report: report, traffic: coordinator.traffic, seconds: seconds)
    }
}
