import KilnProtocol

/// The ordering rules of the Clone pattern, client side, without sockets.
///
/// The watcher subscribes first, then asks for a snapshot. Updates that arrive
/// before the snapshot are buffered; when it comes, only those with a sequence
/// number above the snapshot's are applied, in order, and after that every
/// update newer than the last one seen. The coordinator numbers updates
/// globally, one by one, so a skipped number means the feed lost something
/// (PUB drops on a full queue, or the subscription was not active yet when the
/// snapshot was taken): `needsSnapshot` then asks the caller to fetch a new one.
public struct CloneSequencer: Sendable {
    /// Only updates of this job are returned (nil: all jobs). Filtering happens
    /// after the gap check, because sequence numbers are global.
    public let jobID: String?
    /// Most updates held while waiting for a snapshot; the oldest go first
    /// (a gap is then detected and the next snapshot covers them).
    public let maxPending: Int

    public private(set) var awaitingSnapshot = true
    /// Sequence of the last update applied or reflected in a snapshot; nil before the first snapshot.
    public private(set) var lastSequence: UInt64?
    /// Set when an update skipped sequence numbers.
    public private(set) var needsSnapshot = false
    private var pending: [Kiln_V1_ProgressUpdate] = []

    public init(jobID: String? = nil, maxPending: Int = 100_000) {
        self.jobID = jobID
        self.maxPending = max(1, maxPending)
    }

    public var pendingCount: Int { pending.count }

    /// An update from the feed; returns what to apply now, in order.
    public mutating func receive(_ update: Kiln_V1_ProgressUpdate) -> [Kiln_V1_ProgressUpdate] {
        if awaitingSnapshot {
            if pending.count >= maxPending { pending.removeFirst() }
            pending.append(update)
            return []
        }
        return accept(update)
    }

    /// The caller is asking for a new snapshot: buffer until it arrives.
    public mutating func snapshotRequested() {
        awaitingSnapshot = true
        needsSnapshot = false
    }

    /// A snapshot reflecting every update up to `sequence` arrived (apply its
    /// state first). Returns the buffered updates newer than it, in order.
    public mutating func snapshotReceived(sequence: UInt64) -> [Kiln_V1_ProgressUpdate] {
        awaitingSnapshot = false
        needsSnapshot = false
        // The snapshot is the truth, even below what we saw (a restarted coordinator counts from 0 again).
        lastSequence = sequence
        let buffered = pending.sorted { $0.sequence < $1.sequence }
        pending.removeAll()
        return buffered.flatMap { accept($0) }
    }

    private mutating func accept(_ update: Kiln_V1_ProgressUpdate) -> [Kiln_V1_ProgressUpdate] {
        let last = lastSequence ?? 0
        guard update.sequence > last else { return [] }  // already reflected, or a duplicate
        if update.sequence != last + 1 { needsSnapshot = true }
        lastSequence = update.sequence
        if let jobID, update.jobID != jobID { return [] }
        return [update]
    }
}
