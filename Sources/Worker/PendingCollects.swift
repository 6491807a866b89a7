import Jobs
import KilnProtocol

/// Collect results a worker holds back so that one partial per block crosses the wire:
/// while another collect of the same job and block is queued or running here, a finished
/// one is folded into the block's running sum (exact, so the merge's bits do not depend
/// on how shards were grouped) and answered "deferred"; the last one sends the sum.
public struct PendingCollects {
    public struct Held {
        public var result: CollectResult
        /// The assignment whose result carries the sum (the latest folded in).
        public var carrier: Kiln_V1_TaskAssignment
    }

    public enum Decision {
        case deferred
        /// Results to send now (two when a shard came back twice and cannot be summed).
        case send([Held])
    }

    /// Collects of each "job/block" queued or running here.
    public var expected: [String: Int] = [:]
    var held: [String: Held] = [:]

    public init() {}

    /// A collect of `key` finished with `result`.
    public mutating func finished(_ key: String, _ result: CollectResult, carrier: Kiln_V1_TaskAssignment) -> Decision {
        let more = leave(key)
        var mine = Held(result: result, carrier: carrier)
        var out: [Held] = []
        if let h = held.removeValue(forKey: key) {
            if let sum = try? Tasks.combine(h.result, result) {
                mine.result = sum
            } else {
                out.append(h)  // the coordinator gave a shard again (after a reconnect): sent apart
            }
        }
        if more && out.isEmpty {
            held[key] = mine
            return .deferred
        }
        return .send(out + [mine])
    }

    /// A collect of `key` failed: what was held back for the block goes now if nothing else will carry it.
    public mutating func finished(_ key: String) -> Held? {
        leave(key) ? nil : held.removeValue(forKey: key)
    }

    /// One collect of `key` less; whether others remain.
    private mutating func leave(_ key: String) -> Bool {
        let n = max(0, (expected[key] ?? 1) - 1)
        expected[key] = n == 0 ? nil : n
        return n > 0
    }
}
