import Foundation
import XCTest

/// Runs a program to its end (killed after `timeout` seconds) and captures its output.
struct Proc {
    let status: Int32
    let stdout: String
    let stderr: String
    let timedOut: Bool

    static func run(
        _ executable: URL, _ args: [String], env: [String: String] = [:], timeout: TimeInterval = 60
    ) throws -> Proc {
        let p = Process()
        p.executableURL = executable
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let fired = Fired()
        let killer = DispatchWorkItem {
            if p.isRunning {
                fired.set()
                p.terminate()
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        // Read both pipes concurrently so a chatty child never blocks on a full pipe.
        let outBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            outBox.set(out.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let outData = outBox.value
        let status = waitForExit(p)
        killer.cancel()
        let timedOut = fired.value
        return Proc(
            status: status, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self), timedOut: timedOut)
    }

    /// The exit status. Foundation's waitUntilExit was seen to hang on Linux for a
    /// shell that leaves daemons behind (local.sh start): the child stayed a
    /// zombie, never reaped. So reap it here, whichever of us gets there first.
    static func waitForExit(_ p: Process) -> Int32 {
        let pid = p.processIdentifier
        while true {
            if !p.isRunning { return p.terminationStatus }
            var raw: Int32 = 0
            let r = waitpid(pid, &raw, WNOHANG)
            if r == pid {
                let signal = raw & 0x7f
                return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
            }
            if r < 0 && errno == ECHILD {
                // Foundation reaped it; its status is on the way.
                while p.isRunning { usleep(10_000) }
                return p.terminationStatus
            }
            usleep(10_000)
        }
    }

    var summary: String { "exit \(status)\(timedOut ? " (timed out)" : "")\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }

    func json() throws -> [String: Any] {
        guard let o = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any] else {
            throw NSError(
                domain: "Proc", code: 1, userInfo: [NSLocalizedDescriptionKey: "not a JSON object: \(stdout)"])
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
