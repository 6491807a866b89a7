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
}
