import CoreMetrics
import Foundation

/// A process's metrics, through swift-metrics: `kiln coordinator --http` and `kiln worker
/// --metrics` back them with a Prometheus registry (served at /metrics); without a factory
/// they go nowhere. The series names are in docs/ARCHITECTURE.md (Metrics).
///
/// Event series (counters, timers) are recorded where the event happens; state series
/// (gauges) are set together from the owner's state, once per tick, so they are always what
/// its loop last saw.
public final class MetricSeries: @unchecked Sendable {  // handles are thread-safe; the caches are under `lock`
    public let factory: (any MetricsFactory)?
    private let lock = NSLock()
    private var gauges: [String: Gauge] = [:]
    private var counters: [String: Counter] = [:]
    private var timers: [String: CoreMetrics.Timer] = [:]
    /// Label sets set at the last tick: those not set again are zeroed (a job that ended,
    /// a worker that left), not left at their last value.
    private var lastSet: Set<String> = []

    public init(factory: (any MetricsFactory)?) { self.factory = factory }

    public var enabled: Bool { factory != nil }

    private static func key(_ label: String, _ dims: [(String, String)]) -> String {
        ([label] + dims.map { "\($0.0)=\($0.1)" }).joined(separator: "\u{1}")
    }

    private func gauge(_ label: String, _ dims: [(String, String)]) -> Gauge? {
        guard let factory else { return nil }
        let k = Self.key(label, dims)
        return lock.withLock {
            if let g = gauges[k] { return g }
            let g = Gauge(label: label, dimensions: dims, factory: factory)
            gauges[k] = g
            return g
        }
    }

    public func count(_ label: String, _ dims: [(String, String)] = [], by n: Int = 1) {
        guard let factory, n > 0 else { return }
        let k = Self.key(label, dims)
        let c = lock.withLock {
            if let c = counters[k] { return c }
            let c = Counter(label: label, dimensions: dims, factory: factory)
            counters[k] = c
            return c
        }
        c.increment(by: n)
    }

    public func time(_ label: String, _ dims: [(String, String)] = [], seconds: Double) {
        guard let factory, seconds.isFinite, seconds >= 0 else { return }
        let k = Self.key(label, dims)
        let t = lock.withLock {
            if let t = timers[k] { return t }
            let t = CoreMetrics.Timer(label: label, dimensions: dims, factory: factory)
            timers[k] = t
            return t
        }
        t.recordNanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// One tick's state gauges: every series named here is set; the ones set at the previous
    /// tick and not now go to 0.
    public func setState(_ values: [(label: String, dims: [(String, String)], value: Double)]) {
        guard enabled else { return }
        var now: Set<String> = []
        for v in values {
            gauge(v.label, v.dims)?.record(v.value)
            now.insert(Self.key(v.label, v.dims))
        }
        let stale = lock.withLock { () -> [Gauge] in
            defer { lastSet = now }
            return lastSet.subtracting(now).compactMap { gauges[$0] }
        }
        for g in stale { g.record(0) }
    }
}
