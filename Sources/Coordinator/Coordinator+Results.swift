import Cluster
import Foundation
import Jobs

extension Coordinator {
    /// Every reconstruct result of a job, read back from the durable files.
    public func reconstructions(job: String) throws -> [ReconstructResult] {
        try store.results(job: job).compactMap { r -> ReconstructResult? in
            guard case .reconstruct = r.task else { return nil }
            guard case let .reconstruct(rr) = try files.readOutput(r) else { return nil }
            return rr
        }.sorted { ($0.block, $0.group) < ($1.block, $1.group) }
    }
}
