import Foundation
import ModelIO

// What Jobs exposes for the Cluster layer above it: the model header a planner
// reads, and a report's total time (the cluster assembles its own report).

extension JobSpec {
    /// The model's header (mmap; tensors are read only when asked for).
    public func openModelView() throws -> any ModelView { try openForJob() }

    /// Blocks of the model: the planner's only need from the header.
    public func blockCount(_ view: any ModelView) -> Int { view.config.layerCount }
}

extension PhaseTimes {
    public init(total: Double) {
        self.init()
        self.total = total
    }
}
