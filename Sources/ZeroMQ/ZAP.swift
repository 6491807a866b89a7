import CZeroMQ
import Foundation

/// A ZAP (ZeroMQ RFC 27) handler that admits CURVE clients whose public key is
/// in an allow-list. It runs on its own thread, bound to
/// inproc://zeromq.zap.01 of one context; every CURVE server socket of that
/// context consults it during the handshake. Only one can run per context.
///
/// NULL and PLAIN mechanisms are denied unless `allowNullMechanism` is set
/// (libzmq only asks about NULL when the socket has a ZAP domain).
///
/// Each denial goes to `log` (the Z85 key and the peer's address), rate-limited per
/// key: a refused client retries its handshake for as long as it runs.
public final class ZAPAuthenticator: @unchecked Sendable {  // mutable state lives in `state`, under its lock
    public static let endpoint = "inproc://zeromq.zap.01"

    private let state: State
    private let finished = DispatchSemaphore(value: 0)

    final class State: @unchecked Sendable {
        let lock = NSLock()
        var allowed: Set<String> = []
        var allowNull = false
        var domains: Set<String>? = nil
        var stop = false
        /// stop() was called (it waits for the thread once; later calls return at once).
        var stopCalled = false
        var decisions: [(key: String, allowed: Bool)] = []

        func with<R>(_ body: (State) -> R) -> R {
            lock.lock()
            defer { lock.unlock() }
            return body(self)
        }
    }

    /// Starts the handler thread. Throws if another handler is already bound
    /// in this context (EADDRINUSE).
    /// - Parameters:
    ///   - allowedKeys: Z85 public keys admitted.
    ///   - domains: if set, requests for other ZAP domains are denied.
    ///   - log: where denials are reported (called on the handler's thread).
    ///   - limiter: how often they are reported.
    public init(
        context: ZMQContext, allowedKeys: Set<String> = [], domains: Set<String>? = nil,
        allowNullMechanism: Bool = false, log: (@Sendable (String) -> Void)? = nil,
        limiter: LogLimiter = LogLimiter(burst: 3, intervalMs: 30_000)
    ) throws {
        let socket = try context.socket(.rep)
        try socket.bind(Self.endpoint)
        state = State()
        state.allowed = allowedKeys
        state.domains = domains
        state.allowNull = allowNullMechanism
        let state = self.state
        let finished = self.finished
        let thread = Thread {
            Self.serve(socket: socket, state: state, log: log, limiter: limiter)
            socket.close()
            finished.signal()
        }
        thread.name = "kiln.zap"
        thread.start()
    }

    deinit { stop() }

    /// Stops the handler and waits for its thread to exit.
    public func stop() {
        let first = state.with { s -> Bool in
            defer {
                s.stopCalled = true
                s.stop = true
            }
            return !s.stopCalled
        }
        if first { finished.wait() }
    }

    public func allow(_ publicKey: String) { state.with { _ = $0.allowed.insert(publicKey) } }
    public func revoke(_ publicKey: String) { state.with { _ = $0.allowed.remove(publicKey) } }
    public var allowedKeys: Set<String> { state.with { $0.allowed } }

    /// The latest decisions (up to 1024; Z85 key or "mechanism:NAME", allowed?), for logs and tests.
    public var decisions: [(key: String, allowed: Bool)] { state.with { $0.decisions } }

    private static func serve(socket: ZMQSocket, state: State, log: (@Sendable (String) -> Void)?, limiter: LogLimiter)
    {
        var limiter = limiter
        defer { report(limiter.summaries(nowMs: nowMs(), force: true), log) }
        while !state.with({ $0.stop }) {
            report(limiter.summaries(nowMs: nowMs()), log)
            guard let frames = try? socket.receiveMultipart(timeout: 50) else { continue }
            // Request: version, request id, domain, address, routing id, mechanism, credentials...
            guard frames.count >= 6 else {
                // Not a ZAP request; a REP socket must still answer.
                _ = try? socket.send([
                    Data("1.0".utf8), Data(), Data("500".utf8), Data("malformed ZAP request".utf8), Data(), Data(),
                ])
                continue
            }
            let version = String(decoding: frames[0], as: UTF8.self)
            let requestID = frames[1]
            let domain = String(decoding: frames[2], as: UTF8.self)
            let mechanism = String(decoding: frames[5], as: UTF8.self)
            var status = "400"
            var text = "denied"
            var user = ""
            var subject = "mechanism:\(mechanism)"
            if version != "1.0" {
                status = "500"
                text = "unsupported ZAP version"
            } else {
                state.with { s in
                    if let d = s.domains, !d.contains(domain) {
                        text = "unknown domain"
                        return
                    }
                    switch mechanism {
                    case "CURVE":
                        guard frames.count >= 7, frames[6].count == 32, let key = Z85.encode(frames[6]) else {
                            text = "bad CURVE credentials"
                            return
                        }
                        subject = key
                        if s.allowed.contains(key) {
                            status = "200"
                            text = "OK"
                            user = key
                        } else {
                            text = "key not allowed"
                        }
                    case "NULL":
                        if s.allowNull {
                            status = "200"
                            text = "OK"
                        }
                    default:
                        text = "mechanism not allowed"
                    }
                }
            }
            state.with { s in
                // Bounded: a refused peer retries for as long as it runs.
                if s.decisions.count >= 1024 { s.decisions.removeFirst(512) }
                s.decisions.append((subject, status == "200"))
            }
            if status != "200", let log {
                // The address frame is the peer's IP (empty for inproc).
                let address = String(decoding: frames[3], as: UTF8.self)
                let from = address.isEmpty ? "" : " from \(address)"
                if limiter.admit(subject, nowMs: nowMs()) {
                    let what = subject.hasPrefix("mechanism:") ? "a \(mechanism) client" : "CURVE key \(subject)"
                    log("ZAP denied \(what)\(from): \(text)")
                }
            }
            _ = try? socket.send([
                Data("1.0".utf8), requestID, Data(status.utf8), Data(text.utf8), Data(user.utf8), Data(),
            ])
        }
    }

    private static func report(_ summaries: [(key: String, suppressed: Int)], _ log: (@Sendable (String) -> Void)?) {
        guard let log else { return }
        for (key, n) in summaries {
            let what = key.hasPrefix("mechanism:") ? "\(key.dropFirst("mechanism:".count)) clients" : "CURVE key \(key)"
            log("ZAP denied \(what) \(n) more time\(n == 1 ? "" : "s") (repeats suppressed)")
        }
    }

    static func nowMs() -> Int64 { Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000) }
}
