import Client
import Coordinator
import Foundation
import Logging
import Web
import ZeroMQ

/// `kiln coordinator --http`: the dashboard and /metrics on one Hummingbird port.
final class WebPort {
    let service: HTTPService
    let feed: DashboardFeed
    let registry: MetricsRegistry
    /// The dashboard's own CURVE key pair when the coordinator uses CURVE (let in by `init`).
    let keys: ZMQCurveKeyPair?

    /// Checks the address against the process's security and binds the port.
    init(bind text: String, tokenFile: String?, secured: Bool, insecure: Bool, flag: String = "--http") throws {
        let (bind, token) = try HTTPBind.configure(
            text, flag: flag, tokenFile: tokenFile, secured: secured, insecure: insecure)
        registry = MetricsRegistry()
        keys = secured ? try ZMQCurveKeyPair.generate() : nil
        feed = DashboardFeed(logger: Logger(label: "kiln.dashboard"))
        service = try Dashboard.start(
            bind, token: token, registry: registry, feed: feed, logger: Logger(label: "kiln.http"))
    }

    /// Points the coordinator's metrics at this port, and lets the dashboard's key in.
    func configure(_ c: inout CoordinatorConfig) {
        c.metricsFactory = registry.factory
        if let keys { c.allowedKeys.insert(keys.publicKey) }
    }

    var url: String {
        let host = service.bind.host.contains(":") ? "[\(service.bind.host)]" : service.bind.host
        return "http://\(host):\(service.port)/"
    }

    /// Starts following the coordinator's feed, as a client of its own sockets.
    func follow(_ coordinator: Coordinator, context: ZMQContext = .shared) {
        let security = keys.flatMap { k in
            coordinator.config.curveSecretKey.flatMap { try? ZMQCurveKeyPair(secretKey: $0) }.map {
                ClientSecurity(serverPublicKey: $0.publicKey, keys: k)
            }
        }
        feed.start(
            DashboardFeed.Connection(
                endpoint: Self.local(coordinator.endpoints.listen),
                publishEndpoint: Self.local(coordinator.endpoints.publish), security: security,
                token: coordinator.token, context: context))
    }

    /// The in-process coordinator is about to stop: the page keeps its last state.
    func finish(_ coordinator: Coordinator) {
        _ = feed.waitFor(sequence: coordinator.publishedSequence(), timeout: 5)
        feed.finish(note: "the job ended; kiln run stopped its coordinator (the page shows its final state)")
    }

    func stop() {
        feed.stop()
        service.stop()
    }

    /// A bound wildcard address, as a client on this host reaches it.
    static func local(_ endpoint: String) -> String {
        for any in ["tcp://0.0.0.0:", "tcp://*:"] where endpoint.hasPrefix(any) {
            return "tcp://127.0.0.1:" + endpoint.dropFirst(any.count)
        }
        return endpoint
    }
}
