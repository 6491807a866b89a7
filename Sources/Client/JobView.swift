import KilnProtocol

/// What a watcher knows about one job: built from a snapshot's JobStatus, then
/// kept current by ProgressUpdates. Pure (no sockets, no clock: callers pass
/// the time), so it is tested on its own.
public struct JobView: Equatable, Sendable {
    /// Rows beyond this are ignored: a peer's block index never sizes our allocations.
    public static let maxBlocks = 4096

    public private(set) var jobID: String
    public private(set) var state: Kiln_V1_JobState = .unspecified
    public private(set) var spec = Kiln_V1_JobSpec()
    public private(set) var blocksTotal = 0
    public private(set) var blocksDoneReported = 0
    public private(set) var submittedUnixMs: Int64 = 0
    public private(set) var elapsedMs: UInt64 = 0
    public private(set) var error: Kiln_V1_Error?
    public private(set) var evalResults: [String: Double] = [:]
    /// One per block, 0..<max(blocksTotal, highest block reported + 1).
    public private(set) var rows: [BlockRow] = []

    private struct ModuleKey: Hashable, Sendable {
        let block: UInt32
        let module: String
        let phase: Int
    }
    private var modules: [ModuleKey: Kiln_V1_ModuleProgress] = [:]

    public init(jobID: String) { self.jobID = jobID }

    public init(status: Kiln_V1_JobStatus) {
        self.init(jobID: status.jobID)
        apply(status)
    }

    public var isFinished: Bool { state.isTerminal }
    public var blocksDone: Int { rows.filter { $0.stage == .done }.count }

    /// Replaces everything with a full status (a snapshot, or an update carrying one).
    public mutating func apply(_ status: Kiln_V1_JobStatus) {
        jobID = status.jobID.isEmpty ? jobID : status.jobID
        state = status.state
        spec = status.spec
        blocksTotal = min(Int(status.blocksTotal), Self.maxBlocks)
        blocksDoneReported = Int(status.blocksDone)
        submittedUnixMs = status.submittedUnixMs
        elapsedMs = status.elapsedMs
        error = status.hasError ? status.error : nil
        evalResults = status.evalResults
        modules.removeAll()
        for m in status.modules { store(m) }
        rebuildRows()
    }

    /// Applies one update of this job (updates of other jobs are ignored).
    public mutating func apply(_ update: Kiln_V1_ProgressUpdate) {
        guard update.jobID == jobID || update.jobID.isEmpty else { return }
        if update.hasStatus {
            apply(update.status)
        }
        if update.state != .unspecified { state = update.state }
        if update.hasModule { store(update.module) }
        rebuildRows()
    }

    private mutating func store(_ m: Kiln_V1_ModuleProgress) {
        guard m.block < Self.maxBlocks else { return }
        modules[ModuleKey(block: m.block, module: m.module, phase: m.phase.rawValue)] = m
    }

    private mutating func rebuildRows() {
        let highest = modules.keys.map { Int($0.block) + 1 }.max() ?? 0
        var out = (0..<max(blocksTotal, highest)).map { BlockRow(block: $0) }
        var byBlock: [Int: [Kiln_V1_ModuleProgress]] = [:]
        for (k, m) in modules { byBlock[Int(k.block), default: []].append(m) }
        for (b, ms) in byBlock {
            // Sorted so that the result never depends on dictionary order.
            out[b] = Self.row(
                block: b, modules: ms.sorted { ($0.phase.rawValue, $0.module) < ($1.phase.rawValue, $1.module) })
        }
        if state == .succeeded {
            for i in out.indices where out[i].stage != .done { out[i].stage = .done }
        }
        rows = out
    }

    static func row(block: Int, modules: [Kiln_V1_ModuleProgress]) -> BlockRow {
        var row = BlockRow(block: block)
        var errors: [Double] = []
        var running: Set<String> = []
        var lastWorker = (started: Int64.min, id: "")
        for m in modules {
            let count = PhaseCount(done: Int(m.done), total: Int(m.total))
            switch m.phase {
            case .collect: row.statistics = add(row.statistics, count)
            case .merge: row.merge = add(row.merge, count)
            case .reconstruct:
                row.reconstruction = add(row.reconstruction, count)
                if m.error != 0 { errors.append(m.error) }
            case .propagate: row.propagation = add(row.propagation, count)
            case .unspecified, .UNRECOGNIZED: continue
            }
            if m.startedUnixMs > 0 {
                row.startedUnixMs = row.startedUnixMs == 0 ? m.startedUnixMs : min(row.startedUnixMs, m.startedUnixMs)
                if count.isComplete {
                    row.lastEndUnixMs = max(row.lastEndUnixMs, m.startedUnixMs + Int64(clamping: m.elapsedMs))
                }
            }
            if !m.workerID.isEmpty {
                if !count.isComplete { running.insert(m.workerID) }
                if m.startedUnixMs >= lastWorker.started { lastWorker = (m.startedUnixMs, m.workerID) }
            }
        }
        row.error = errors.isEmpty ? nil : errors.reduce(0, +)
        row.workers = running.isEmpty ? (lastWorker.id.isEmpty ? [] : [lastWorker.id]) : running.sorted()
        row.stage = stage(of: row, modules: modules)
        return row
    }

    private static func add(_ a: PhaseCount, _ b: PhaseCount) -> PhaseCount {
        PhaseCount(done: a.done + b.done, total: a.total + b.total)
    }

    /// The first phase, in pipeline order, with unfinished work; done once the
    /// block's reconstruction (and anything after it) is complete.
    static func stage(of row: BlockRow, modules: [Kiln_V1_ModuleProgress]) -> BlockStage {
        let started = modules.contains { $0.done > 0 || $0.startedUnixMs > 0 }
        guard started else { return .waiting }
        let pipeline: [(PhaseCount, BlockStage)] = [
            (row.statistics, .statistics), (row.merge, .merging),
            (row.reconstruction, .reconstructing), (row.propagation, .propagating),
        ]
        if let open = pipeline.first(where: { $0.0.isKnown && !$0.0.isComplete }) { return open.1 }
        // Everything reported is complete; without a reconstruction yet the
        // statistics are on their way to being merged.
        return row.reconstruction.isComplete ? .done : .merging
    }

    /// Blocks whose stage differs from `previous` (or that are new), in block order.
    public func stageChanges(from previous: JobView?) -> [BlockRow] {
        rows.filter { row in
            guard let previous, row.block < previous.rows.count else { return true }
            return previous.rows[row.block].stage != row.stage
        }
    }

    /// The job's running time: the coordinator's figure, or since submission while running.
    public func jobElapsedMs(nowUnixMs: Int64) -> Int64 {
        if !isFinished, submittedUnixMs > 0 { return max(Int64(clamping: elapsedMs), nowUnixMs - submittedUnixMs) }
        return Int64(clamping: elapsedMs)
    }

    /// Share of the job's block work done (mean over blocks).
    public var fraction: Double {
        if state == .succeeded { return 1 }
        guard !rows.isEmpty else { return 0 }
        return rows.map(\.fraction).reduce(0, +) / Double(rows.count)
    }

    public func etaMs(nowUnixMs: Int64) -> Int64? {
        guard !isFinished else { return nil }
        return Self.eta(elapsedMs: jobElapsedMs(nowUnixMs: nowUnixMs), fraction: fraction)
    }

    /// Time left if the rest goes at the rate so far; nil without a rate.
    static func eta(elapsedMs: Int64, fraction: Double) -> Int64? {
        guard fraction > 0, fraction < 1, elapsedMs > 0 else { return fraction >= 1 ? 0 : nil }
        return Int64((Double(elapsedMs) * (1 - fraction) / fraction).rounded())
    }
}

extension Kiln_V1_JobState {
    /// SUCCEEDED, FAILED or CANCELLED: nothing more will happen.
    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}
