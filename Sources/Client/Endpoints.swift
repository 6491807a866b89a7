import Foundation

/// Where the coordinator is, and where it publishes progress.
public enum Endpoints {
    /// Used when neither --coordinator nor $KILN_COORDINATOR says otherwise.
    public static let defaultCoordinator = "tcp://127.0.0.1:5555"

    /// --coordinator if given, else $KILN_COORDINATOR if set and non-empty, else the default.
    public static func coordinator(
        explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        if let e = explicit, !e.isEmpty { return e }
        if let e = environment["KILN_COORDINATOR"], !e.isEmpty { return e }
        return defaultCoordinator
    }

    /// The coordinator's PUB endpoint by its convention: the same host, the
    /// listen port + 1. Only tcp:// endpoints have a port to derive from.
    public static func publish(forCoordinator endpoint: String) throws -> String {
        let (host, port) = try tcpHostPort(endpoint)
        guard port < 65535 else {
            throw ClientError.badEndpoint(
                endpoint, reason: "port 65535 leaves no port + 1 for progress; pass --publish")
        }
        return "tcp://\(host):\(port + 1)"
    }

    /// Splits tcp://HOST:PORT (HOST may be a bracketed IPv6 address).
    public static func tcpHostPort(_ endpoint: String) throws -> (host: String, port: Int) {
        let prefix = "tcp://"
        guard endpoint.hasPrefix(prefix) else {
            throw ClientError.badEndpoint(
                endpoint, reason: "not a tcp://HOST:PORT endpoint; pass --publish for the progress endpoint")
        }
        let rest = endpoint.dropFirst(prefix.count)
        guard let colon = rest.lastIndex(of: ":"), colon != rest.startIndex else {
            throw ClientError.badEndpoint(endpoint, reason: "missing :PORT")
        }
        let host = String(rest[..<colon])
        guard let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else {
            throw ClientError.badEndpoint(endpoint, reason: "the port must be a number in 1...65535")
        }
        return (host, port)
    }
}
