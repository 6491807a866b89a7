import Foundation
import TestSupport
import XCTest

/// The package's layering as docs/ARCHITECTURE.md draws it: Package.swift declares exactly the
/// targets each target's sources import, and the edges the design forbids are absent.
final class PackageLayeringTests: XCTestCase {
    /// Modules of the toolchain and the system, which Package.swift does not list.
    static let external = [
        "Foundation", "FoundationEssentials", "_Builtin_intrinsics", "Dispatch", "Glibc", "Darwin", "Synchronization",
        "XCTest",
    ]

    func declaredDependencies() throws -> [String: Set<String>] {
        let text = try String(contentsOf: Paths.repoRoot.appendingPathComponent("Package.swift"), encoding: .utf8)
        let pattern = #/\.(?:target|executableTarget|testTarget)\(\s*name: "(\w+)",?\s*(?:dependencies: \[([^\]]*)\])?/#
        var result: [String: Set<String>] = [:]
        for match in text.matches(of: pattern) {
            // `.product(name: "Logging", package: "swift-log")`: keep the product, drop the package.
            let list = (match.2.map(String.init) ?? "").replacing(#/package: "[^"]*"/#, with: "")
            result[String(match.1)] = Set(list.matches(of: #/"([\w.]+)"/#).map { String($0.1) })
        }
        return result
    }

    func importedModules(_ directory: URL) throws -> Set<String> {
        var modules = Set<String>()
        let files = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)
        while let file = files?.nextObject() as? URL {
            guard file.pathExtension == "swift" else { continue }
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in text.matches(of: #/(?m)^(?:@testable |@_implementationOnly )?import (\w+)/#) {
                modules.insert(String(match.1))
            }
        }
        return modules.subtracting(Self.external)
    }

    func testPackageDeclaresExactlyWhatEachTargetImports() throws {
        let declared = try declaredDependencies()
        XCTAssertGreaterThan(declared.count, 20, "Package.swift was not parsed")
        for (target, dependencies) in declared.sorted(by: { $0.key < $1.key }) {
            let directory =
                target == "TestSupport"
                ? Paths.repoRoot.appendingPathComponent("Tests/TestSupport")
                : Paths.repoRoot.appendingPathComponent(target.hasSuffix("Tests") ? "Tests" : "Sources")
                    .appendingPathComponent(target)
            guard FileManager.default.fileExists(atPath: directory.path) else { continue }
            let imported = try importedModules(directory)
            // System-library shims (CBLAS, CZeroMQ) are imported as modules too.
            XCTAssertEqual(
                imported.sorted(), dependencies.sorted(),
                "\(target): imports \(imported.subtracting(dependencies).sorted()) undeclared, declares "
                    + "\(dependencies.subtracting(imported).sorted()) unused")
        }
    }

    func testForbiddenEdgesAreAbsent() throws {
        let declared = try declaredDependencies()
        XCTAssertFalse(declared["Coordinator", default: []].contains("Worker"), "only Embedded joins the two")
        XCTAssertTrue(
            declared["Web", default: []].isDisjoint(with: ["Coordinator", "Worker", "Jobs"]),
            "the dashboard is a client of the coordinator, not part of it")
        XCTAssertFalse(declared["Worker", default: []].contains("Coordinator"), "only Embedded joins the two")
        for pure in ["Tensor", "Quantization", "Calibration", "Tokenizers", "ModelIO", "Models", "Jobs"] {
            let network = declared[pure, default: []].intersection([
                "ZeroMQ", "KilnProtocol", "Cluster", "SwiftProtobuf",
            ])
            XCTAssertEqual(network, [], "\(pure) must not reach the network layers")
        }
        XCTAssertEqual(declared["Quantization"], ["Tensor"], "Quantization is pure math on Tensor")
    }
}
