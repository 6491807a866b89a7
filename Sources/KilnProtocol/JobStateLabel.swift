extension Kiln_V1_JobState {
    /// Lowercase name for people, JSON and metrics labels ("running").
    public var label: String {
        switch self {
        case .unspecified: return "unknown"
        case .queued: return "queued"
        case .planning: return "planning"
        case .running: return "running"
        case .writing: return "writing"
        case .evaluating: return "evaluating"
        case .succeeded: return "succeeded"
        case .failed: return "failed"
        case .cancelled: return "cancelled"
        case .UNRECOGNIZED(let v): return "state \(v)"
        }
    }
}
