import Foundation
import Jobs

extension JobReport {
    /// The report of a job run by the cluster: the same per-linear table as `kiln run`,
    /// from the reconstruct results (evaluation is not part of the cluster's graph).
    public static func cluster(
        spec: JobSpec, reconstructions: [ReconstructResult], seconds: Double, notes: [String]
    ) -> JobReport {
        let linears = reconstructions.sorted { ($0.block, $0.group) < ($1.block, $1.group) }.flatMap(\.linears).map {
            LinearReport($0, spec: spec)
        }
        var times = PhaseTimes()
        times.total = seconds
        return JobReport(
            spec: spec, output: spec.output, calibrationTokens: 0, calibrationWindowTokens: spec.samples * spec.seqlen,
            perplexity: nil, linears: linears, times: times, peakRSSBytes: Jobs.peakRSSBytes(), notes: notes)
    }
}
