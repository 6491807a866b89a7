import KilnProtocol

/// Units done out of total in one phase of a block (summed over its modules).
public struct PhaseCount: Equatable, Sendable {
    public var done: Int
    public var total: Int

    public init(done: Int = 0, total: Int = 0) {
        self.done = done
        self.total = total
    }

    public var isKnown: Bool { total > 0 }
    public var isComplete: Bool { total > 0 && done >= total }
    /// 0...1; 0 when the total is not known yet.
    public var fraction: Double { total > 0 ? min(1, Double(done) / Double(total)) : 0 }
}

/// Where a block is in its pipeline (docs/ARCHITECTURE.md, "Work as a task graph").
public enum BlockStage: String, Sendable, Equatable, CaseIterable {
    case waiting, statistics, merging, reconstructing, propagating, done
}

/// One block of a job as `kiln watch` shows it.
public struct BlockRow: Equatable, Sendable {
    public let block: Int
    /// Calibration shards collected.
    public var statistics = PhaseCount()
    public var merge = PhaseCount()
    /// Linears reconstructed (quantized).
    public var reconstruction = PhaseCount()
    /// Sequential mode: shards propagated through the quantized block.
    public var propagation = PhaseCount()
    /// Sum of the reconstruction errors reported for the block's modules; nil if none yet.
    public var error: Double?
    /// Workers running the block's modules now (or the last one that did), sorted.
    public var workers: [String] = []
    /// Earliest start of any of its modules (Unix ms); 0 if none started.
    public var startedUnixMs: Int64 = 0
    /// Latest end (start + elapsed) of its finished modules (Unix ms); 0 if none.
    public var lastEndUnixMs: Int64 = 0
    public var stage: BlockStage = .waiting

    public init(block: Int) { self.block = block }

    /// Time spent on the block so far (or in total, once done); nil before it starts.
    public func elapsedMs(nowUnixMs: Int64) -> Int64? {
        guard startedUnixMs > 0 else { return nil }
        let end = stage == .done ? max(lastEndUnixMs, startedUnixMs) : max(nowUnixMs, startedUnixMs)
        return end - startedUnixMs
    }

    /// Share of the block's work done: the mean over its phases. Reconstruction
    /// always counts (every block has one, even before its total is known).
    public var fraction: Double {
        if stage == .done { return 1 }
        let phases = [statistics, merge, propagation].filter(\.isKnown) + [reconstruction]
        return phases.map(\.fraction).reduce(0, +) / Double(phases.count)
    }

    /// Remaining time at the rate so far; nil when there is no rate yet or the block is done.
    public func etaMs(nowUnixMs: Int64) -> Int64? {
        guard stage != .done, let elapsed = elapsedMs(nowUnixMs: nowUnixMs) else { return nil }
        return JobView.eta(elapsedMs: elapsed, fraction: fraction)
    }
}
