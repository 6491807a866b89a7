import Foundation
import XCTest

/// Runs a program to its end (killed after `timeout` seconds) and captures its output.
struct Proc {
    let status: Int32
    let stdout: String
    let stderr: String
    let timedOut: Bool

    static func run(_ executable: URL, _ args: [String], env: [String: String] = [:], timeout: TimeInterval = 60) throws -> Proc {
        let p = Process()
        p.executableURL = executable
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let fired = Fired()
        let killer = DispatchWorkItem { if p.isRunning { fired.set(); p.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        // Read both pipes concurrently so a chatty child never blocks on a full pipe.
        let outBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { outBox.set(out.fileHandleForReading.readDataToEndOfFile()); group.leave() }
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let outData = outBox.value
        p.waitUntilExit()
        killer.cancel()
        let timedOut = fired.value
        return Proc(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                    stderr: String(decoding: errData, as: UTF8.self), timedOut: timedOut)
    }

    var summary: String { "exit \(status)\(timedOut ? " (timed out)" : "")\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }

    func json() throws -> [String: Any] {
        guard let o = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any] else {
            throw NSError(domain: "Proc", code: 1, userInfo: [NSLocalizedDescriptionKey: "not a JSON object: \(stdout)"])
        }
        return o
    }
}

/// Whether the timeout killed the process (set on a dispatch queue, read after exit).
final class Fired: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    func set() { lock.withLock { fired = true } }
    var value: Bool { lock.withLock { fired } }
}

/// Bytes handed from the reader thread to the caller.
final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.withLock { data = d } }
    var value: Data { lock.withLock { data } }
}
