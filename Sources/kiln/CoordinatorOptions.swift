import ArgumentParser
import Client
import Foundation

/// How to reach the coordinator (every cluster client command).
struct CoordinatorOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Coordinator endpoint (default: $KILN_COORDINATOR, else \(Endpoints.defaultCoordinator)).",
                               valueName: "endpoint"))
    var coordinator: String?

    @Option(help: ArgumentHelp("File holding the coordinator's CURVE public key, Z85 (default: $KILN_CURVE_SERVER_KEY); none: plain TCP.",
                               valueName: "file"))
    var curveServerKey: String?

    @Option(help: ArgumentHelp("File holding this client's CURVE secret key, Z85 (default: $KILN_CURVE_SECRET; else a fresh pair).",
                               valueName: "file"))
    var curveSecret: String?

    @Option(help: "Seconds to wait for each answer from the coordinator.")
    var timeout = 5.0

    var endpoint: String { Endpoints.coordinator(explicit: coordinator) }

    func makeClient() throws -> CoordinatorClient {
        guard timeout > 0, timeout.isFinite else { throw UserError("--timeout \(timeout) must be a positive number of seconds") }
        let env = ProcessInfo.processInfo.environment
        // Key files, as `kiln worker` takes them.
        let serverFile = curveServerKey ?? env["KILN_CURVE_SERVER_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let secretFile = curveSecret ?? env["KILN_CURVE_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        if secretFile != nil && serverFile == nil {
            throw UserError("--curve-secret needs --curve-server-key (the coordinator's public key)")
        }
        let security = try serverFile.map { file in
            try ClientSecurity(serverPublicKey: readKeyFile(file, what: "--curve-server-key")[0],
                               secretKey: secretFile.map { try readKeyFile($0, what: "--curve-secret")[0] })
        }
        return try CoordinatorClient(endpoint: endpoint, timeoutMs: Int((timeout * 1000).rounded()), security: security)
    }
}

/// Lines of a key file (blank lines and # comments skipped); each must be a 40-character Z85 key.
func readKeyFile(_ path: String, what: String) throws -> [String] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw UserError("\(what) \(path): cannot read the file") }
    let keys = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    guard !keys.isEmpty else { throw UserError("\(what) \(path): no key in the file") }
    for (i, k) in keys.enumerated() where k.utf8.count != 40 {
        throw UserError("\(what) \(path): line \(i + 1) is not a 40-character Z85 CURVE key")
    }
    return keys
}
