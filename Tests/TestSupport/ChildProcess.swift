import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A program run to its end (killed after `timeout` seconds), with its output. Output goes
/// through files, not pipes, so a chatty child can never block on a full pipe.
public struct ProcessRun: Sendable {
    public let status: Int32
    /// The process died of a signal (`status` is then 128 + the signal).
    public let signalled: Bool
    public let timedOut: Bool
    public let stdout: String
    public let stderr: String

    public static func run(
        _ executable: URL, _ args: [String], env: [String: String] = [:], timeout: TimeInterval = 120
    ) throws -> ProcessRun {
        let out = try OutputFile()
        let err = try OutputFile()
        let p = Process()
        p.executableURL = executable
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = out.handle
        p.standardError = err.handle
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        let exit = waitForExit(p) {
            guard !timedOut, Date() > deadline else { return }
            timedOut = true
            kill(p.processIdentifier, SIGKILL)
        }
        return ProcessRun(
            status: exit.status, signalled: exit.signalled, timedOut: timedOut, stdout: try out.text(),
            stderr: try err.text())
    }

    /// Runs the built `kiln`; skips the test when it is not built.
    public static func kiln(
        _ args: [String], env: [String: String] = [:], timeout: TimeInterval = 300
    ) throws
        -> ProcessRun
    {
        try run(try builtKiln(), args, env: env, timeout: timeout)
    }

    public var summary: String {
        "exit \(status)\(timedOut ? " (timed out)" : "")\nstdout:\n\(stdout)\nstderr:\n\(stderr)"
    }

    public func json() throws -> [String: Any] {
        guard let o = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any] else {
            throw ChildProcessError(description: "not a JSON object: \(stdout)")
        }
        return o
    }

    /// The exit status, reaping the child here if Foundation has not: its waitUntilExit was
    /// seen to hang on Linux for a shell that leaves daemons behind (local.sh start).
    /// `poll` runs between checks (a timeout's kill).
    public static func waitForExit(_ p: Process, poll: () -> Void = {}) -> (status: Int32, signalled: Bool) {
        let pid = p.processIdentifier
        while true {
            if !p.isRunning {
                let signalled = p.terminationReason == .uncaughtSignal
                return (signalled ? 128 + p.terminationStatus : p.terminationStatus, signalled)
            }
            var raw: Int32 = 0
            let r = waitpid(pid, &raw, WNOHANG)
            if r == pid {
                let signal = raw & 0x7f
                return signal == 0 ? ((raw >> 8) & 0xff, false) : (128 + signal, true)
            }
            poll()
            usleep(10_000)
        }
    }
}

/// A program left running while the test talks to it; its output goes to `log`.
public final class Background {
    public let process = Process()
    public let log: URL

    public init(_ executable: URL, _ args: [String], env: [String: String] = [:], log: URL) throws {
        self.log = log
        process.executableURL = executable
        process.arguments = args
        process.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let h = try FileHandle(forWritingTo: log)
        process.standardOutput = h
        process.standardError = h
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// The built `kiln`; skips the test when it is not built.
    public convenience init(kiln args: [String], env: [String: String] = [:], log: URL) throws {
        try self.init(try builtKiln(), args, env: env, log: log)
    }

    public var pid: Int32 { process.processIdentifier }
    public var text: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    public func signal(_ sig: Int32) { kill(pid, sig) }

    /// Seconds from `sig` until the process has exited (nil if it still runs after `limit`).
    public func secondsToExit(after sig: Int32, limit: Double) -> Double? {
        let t0 = Date()
        guard process.isRunning else { return 0 }
        kill(pid, sig)
        while Date().timeIntervalSince(t0) < limit {
            if !process.isRunning { return Date().timeIntervalSince(t0) }
            usleep(5_000)
        }
        return nil
    }

    /// SIGTERM (after SIGCONT, in case the test stopped it), SIGKILL after 5 s; then reaped.
    public func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGCONT)
        if secondsToExit(after: SIGTERM, limit: 5) == nil { kill(pid, SIGKILL) }
        _ = ProcessRun.waitForExit(process)
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public let description: String
}

private func builtKiln() throws -> URL {
    let bin = Paths.kilnBinary
    guard FileManager.default.isExecutableFile(atPath: bin.path) else {
        throw XCTSkip("kiln binary not built at \(bin.path); run `swift build -c release` first")
    }
    return bin
}

/// A temporary file that receives a child's output stream.
private struct OutputFile {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-proc-\(UUID().uuidString)")
    let handle: FileHandle

    init() throws {
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        handle = try FileHandle(forWritingTo: url)
    }

    func text() throws -> String {
        try handle.close()
        defer { try? FileManager.default.removeItem(at: url) }
        return String(decoding: try Data(contentsOf: url), as: UTF8.self)
    }
}
