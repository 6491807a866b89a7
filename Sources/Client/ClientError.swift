import Foundation
import KilnProtocol

/// Why a request to the coordinator did not get a usable answer. Every case
/// names the endpoint so the user knows which process to look at.
public enum ClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Nothing came back in time (the coordinator is down, or the endpoint is wrong).
    case noAnswer(endpoint: String, timeoutMs: Int)
    /// The coordinator answered with a kiln.v1.Error.
    case coordinator(endpoint: String, error: Kiln_V1_Error)
    /// The coordinator answered with another kind of message than the request calls for.
    case unexpectedReply(endpoint: String, expected: String, got: String)
    /// A frame from the coordinator failed validation (the framing layer's explanation).
    case malformedReply(endpoint: String, reason: String)
    /// The endpoint string cannot be used (or a publish endpoint cannot be derived from it).
    case badEndpoint(String, reason: String)
    /// A CURVE key is not usable (which key, and why).
    case badKey(String)
    /// The job is not known to the coordinator.
    case unknownJob(endpoint: String, jobID: String)
    /// The coordinator's ZAP handler denied this client's CURVE public key (`ephemeral`:
    /// the key was made for this run, so it can never be on the allow-list).
    case refusedKey(endpoint: String, publicKey: String, ephemeral: Bool)
    /// Nothing accepts connections at the endpoint.
    case unreachable(endpoint: String)
    /// A peer answered but the handshake failed (`hint` says what to check).
    case handshakeFailed(endpoint: String, hint: String)

    public var description: String {
        switch self {
        case let .noAnswer(endpoint, ms):
            let time = ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
            return "no answer from \(endpoint) within \(time): is `kiln coordinator` running there?"
        case let .coordinator(endpoint, error):
            let field = error.field.isEmpty ? "" : " (field \(error.field))"
            return "coordinator at \(endpoint): \(error.message.isEmpty ? "\(error.code)" : error.message)\(field)"
        case let .unexpectedReply(endpoint, expected, got):
            return "coordinator at \(endpoint) answered \(got) to a request expecting \(expected)"
        case let .malformedReply(endpoint, reason):
            return "malformed reply from \(endpoint): \(reason)"
        case let .badEndpoint(endpoint, reason):
            return "endpoint \"\(endpoint)\": \(reason)"
        case let .badKey(why):
            return why
        case let .unknownJob(endpoint, jobID):
            return "job \(jobID) is not known to the coordinator at \(endpoint)"
        case let .refusedKey(endpoint, key, ephemeral):
            if ephemeral {
                return
                    "the coordinator at \(endpoint) refused this CURVE key (a fresh one, made because no --curve-secret was "
                    + "given): make a key pair with `kiln keygen NAME`, pass --curve-secret NAME.secret, and ask the "
                    + "coordinator's operator to add NAME.pub to --allow-keys"
            }
            return
                "the coordinator at \(endpoint) refused this CURVE key (ask its operator to add \(key) to --allow-keys)"
        case let .unreachable(endpoint):
            return "no coordinator answers at \(endpoint) (is `kiln coordinator` running there?)"
        case let .handshakeFailed(endpoint, hint):
            return "the coordinator at \(endpoint) did not complete the connection handshake: \(hint)"
        }
    }
}
