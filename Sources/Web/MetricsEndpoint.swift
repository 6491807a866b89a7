import Foundation
import Hummingbird
import Logging
import Prometheus

/// A process's Prometheus registry and the swift-metrics factory that fills it, with
/// buckets fit for Kiln's series (tasks last seconds to tens of minutes; an fsync
/// milliseconds).
public struct MetricsRegistry: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let factory: PrometheusMetricsFactory

    public init() {
        registry = PrometheusCollectorRegistry()
        var f = PrometheusMetricsFactory(registry: registry)
        let taskBuckets: [Duration] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600].map {
            .milliseconds(Int64($0 * 1000))
        }
        f.durationHistogramBuckets["kiln_task_duration_seconds"] = taskBuckets
        f.durationHistogramBuckets["kiln_worker_task_duration_seconds"] = taskBuckets
        f.durationHistogramBuckets["kiln_result_fsync_seconds"] = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
        ].map { .microseconds(Int64($0 * 1_000_000)) }
        factory = f
    }

    /// The Prometheus text exposition of every series so far.
    public func exposition() -> String { registry.emitToString() }

    /// GET /metrics on `router`.
    public func route(_ router: Router<BasicRequestContext>) {
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
    }
}

extension Router<BasicRequestContext> {
    /// A router whose every route needs `token` when one is given (BearerAuth).
    public static func kiln(token: String?) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: BearerAuth(token: token))
        return router
    }
}

/// `kiln worker --metrics`: /metrics alone.
public enum MetricsServer {
    public static func start(
        _ bind: HTTPBind, registry: MetricsRegistry, token: String?, logger: Logging.Logger
    ) throws -> HTTPService {
        let router = Router<BasicRequestContext>.kiln(token: token)
        registry.route(router)
        return try HTTPService.start(bind, router: router, logger: logger)
    }
}
