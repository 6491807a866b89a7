import Foundation
import TestSupport
import XCTest

/// The committed Sources/KilnProtocol/Generated must be what Ops/gen-protos.sh
/// makes from Protos/ today.
final class GeneratedCodeTests: XCTestCase {
    func testGeneratedCodeIsNotStale() throws {
        let env = ProcessInfo.processInfo.environment
        let fm = FileManager.default
        let protoc = ["/usr/bin/protoc", "/usr/local/bin/protoc"].first { fm.isExecutableFile(atPath: $0) }
        guard protoc != nil else { throw XCTSkip("protoc not installed (apt-get install protobuf-compiler)") }
        let cache =
            env["KILN_TOOLS_CACHE"].map { URL(fileURLWithPath: $0) }
            ?? fm.homeDirectoryForCurrentUser.appendingPathComponent(".cache/kiln/tools")
        let plugin = env["KILN_PROTOC_GEN_SWIFT"] ?? cache.appendingPathComponent("protoc-gen-swift").path
        guard fm.isExecutableFile(atPath: plugin) else {
            throw XCTSkip(
                "protoc-gen-swift not found at \(plugin) (set KILN_PROTOC_GEN_SWIFT or run Ops/gen-protos.sh once)")
        }
        let root = Paths.repoRoot
        let out = Paths.tempDir("kiln-protos")
        defer { try? fm.removeItem(at: out) }
        let p = Process()
        p.executableURL = root.appendingPathComponent("Ops/gen-protos.sh")
        p.arguments = ["--out", out.path]
        var childEnv = env
        childEnv["KILN_PROTOC_GEN_SWIFT"] = plugin
        p.environment = childEnv
        let errPipe = Pipe()
        p.standardError = errPipe
        try p.run()
        let errText = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, errText)

        let committedDir = root.appendingPathComponent("Sources/KilnProtocol/Generated")
        let fresh = try fm.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".pb.swift") }.sorted()
        let committed = try fm.contentsOfDirectory(atPath: committedDir.path).filter { $0.hasSuffix(".pb.swift") }
            .sorted()
        XCTAssertFalse(fresh.isEmpty)
        XCTAssertEqual(fresh, committed, "generated file set differs: run Ops/gen-protos.sh and commit")
        for name in fresh where committed.contains(name) {
            let a = try Data(contentsOf: out.appendingPathComponent(name))
            let b = try Data(contentsOf: committedDir.appendingPathComponent(name))
            XCTAssertEqual(a, b, "\(name) is stale: run Ops/gen-protos.sh and commit")
        }
    }
}
