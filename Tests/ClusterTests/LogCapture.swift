import Foundation
import Logging
import TestSupport
import XCTest

/// Every line a Logger writes, kept for assertions (swift-log handler).
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []

    var lines: [String] { lock.withLock { stored } }
    func count(_ needle: String) -> Int { lines.filter { $0.contains(needle) }.count }
    func append(_ line: String) { lock.withLock { stored.append(line) } }

    func logger(_ label: String) -> Logger {
        Logger(label: label, factory: { _ in Handler(box: self) })
    }

    struct Handler: LogHandler {
        let box: CapturedLog
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(
            level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
            file: String, function: String, line: UInt
        ) {
            let all = self.metadata.merging(metadata ?? [:]) { $1 }
            box.append(
                "\(level) \(message) \(all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))"
            )
        }
    }
}

/// A `kiln` process (the built binary) whose output goes to a file, read while it runs.
final class KilnProcess {
    let process = Process()
    let log: URL

    init(_ args: [String], log: URL) throws {
        guard FileManager.default.isExecutableFile(atPath: Paths.kilnBinary.path) else {
            throw XCTSkip("kiln binary not built at \(Paths.kilnBinary.path); run `swift build -c release` first")
        }
        self.log = log
        process.executableURL = Paths.kilnBinary
        process.arguments = args
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let h = try FileHandle(forWritingTo: log)
        process.standardOutput = h
        process.standardError = h
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var text: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func signal(_ sig: Int32) { kill(pid, sig) }

    /// Seconds from `sig` until the process has exited (nil if it still runs after `limit`).
    func secondsToExit(after sig: Int32, limit: Double) -> Double? {
        let t0 = Date()
        kill(pid, sig)
        while Date().timeIntervalSince(t0) < limit {
            if !process.isRunning { return Date().timeIntervalSince(t0) }
            usleep(5_000)
        }
        return nil
    }

    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGCONT)
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}
