import Foundation
import Hummingbird
import Logging

/// The coordinator's web dashboard: the page (HTML, script and style compiled into the
/// binary: no CDN, nothing fetched from elsewhere), the state as JSON, and the event stream.
///
///     GET /             the page
///     GET /api/state    every job's status and the workers (JSON, protobuf field names)
///     GET /api/events   Server-Sent Events: "state" (whole), "update" (one ProgressUpdate,
///                       id = its sequence), "workers", "feed_error"
///     GET /healthz      "ok"
public enum Dashboard {
    /// The dashboard and /metrics on one port.
    public static func start(
        _ bind: HTTPBind, token: String?, registry: MetricsRegistry, feed: DashboardFeed, logger: Logger
    ) throws -> HTTPService {
        let router = Router<BasicRequestContext>.kiln(token: token)
        registry.route(router)
        routes(router, feed: feed)
        return try HTTPService.start(bind, router: router, logger: logger)
    }

    public static func routes(_ router: Router<BasicRequestContext>, feed: DashboardFeed) {
        router.get("/") { _, _ in asset(DashboardPage.html, "text/html; charset=utf-8") }
        router.get("/app.js") { _, _ in asset(DashboardPage.script, "text/javascript; charset=utf-8") }
        router.get("/app.css") { _, _ in asset(DashboardPage.style, "text/css; charset=utf-8") }
        router.get("/healthz") { _, _ in asset("ok\n", "text/plain") }
        router.get("/api/state") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: feed.stateJSON())))
        }
        router.get("/api/events") { _, _ in
            guard let (id, events) = feed.subscribe() else {
                return Response(
                    status: .serviceUnavailable, headers: [.contentType: "text/plain"],
                    body: .init(byteBuffer: ByteBuffer(string: "too many pages follow this coordinator\n")))
            }
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
                body: .init { writer in
                    defer { feed.unsubscribe(id) }
                    for await e in events { try await writer.write(ByteBuffer(string: e)) }
                    try await writer.finish(nil)
                })
        }
    }

    static func asset(_ text: String, _ type: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: type,
                // Only this origin's own script and style: the page never loads anything else.
                .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; style-src 'self'",
            ],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
