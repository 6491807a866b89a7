import ArgumentParser
import Client
import Coordinator
import Foundation
import ZeroMQ

/// How to reach the coordinator (every cluster client command).
struct CoordinatorOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Coordinator endpoint (default: $KILN_COORDINATOR, else \(Endpoints.defaultCoordinator)).",
            valueName: "endpoint"))
    var coordinator: String?

    @Option(
        help: ArgumentHelp(
            "File holding the coordinator's CURVE public key, Z85 (default: $KILN_CURVE_SERVER_KEY); none: plain TCP.",
            valueName: "file"))
    var curveServerKey: String?

    @Option(
        help: ArgumentHelp(
            "File holding this client's CURVE secret key, Z85 (default: $KILN_CURVE_SECRET; else a fresh pair).",
            valueName: "file"))
    var curveSecret: String?

    @OptionGroup var token: TokenFileOption

    @Option(help: "Seconds to wait for each answer from the coordinator.")
    var timeout = 5.0

    var endpoint: String { Endpoints.coordinator(explicit: coordinator) }

    func makeClient() throws -> CoordinatorClient {
        guard timeout > 0, timeout.isFinite else {
            throw UserError("--timeout \(timeout) must be a positive number of seconds")
        }
        let env = ProcessInfo.processInfo.environment
        // Key files, as `kiln worker` takes them.
        let serverFile = curveServerKey ?? env["KILN_CURVE_SERVER_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let secretFile = curveSecret ?? env["KILN_CURVE_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        if secretFile != nil && serverFile == nil {
            throw UserError("--curve-secret needs --curve-server-key (the coordinator's public key)")
        }
        let security = try serverFile.map { file in
            let server = try readKeyFile(file, what: "--curve-server-key", kind: .publicKey)[0]
            var security =
                try secretFile.map {
                    ClientSecurity(serverPublicKey: server, keys: try readSecretKey($0, what: "--curve-secret"))
                } ?? ClientSecurity(serverPublicKey: server, secretKey: nil)
            security.source = "--curve-server-key \(file)" + (secretFile.map { ", --curve-secret \($0)" } ?? "")
            return security
        }
        return try CoordinatorClient(
            endpoint: endpoint, timeoutMs: Int((timeout * 1000).rounded()), security: security,
            token: try token.read(environment: env))
    }
}

/// Which half of a key pair a file should hold. `kiln keygen` heads each file with a
/// comment saying which it is, so a swapped pair is caught here and not as a refusal later.
enum KeyKind {
    case publicKey, secretKey

    var marker: String { self == .publicKey ? "# kiln CURVE public key" : "# kiln CURVE secret key" }
    var other: KeyKind { self == .publicKey ? .secretKey : .publicKey }
}

/// Lines of a key file (blank lines and # comments skipped); each must be a Z85 CURVE key
/// (40 characters of RFC 32's alphabet). Errors name the flag, the file and the line.
func readKeyFile(_ path: String, what: String, kind: KeyKind) throws -> [String] {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
        throw UserError("\(what) \(path): cannot read the file (\(error.localizedDescription))")
    }
    let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        .map { $0.trimmingCharacters(in: .whitespaces) }
    if lines.contains(where: { $0.hasPrefix(kind.other.marker) }) {
        let holds =
            kind == .publicKey
            ? "a secret key; pass the .pub file (keep the .secret on its own host)"
            : "a public key; pass the .secret file written beside it by `kiln keygen`"
        throw UserError("\(what) \(path): the file holds \(holds)")
    }
    var keys: [String] = []
    for (i, line) in lines.enumerated() where !line.isEmpty && !line.hasPrefix("#") {
        if let why = Z85.keyProblem(line) {
            throw UserError(
                "\(what) \(path): line \(i + 1) is not a Z85 CURVE key: \(why) (make keys with `kiln keygen NAME`)")
        }
        keys.append(line)
    }
    guard !keys.isEmpty else {
        throw UserError("\(what) \(path): no key in the file (make one with `kiln keygen NAME`)")
    }
    return keys
}

/// The key pair of a secret key file (its public half derived by libzmq).
func readSecretKey(_ path: String, what: String) throws -> ZMQCurveKeyPair {
    let keys = try readKeyFile(path, what: what, kind: .secretKey)
    guard keys.count == 1 else {
        throw UserError("\(what) \(path): holds \(keys.count) keys; a secret key file holds one")
    }
    do { return try ZMQCurveKeyPair(secretKey: keys[0]) } catch {
        throw UserError("\(what) \(path): the key is not usable as a CURVE secret key: \(error)")
    }
}

/// --token-file, as the client commands and `kiln worker` take it.
struct TokenFileOption: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "File holding the coordinator's token, its DATA_DIR/token (default: $KILN_TOKEN_FILE); "
                + "a coordinator without CURVE keys requires it.", valueName: "file"))
    var tokenFile: String?

    /// The coordinator's token from --token-file, else $KILN_TOKEN_FILE; nil if neither is set.
    func read(environment: [String: String]) throws -> String? {
        let (path, what): (String, String)
        if let explicit = tokenFile {
            (path, what) = (explicit, "--token-file")
        } else if let env = environment["KILN_TOKEN_FILE"], !env.isEmpty {
            (path, what) = (env, "KILN_TOKEN_FILE")
        } else {
            return nil
        }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw UserError(
                "\(what) \(path): cannot read the token (\(error.localizedDescription)); it is the coordinator's "
                    + "DATA_DIR/token, readable by the user who runs the coordinator")
        }
        guard let token = LocalToken.parse(text) else {
            throw UserError(
                "\(what) \(path): not a coordinator token (64 hex digits); pass the coordinator's DATA_DIR/token")
        }
        return token
    }
}
