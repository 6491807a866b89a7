import Foundation

/// Rate limit for log lines a peer can provoke at will (a refused key retrying its
/// handshake, a flood of malformed messages): the first `burst` lines per key are
/// logged, later ones only counted, and `summaries(nowMs:)` reports each key's count
/// of suppressed lines at most once per `intervalMs`. A key quiet for a whole interval
/// starts afresh. Without this, 0.13 s of garbage wrote 10,000 log lines.
///
/// Peers can pick fresh keys (a new connection has a new routing id), so the lines of
/// all keys together are capped too (`globalBurst` per interval), and at most `maxKeys`
/// keys are tracked (later ones share one "other peers" entry).
///
/// A plain value: each owner (the ZAP thread, the coordinator's loop) keeps its own.
public struct LogLimiter: Sendable {
    public let burst: Int
    public let intervalMs: Int64
    public let globalBurst: Int
    public let maxKeys: Int
    /// Summary lines per call beyond which the rest are folded into one.
    public let maxSummaries: Int
    public static let otherPeers = "other peers"

    struct Entry {
        var logged = 0
        var suppressed = 0
        var lastSeenMs: Int64
        var lastSummaryMs: Int64
    }

    private var entries: [String: Entry] = [:]
    private var globalWindowStartMs: Int64?
    private var globalLogged = 0

    public init(
        burst: Int = 3, intervalMs: Int64 = 10_000, globalBurst: Int = 20, maxKeys: Int = 1024,
        maxSummaries: Int = 8
    ) {
        precondition(burst >= 0 && intervalMs > 0 && globalBurst >= 0 && maxKeys >= 1 && maxSummaries >= 1)
        self.burst = burst
        self.intervalMs = intervalMs
        self.globalBurst = globalBurst
        self.maxKeys = maxKeys
        self.maxSummaries = maxSummaries
    }

    /// Whether a line about `key` should be logged now; otherwise it is counted for the next summary.
    public mutating func admit(_ key: String, nowMs: Int64) -> Bool {
        let k = entries[key] != nil || entries.count < maxKeys ? key : Self.otherPeers
        var e = entries[k] ?? Entry(lastSeenMs: nowMs, lastSummaryMs: nowMs)
        if e.suppressed == 0 && nowMs - e.lastSeenMs >= intervalMs {
            e = Entry(lastSeenMs: nowMs, lastSummaryMs: nowMs)
        }
        e.lastSeenMs = nowMs
        if globalWindowStartMs.map({ nowMs - $0 >= intervalMs }) ?? true {
            globalWindowStartMs = nowMs
            globalLogged = 0
        }
        let admitted = e.logged < burst && globalLogged < globalBurst
        if admitted {
            e.logged += 1
            globalLogged += 1
        } else {
            e.suppressed += 1
        }
        entries[k] = e
        return admitted
    }

    /// (key, suppressed count) for each key with suppressed lines whose last summary is
    /// at least `intervalMs` old (or `force`: everything pending, e.g. at shutdown). More
    /// than `maxSummaries` keys are folded into one "N peers" entry. Forgets quiet keys.
    public mutating func summaries(nowMs: Int64, force: Bool = false) -> [(key: String, suppressed: Int)] {
        var due: [(key: String, suppressed: Int)] = []
        for (k, var e) in entries {
            if e.suppressed > 0 && (force || nowMs - e.lastSummaryMs >= intervalMs) {
                due.append((k, e.suppressed))
                e.suppressed = 0
                e.lastSummaryMs = nowMs
                entries[k] = e
            } else if e.suppressed == 0 && nowMs - e.lastSeenMs >= intervalMs {
                entries[k] = nil
            }
        }
        due.sort { ($0.suppressed, $1.key) > ($1.suppressed, $0.key) }
        guard due.count > maxSummaries else { return due }
        let rest = due[(maxSummaries - 1)...]
        let folded = (key: "\(rest.count) peers", suppressed: rest.reduce(0) { $0 + $1.suppressed })
        return Array(due[..<(maxSummaries - 1)]) + [folded]
    }
}
