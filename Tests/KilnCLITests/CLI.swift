import Foundation
import TestSupport
import XCTest

/// Runs the built `kiln` binary and captures its output and exit status.
struct KilnRun {
    let status: Int32
    let stdout: String
    let stderr: String

    static func run(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> KilnRun {
        let bin = Paths.kilnBinary
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            throw XCTSkip("kiln binary not built at \(bin.path); run `swift build` first")
        }
        let p = Process()
        p.executableURL = bin
        p.arguments = args
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read both pipes concurrently so a chatty child never blocks on a full pipe.
        final class Box: @unchecked Sendable { var data = Data() }  // written by one thread, read after wait()
        let outBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            outBox.data = out.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let outData = outBox.data
        p.waitUntilExit()
        return KilnRun(
            status: p.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    func json() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as! [String: Any]
    }
}
