import Foundation
import Jobs
import KilnProtocol

/// Durable result files under DIR/results/<job>/: written to a temporary name,
/// fsynced, renamed, and the directory fsynced, so a recorded result survives a crash.
public struct ResultFiles: Sendable {
    public let root: URL

    public init(dataDir: URL) throws {
        root = dataDir.appendingPathComponent("results")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    public func url(job: String, task: TaskID) -> URL {
        root.appendingPathComponent(job).appendingPathComponent(task.wireName.replacingOccurrences(of: "/", with: "-") + ".bin")
    }

    /// Writes `data` durably; returns its CRC-32C.
    @discardableResult
    public func write(_ data: Data, job: String, task: TaskID) throws -> (url: URL, checksum: UInt32) {
        let dir = root.appendingPathComponent(job)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let dst = url(job: job, task: task)
        let tmp = dir.appendingPathComponent(".tmp-\(UUID().uuidString)")
        try Self.durableWrite(data, to: tmp)
        guard rename(tmp.path, dst.path) == 0 else {
            throw JobError("cannot rename result file to \(dst.path): \(String(cString: strerror(errno)))")
        }
        try Self.fsyncPath(dir.path, directory: true)
        return (dst, CRC32C.checksum(data))
    }

    /// Reads a result file back and checks it against the checksum in the store.
    public func read(_ r: StoredResult) throws -> Data {
        let d = try Data(contentsOf: URL(fileURLWithPath: r.path))
        let sum = CRC32C.checksum(d)
        guard sum == r.checksum, d.count == r.bytes else {
            throw JobError("result file \(r.path) of \(r.task) is damaged: \(d.count) bytes, crc32c \(String(sum, radix: 16)); the store says \(r.bytes) bytes, \(String(r.checksum, radix: 16))")
        }
        return d
    }

    static func durableWrite(_ data: Data, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw JobError("cannot create \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw JobError("cannot write \(url.path): \(String(cString: strerror(errno)))")
                }
                off += n
            }
        }
        guard fsync(fd) == 0 else { throw JobError("fsync \(url.path): \(String(cString: strerror(errno)))") }
    }

    static func fsyncPath(_ path: String, directory: Bool) throws {
        let fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY)
        guard fd >= 0 else { throw JobError("cannot open \(path) to fsync: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw JobError("fsync \(path): \(String(cString: strerror(errno)))") }
    }
}
