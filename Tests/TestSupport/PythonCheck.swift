import Foundation
import XCTest

/// Cross-checks against independent Python readers (Ops/check_*.py). Ops/setup.sh installs
/// their packages, and Ops/test.sh sets KILN_REQUIRE_PYTHON=1, so in CI a missing package
/// fails the test; elsewhere it is an explicit skip that names what is missing.
public enum PythonCheck {
    /// Runs `python3 script args` (script relative to the repository) and parses its JSON stdout.
    public static func run(_ script: String, _ args: [String], modules: [String]) throws -> [String: Any] {
        let probe = try? python(["-c", "import " + modules.joined(separator: ", ")])
        guard let probe, probe.status == 0 else {
            let why = "python3 with \(modules.joined(separator: ", ")) is not available (run Ops/setup.sh)"
            if ProcessInfo.processInfo.environment["KILN_REQUIRE_PYTHON"] == "1" {
                throw PythonCheckError(description: why + "; KILN_REQUIRE_PYTHON=1 requires it")
            }
            throw XCTSkip(why)
        }
        let result = try python([Paths.repoRoot.appendingPathComponent(script).path] + args)
        guard result.status == 0 else {
            throw PythonCheckError(description: "\(script) failed (\(result.status)): \(result.stderr)")
        }
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw PythonCheckError(description: "\(script) printed no JSON object")
        }
        return object
    }

    private static func python(_ arguments: [String]) throws -> ProcessRun {
        try ProcessRun.run(URL(fileURLWithPath: "/usr/bin/env"), ["python3"] + arguments, timeout: 3600)
    }

    /// The peer venv (Ops/setup-peers.sh: transformers, compressed-tensors). CI's Ops/setup.sh does
    /// not make it, so its checks skip when it is absent, KILN_REQUIRE_PYTHON=1 or not.
    public static let peerPython = URL(fileURLWithPath: NSHomeDirectory())
        .appendingPathComponent(".cache/kiln/venv-peer/bin/python")

    /// Skips the test (naming `what`) unless the peer venv exists.
    public static func requirePeer(_ what: String) throws {
        guard FileManager.default.isExecutableFile(atPath: peerPython.path) else {
            throw XCTSkip("\(peerPython.path) not found (Ops/setup-peers.sh makes it): \(what) skipped")
        }
    }

    /// Runs the peer venv's python on `script args` (script relative to the repository) offline
    /// (HF_HUB_OFFLINE=1) and returns its JSON report; a non-zero exit fails the test with the end
    /// of its stderr. Skips as `requirePeer`.
    public static func runPeer(
        _ script: String, _ args: [String], skipping what: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> [String: Any] {
        try requirePeer(what)
        let r = try ProcessRun.run(
            peerPython, [Paths.repoRoot.appendingPathComponent(script).path] + args, env: ["HF_HUB_OFFLINE": "1"],
            timeout: 3600)
        let err = String(r.stderr.suffix(2000))
        let report = try XCTUnwrap(
            try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
            "no JSON (status \(r.status)): \(err)", file: file, line: line)
        XCTAssertEqual(r.status, 0, err, file: file, line: line)
        return report
    }
}

public struct PythonCheckError: Error, CustomStringConvertible {
    public let description: String
}
