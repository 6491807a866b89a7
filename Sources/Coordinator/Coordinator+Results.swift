import Cluster
import Foundation
import Jobs

extension Coordinator {
    /// Every reconstruct result of a job, read back from the durable files, row slices
    /// joined: one result per (block, group), in that order.
    public func reconstructions(job: String, spec: JobSpec) throws -> [ReconstructResult] {
        try ReconstructUnits(spec: spec).joinResults(
            store.results(job: job).compactMap { r -> ReconstructResult? in
                guard case .reconstruct = r.task else { return nil }
                guard case let .reconstruct(rr) = try files.readOutput(r) else { return nil }
                return rr
            })
    }

    /// A succeeded job's report from its durable results, read one (block, group) at a time
    /// (row slices joined), so the coordinator never holds the codes of more than one group.
    func report(job: String, spec: JobSpec, seconds: Double) throws -> JobReport {
        let units = ReconstructUnits(spec: spec)
        var groups: [[Int]: [StoredResult]] = [:]
        for r in try store.results(job: job) {
            guard case let .reconstruct(b, u) = r.task else { continue }
            groups[[b, units.group(u)], default: []].append(r)
        }
        var linears: [LinearReport] = []
        for key in groups.keys.sorted(by: { ($0[0], $0[1]) < ($1[0], $1[1]) }) {
            let results = try groups[key]!.map { r -> ReconstructResult in
                guard case let .reconstruct(rr) = try files.readOutput(r) else {
                    throw CoordinatorError("\(r.task) of job \(job): not a reconstruct result")
                }
                return rr
            }
            linears += try units.joinResults(results).flatMap(\.linears).map { LinearReport($0, spec: spec) }
        }
        var times = PhaseTimes()
        times.total = seconds
        return JobReport(
            spec: spec, output: spec.output, calibrationTokens: 0, calibrationWindowTokens: spec.samples * spec.seqlen,
            linears: linears, times: times, peakRSSBytes: Jobs.peakRSSBytes(), notes: ["cluster job \(job)"])
    }
}
