import Foundation

/// A Kiln HTTP port (`kiln coordinator --http`, `kiln worker --metrics`): where it listens
/// and who may use it.
///
/// Secure by default, as the ZeroMQ ports are: a loopback address is served as it is; any
/// other needs the process's CURVE keys or `--insecure` (the same rule as the coordinator's
/// sockets) and a bearer token, checked on every request.
public struct HTTPBind: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    /// 0: any free port (tests).
    public let port: Int
    /// The flag it came from, for errors ("--http").
    public let flag: String

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// "HOST:PORT" ("[::1]:PORT" for IPv6). HOST "localhost" is served as 127.0.0.1.
    public static func parse(_ text: String, flag: String) throws -> HTTPBind {
        let usage = "\(flag) \(text): expected HOST:PORT, e.g. 127.0.0.1:8080 (PORT 1 to 65535)"
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[close...].hasPrefix("]:") else { throw WebError(usage) }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { throw WebError(usage) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { throw WebError(usage) }
        if host == "localhost" { host = "127.0.0.1" }
        return HTTPBind(host: String(host), port: port, flag: flag)
    }

    /// A port flag as the commands take it (`--http`, `--metrics`): HOST:PORT or a bare PORT
    /// (127.0.0.1:PORT), its token file read, and both checked against the process's
    /// security (`check`). Returns the address and the token.
    public static func configure(
        _ text: String, flag: String, tokenFile: String?, secured: Bool, insecure: Bool
    ) throws -> (bind: HTTPBind, token: String?) {
        let bind = try parse(text.allSatisfy(\.isNumber) ? "127.0.0.1:\(text)" : text, flag: flag)
        let tokenFlag = "\(flag)-token-file"
        let token = try tokenFile.map { try BearerToken.read($0, flag: tokenFlag) }
        try bind.check(secured: secured, insecure: insecure, token: token, tokenFlag: tokenFlag)
        return (bind, token)
    }

    public init(host: String, port: Int, flag: String) {
        self.host = host
        self.port = port
        self.flag = flag
    }

    public var isLoopback: Bool { host == "::1" || host.hasPrefix("127.") }

    /// Refuses what would let anyone on the network in: a non-loopback address without the
    /// process's CURVE keys (or --insecure), or without a bearer token.
    public func check(secured: Bool, insecure: Bool, token: String?, tokenFlag: String) throws {
        guard !isLoopback else { return }
        guard secured || insecure else {
            throw WebError(
                "\(flag) \(self): refusing to serve \(host) without CURVE keys, because anyone who can reach it could "
                    + "watch jobs and read the cluster's state; bind 127.0.0.1 (and tunnel), configure CURVE keys, "
                    + "or pass --insecure on a trusted network")
        }
        guard token != nil else {
            throw WebError(
                "\(flag) \(self): a port beyond loopback needs a bearer token: pass \(tokenFlag) FILE "
                    + "(clients send 'Authorization: Bearer <the file's token>')")
        }
    }
}

/// The bearer token of `--http-token-file` / `--metrics-token-file`: one line of 16 to 256
/// printable ASCII characters without spaces.
public enum BearerToken {
    public static func read(_ path: String, flag: String) throws -> String {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw WebError("\(flag) \(path): cannot read the token (\(error.localizedDescription))")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (16...256).contains(token.utf8.count), token.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
            throw WebError(
                "\(flag) \(path): not a bearer token: one line of 16 to 256 printable characters without spaces "
                    + "(make one with: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > \(path))")
        }
        return token
    }
}

public struct WebError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
