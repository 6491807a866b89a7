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
        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            box.append("\(event.level) \(event.message) \(fields)")
        }
    }
}
