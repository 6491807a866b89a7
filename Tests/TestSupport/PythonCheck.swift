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
            throw PythonCheckError(
                description: "\(script) failed (\(result.status)): \(String(decoding: result.stderr, as: UTF8.self))")
        }
        guard let object = try JSONSerialization.jsonObject(with: result.stdout) as? [String: Any] else {
            throw PythonCheckError(description: "\(script) printed no JSON object")
        }
        return object
    }

    /// Output goes through files, not pipes, so a chatty script cannot block on a full pipe.
    private static func python(_ arguments: [String]) throws -> (status: Int32, stdout: Data, stderr: Data) {
        let tmp = FileManager.default.temporaryDirectory
        let outURL = tmp.appendingPathComponent("kiln-py-\(UUID().uuidString).out")
        let errURL = tmp.appendingPathComponent("kiln-py-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let outHandle = try FileHandle(forWritingTo: outURL)
        let errHandle = try FileHandle(forWritingTo: errURL)
        process.standardOutput = outHandle
        process.standardError = errHandle
        try process.run()
        process.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        return (process.terminationStatus, try Data(contentsOf: outURL), try Data(contentsOf: errURL))
    }
}

public struct PythonCheckError: Error, CustomStringConvertible {
    public let description: String
}
