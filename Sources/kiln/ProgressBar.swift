import Foundation

/// A one-line progress bar on stderr when stderr is a terminal; silent otherwise
/// (scripts read the result, not the animation).
final class ProgressBar {
    let total: Int
    let label: String
    let enabled: Bool
    private let start = Date()

    init(total: Int, label: String, enabled: Bool = isatty(STDERR_FILENO) != 0) {
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled
    }

    func update(_ done: Int, detail: String = "") {
        guard enabled else { return }
        let width = 30
        let filled = min(width, done * width / total)
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let line = String(
            format: "\r%@ [%@] %d/%d  %@  %.0fs, eta %.0fs\u{1B}[K", label, bar, done, total, detail, elapsed, eta)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
