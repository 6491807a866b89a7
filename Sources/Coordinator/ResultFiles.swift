import Cluster
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
        root.appendingPathComponent(job).appendingPathComponent(
            task.wireName.replacingOccurrences(of: "/", with: "-") + ".bin")
    }

    /// Writes `data` durably; returns its CRC-32C.
    @discardableResult
    public func write(_ data: Data, job: String, task: TaskID) throws -> (url: URL, checksum: UInt32) {
        let dir = root.appendingPathComponent(job)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let dst = url(job: job, task: task)
        let tmp = dir.appendingPathComponent(".tmp-\(UUID().uuidString)")
        do {
            try Self.durableWrite(data, to: tmp)
            guard rename(tmp.path, dst.path) == 0 else {
                throw JobError("cannot rename result file to \(dst.path): \(String(cString: strerror(errno)))")
            }
        } catch {
            // A failed write (a full disk) must not leave its partial file taking the space.
            unlink(tmp.path)
            throw error
        }
        try Self.fsyncPath(dir.path, directory: true)
        return (dst, CRC32C.checksum(data))
    }

    /// A new temporary file in the job's directory (named as `write`'s temporaries, so a
    /// crash leaves only what `kiln gc` and the job's end remove): a large result arrives
    /// into it chunk by chunk, or a task input is written into it. It goes when dropped
    /// unless `adopt` kept it.
    public func spool(job: String) throws -> SpoolFile {
        let dir = root.appendingPathComponent(job)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return try SpoolFile(creating: dir.appendingPathComponent(".tmp-\(UUID().uuidString)"))
    }

    /// Makes a spooled result durable under its task's name: fsynced, renamed, the directory
    /// fsynced (as `write`).
    public func adopt(_ file: SpoolFile, job: String, task: TaskID) throws -> URL {
        let dst = url(job: job, task: task)
        try file.sync()
        try file.keep(renamingTo: dst)
        try Self.fsyncPath(root.appendingPathComponent(job).path, directory: true)
        return dst
    }

    /// A durable result file opened for reading, after checking its size and CRC-32C against
    /// the store (read a piece at a time).
    public func openChecked(_ r: StoredResult) throws -> SpoolFile {
        let file = try SpoolFile(reading: URL(fileURLWithPath: r.path))
        let size = try file.size()
        let sum = try file.checksum()
        guard size == r.bytes, sum == r.checksum else {
            throw JobError(
                "result file \(r.path) of \(r.task) is damaged: \(size) bytes, crc32c \(String(sum, radix: 16)); the store says \(r.bytes) bytes, \(String(r.checksum, radix: 16))"
            )
        }
        return file
    }

    /// A durable collect result opened in place (its Hessians stay in the file), checked.
    public func openCollect(_ r: StoredResult) throws -> CollectFile {
        let c: CollectFile
        do { c = try CollectFile(try openChecked(r)) } catch let e as JobError { throw e } catch {
            throw JobError("result file \(r.path): \(error)")
        }
        guard c.coveredTasks.contains(r.task) else {
            throw JobError("result file \(r.path) holds the result of \(c.taskID), not \(r.task)")
        }
        return c
    }

    /// A durable reconstruct result opened in place (a linear decoded when asked), checked.
    public func openReconstruct(_ r: StoredResult) throws -> ReconstructFile {
        let f: ReconstructFile
        do { f = try ReconstructFile(try openChecked(r)) } catch let e as JobError { throw e } catch {
            throw JobError("result file \(r.path): \(error)")
        }
        guard f.taskID == r.task else {
            throw JobError("result file \(r.path) holds the result of \(f.taskID), not \(r.task)")
        }
        return f
    }

    /// Whether `name` is a job id the coordinator generates ("job-" and base-36 digits),
    /// so a directory of that name under results/ is Kiln's and safe to empty.
    public static func isJobID(_ name: String) -> Bool {
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0] == "job"
            && parts.dropFirst().allSatisfy {
                !$0.isEmpty && $0.allSatisfy { c in c.isASCII && (c.isNumber || c.isLowercase) }
            }
    }

    /// Whether `name` is a file this type writes in a job's directory: a task's result
    /// (its wire name with '/' as '-', then ".bin") or a temporary file (".tmp-UUID").
    public static func isResultFileName(_ name: String) -> Bool {
        if name.hasPrefix(".tmp-") { return UUID(uuidString: String(name.dropFirst(5))) != nil }
        guard name.hasSuffix(".bin") else { return false }
        return TaskID(wireName: name.dropLast(4).replacingOccurrences(of: "-", with: "/")) != nil
    }

    /// What a removal freed.
    public struct Removal: Sendable, Equatable {
        public var files = 0
        public var bytes: Int64 = 0
        /// Entries left in place because Kiln did not name them (the directory stays too).
        public var foreign: [String] = []
    }

    /// Removes a job's result directory: only the files Kiln names (results and, with
    /// `onlyTemporary`, just the stale temporary ones), then the directory if it is empty.
    /// Anything else in it is left alone and reported.
    @discardableResult
    public func removeJob(_ job: String, onlyTemporary: Bool = false) throws -> Removal {
        guard Self.isJobID(job) else {
            throw JobError("'\(job)' is not a Kiln job id; not removing \(root.path)/\(job)")
        }
        let dir = root.appendingPathComponent(job)
        var out = Removal()
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: dir.path) else { return out }
        for name in names.sorted() {
            let path = dir.appendingPathComponent(name).path
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            // A symlink named like a result is removed as the link, never followed.
            let kind = st.st_mode & S_IFMT
            guard Self.isResultFileName(name), kind == S_IFREG || kind == S_IFLNK else {
                out.foreign.append(name)
                continue
            }
            if onlyTemporary && !name.hasPrefix(".tmp-") { continue }
            guard unlink(path) == 0 else {
                throw JobError("cannot remove \(path): \(String(cString: strerror(errno)))")
            }
            out.files += 1
            out.bytes += Int64(st.st_size)
        }
        if !onlyTemporary && out.foreign.isEmpty { rmdir(dir.path) }
        return out
    }

    /// Reads a result file back and checks it against the checksum in the store.
    public func read(_ r: StoredResult) throws -> Data {
        let d = try Data(contentsOf: URL(fileURLWithPath: r.path))
        let sum = CRC32C.checksum(d)
        guard sum == r.checksum, d.count == r.bytes else {
            throw JobError(
                "result file \(r.path) of \(r.task) is damaged: \(d.count) bytes, crc32c \(String(sum, radix: 16)); the store says \(r.bytes) bytes, \(String(r.checksum, radix: 16))"
            )
        }
        return d
    }

    /// Reads a result file back, checks it, and decodes its kiln.v1.TaskOutput.
    public func readOutput(_ r: StoredResult) throws -> ClusterTaskOutput {
        let output = try TaskPayload.decodeOutput(try read(r))
        guard output.coveredTasks.contains(r.task) else {
            throw JobError("result file \(r.path) holds the result of \(output.taskID), not \(r.task)")
        }
        return output
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
