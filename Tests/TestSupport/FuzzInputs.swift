import Foundation

extension Paths {
    /// Inputs one fuzz target once crashed on (Ops/fuzz.sh copies them to
    /// Tests/Fixtures/fuzz/<target>/), sorted by name; hidden files skipped.
    public static func fuzzInputs(_ target: String) -> [URL] {
        let dir = fixture("fuzz/\(target)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
    }
}
