import Cluster
import Foundation
import Jobs
import KilnProtocol
import ModelIO

extension CoordinatorClient {
    /// Submits Kiln's spec (its paths as the coordinator sees them) under `name`; returns the job id.
    public func submit(_ spec: JobSpec, name: String) throws -> Kiln_V1_SubmitResponse {
        var wire = try SpecConversion.toProto(spec)
        wire.name = name
        let reply = try submit(wire)
        guard !reply.jobID.isEmpty else {
            throw ClientError.unexpectedReply(endpoint: endpoint, expected: "a job id", got: "an empty one")
        }
        return reply
    }

    /// The report a coordinator kept of a job that succeeded (those of sensitivity jobs).
    public func report(jobID: String) throws -> JobReport {
        var r = Kiln_V1_ReportRequest()
        r.jobID = jobID
        let json = try call(.reportRequest(r), expecting: "report_response", jobID: jobID) {
            if case .reportResponse(let v) = $0 { return v.reportJson } else { return nil }
        }
        do { return try JSONDecoder().decode(JobReport.self, from: Data(json.utf8)) } catch {
            throw ClientError.malformedReply(endpoint: endpoint, reason: "report of job \(jobID): \(error)")
        }
    }

    /// Runs `spec` on the coordinator to its end and returns its report: submit, follow the
    /// progress feed at `publish` (default: the coordinator's port + 1), fetch the report.
    /// A job that fails or is cancelled throws, naming it.
    public func runToEnd(
        _ spec: JobSpec, name: String, publish: String? = nil, submitted: (String) -> Void = { _ in },
        progress: (_ view: JobView, _ previous: JobView?) -> Void = { _, _ in }
    ) throws -> JobReport {
        let id = try submit(spec, name: name).jobID
        submitted(id)
        let feed = try publish ?? Endpoints.publish(forCoordinator: endpoint)
        let subscriber = try ProgressSubscriber(client: self, publishEndpoint: feed, jobID: id)
        let view = try JobFollower(subscriber: subscriber, jobID: id).run { progress($0, $1) }
        switch view.state {
        case .succeeded: return try report(jobID: id)
        case .cancelled: throw JobError("job \(id) (\(name)) was cancelled")
        default:
            throw JobError("job \(id) (\(name)) failed: \(view.error.map(JobTable.errorText) ?? "no error reported")")
        }
    }

    /// `kiln submit --target-bpw`: resolves the target through this coordinator. The job is
    /// checked first as far as this machine can (the options; the target against the model
    /// when the model opens here; the coordinator checks the rest when it admits each job),
    /// then its sensitivity job runs on the coordinator as "<name>.sensitivity", and the
    /// types are chosen from its report, as `kiln run` chooses them. Returns the job with its
    /// types, for a plain submit. The sensitivity job's output is removed when it appears on
    /// this machine's file system; a coordinator elsewhere keeps it.
    public func resolveTargetBPW(
        _ spec: JobSpec, name: String, publish: String? = nil, submitted: (String) -> Void = { _ in },
        progress: (_ view: JobView, _ previous: JobView?) -> Void = { _, _ in }
    ) throws -> TargetBPW.Resolution {
        try TargetBPW.resolve(
            spec,
            validate: { probe in
                try probe.validateOptions()
                return try? probe.openForJob()
            },
            run: { sense in
                try runToEnd(
                    sense, name: name + ".sensitivity", publish: publish, submitted: submitted, progress: progress)
            })
    }
}
